#!/usr/bin/env bash
# Prepares, here, what bench/gpu_checks.sh needs on the GPU machine that the `device` tool lends and
# that the working tree does not take there: that machine's python3 (3.12, with torch, numpy 2,
# OpenCV, SciPy, safetensors and pytest) lacks mediapipe, lpips, tflite, platformdirs and
# imageio-ffmpeg, cannot download, and does not see ../shared. Writes .gpu/ (git-ignored):
#   .gpu/wheels/  mediapipe 0.10.21 (it runs on numpy 2 for the studio's uses: landmarks equal to
#                 numpy 1's on the shared portraits), the protobuf it was built for, lpips, tflite,
#                 platformdirs, and imageio-ffmpeg built from source without its ffmpeg (the binary
#                 alone is a 68 MB wheel, more than a call carries);
#   .gpu/shared/  the shared media the checks read: the aligned portraits, the self-scan clip as a
#                 folder of its frames under the clip's own name (JPEG; no ffmpeg there to decode
#                 it; personalize.video.iter_frames reads such a folder as the clip), and the
#                 StyleGAN2 golden of the fp16 test, and the one-shot references' weight filler
#                 (the DiffusionAct fp16 test's networks).
# 48 MB, with the 4 MB tree within the 64 MiB a call carries. Then, with the device tool:
#   run(command="bash bench/gpu_checks.sh", carry=[".gpu"], timeout_s=600)
# Checked on this CPU machine in a Python 3.12 environment like that one (numpy 2.5, torch 2.11,
# OpenCV 5.1, no ffmpeg, no ../shared): the packages installed from .gpu/wheels, and
# bench/fastmode.py's speed and live parts ran on .gpu/shared. Ran on the GPU machine (one H200) on 2026-12-04.
# Usage: bash bench/gpu_bundle.sh   (needs the package registry; STUDIO_SHARED as for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${STUDIO_SHARED:-../shared}
PY=${PY:-.venv/bin/python}
OUT=.gpu
rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/shared/media/aligned" "$OUT/shared/reference/stylegan2" "$OUT/shared/reference/oneshot"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$OUT/wheels" mediapipe==0.10.21 protobuf==4.25.9 lpips==0.1.4 tflite==2.18.0 platformdirs==4.14.7
python3 -m pip wheel -q --no-deps --no-binary imageio-ffmpeg -w "$OUT/wheels" imageio-ffmpeg==0.8.1
# mediapipe without the body, hand and segmentation models the studio never loads (18 of its 36 MB)
python3 - "$OUT"/wheels/mediapipe-*.whl <<'PYEOF'
import re, sys, zipfile
from pathlib import Path

unused = re.compile(r"mediapipe/modules/(hand_landmark|palm_detection|pose_landmark|pose_detection|"
                    r"selfie_segmentation)/[^/]*\.tflite")   # the models only: their modules are imported
wheel = Path(sys.argv[1])
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if unused.match(item.filename):
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(keepends=True) if not unused.match(line.decode()))
        dst.writestr(item, data)
slim.replace(wheel)
PYEOF
cp "$SHARED"/media/aligned/*.jpg "$OUT/shared/media/aligned/"
cp "$SHARED"/reference/stylegan2/sg2_ffhqlike256.json "$SHARED"/reference/stylegan2/sg2_ffhqlike256.npz \
    "$OUT/shared/reference/stylegan2/"
cp "$SHARED"/reference/oneshot/fill_weights.py "$OUT/shared/reference/oneshot/"
PYTHONPATH=$PWD "$PY" - "$SHARED/media/selfscan_woman2_12s.mp4" "$OUT/shared/media/selfscan_woman2_12s.mp4" <<'PYEOF'
import sys
from pathlib import Path

import cv2

from personalize.video import iter_frames

out = Path(sys.argv[2])
out.mkdir()
for t, frame in enumerate(iter_frames(sys.argv[1])):
    cv2.imwrite(str(out / f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
print(f"{t + 1} frames -> {out}")
PYEOF
du -sh "$OUT"/wheels "$OUT"/shared
echo "The device call carries the tree and .gpu: keep them under 64 MiB together."
