"""Benchmark of video preparation: throughput (frames/s) and crop jitter with/without smoothing.

    .venv/bin/python bench/faces.py                      # full 1008-frame self-scan, 256 and 1024
    .venv/bin/python bench/faces.py --frames 300 --sizes 256

Prints, per output size: wall-clock frames/s of a fresh ``prepare_video`` (both passes, PNG
writing included), the landmark pass and the crop pass separately, and the CPU time per frame of
this process (MediaPipe + warps + PNG; ffmpeg decoding runs in its own process). The machine's
load average is printed too: on a shared CPU, wall-clock figures depend on it.

Jitter: for the same landmarks, crops aligned per frame (sigma 0) vs smoothed (sigma 2), in
pixels of a 1024 crop:
  * "eye+mouth motion": mean frame-to-frame motion of the eye-contour and lip points;
  * "rigid jitter": mean |x[t+1] - 2 x[t] + x[t-1]| of rigid head points (nose, forehead, ears),
    i.e. the deviation from locally straight motion, which is what a viewer sees as shake;
    it includes MediaPipe's own per-point noise (the floor no crop smoothing can remove);
  * "crop shake": the same for the rigid points taken from a temporally smoothed landmark track
    (their noise removed), so only the crop window's own shake remains.
Note that per-frame alignment pins the eye/mouth anchors to fixed crop positions by definition,
so their motion is *lower* without smoothing: that is the jitter moved into everything else.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from personalize.faces.alignment import transform_points
from personalize.faces.prepare import WORK_DIR, crop_transforms, prepare_video
from personalize.faces.smoothing import jitter, smooth_series
from personalize.video import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "media" / "selfscan_woman_33s.mp4"
EYES_MOUTH = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
              362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398,
              78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81,
              80, 191]
RIGID = [6, 168, 1, 4, 10, 234, 454, 127, 356, 9, 151]


class Timer:
    """Progress listener that notes when the crop pass starts."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.crops_started: float | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if message == "writing crops" and self.crops_started is None:
            self.crops_started = time.perf_counter()


def bench_size(video: Path, size: int, workdir: Path) -> np.ndarray:
    out = workdir / f"prep{size}"
    shutil.rmtree(out, ignore_errors=True)
    timer = Timer()
    cpu0 = time.process_time()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = prepare_video(video, out, size=size, smooth_sigma=2.0, progress=timer)
    wall = time.perf_counter() - timer.start
    cpu = time.process_time() - cpu0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ffmpeg_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    T = len(result)
    landmark_pass = (timer.crops_started or time.perf_counter()) - timer.start
    crop_pass = wall - landmark_pass
    print(f"size {size:5d}: {T} frames in {wall:6.1f} s = {T / wall:5.1f} frames/s   "
          f"(landmark pass {T / landmark_pass:5.1f} f/s, crop pass {T / crop_pass:5.1f} f/s; "
          f"CPU {1000 * cpu / T:5.1f} ms/frame + ffmpeg {1000 * ffmpeg_cpu / T:4.1f} ms/frame)")
    print(f"            quality: {result.summary['counts']}, usable {result.summary['n_usable']}")
    with np.load(out / WORK_DIR / "tracking.npz") as data:
        return data["landmarks"]


def bench_jitter(landmarks: np.ndarray) -> None:
    valid = np.isfinite(landmarks).all(axis=(1, 2))
    lm = np.where(valid[:, None, None], landmarks, 0.0)
    clean = smooth_series(landmarks, valid, sigma=3.0)  # landmark tracks without their noise
    for sigma in (0.0, 1.0, 2.0, 3.0):
        transforms, _, quads = crop_transforms(landmarks, valid, 1024, sigma)
        crop_lm = transform_points(transforms, lm)
        motion = jitter(crop_lm[:, EYES_MOUTH], valid)
        rigid = crop_lm[:, RIGID, :2]
        pair = valid[2:] & valid[1:-1] & valid[:-2]
        second = np.linalg.norm(rigid[2:] - 2 * rigid[1:-1] + rigid[:-2], axis=-1).mean(-1)
        centre = np.linalg.norm(quads[2:, :2] - 2 * quads[1:-1, :2] + quads[:-2, :2], axis=-1)
        steady = transform_points(transforms, clean)[:, RIGID, :2]
        shake = np.linalg.norm(steady[2:] - 2 * steady[1:-1] + steady[:-2], axis=-1).mean(-1)
        label = "off" if sigma == 0 else f"{sigma:.0f}"
        print(f"smoothing sigma {label:>3}: eye+mouth motion {motion:5.2f} px/frame, rigid jitter "
              f"{second[pair].mean():5.2f} px, crop shake {shake[pair].mean():5.2f} px, "
              f"crop-centre jitter {centre[pair].mean():5.2f} source px")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--frames", type=int, default=0, help="only the first N frames (0: all)")
    args = parser.parse_args()
    print(f"video: {args.video.name}; cpus: {os.cpu_count()}; load average before: "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        workdir = Path(tmp)
        video = args.video
        if args.frames:
            video = workdir / "clip.mp4"
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(args.video), "-frames:v",
                            str(args.frames), "-c:v", "libx264", "-crf", "16", "-an", str(video)],
                           check=True)
        landmarks = None
        for size in args.sizes:
            landmarks = bench_size(video, size, workdir)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        if landmarks is not None:
            print("jitter of the aligned crops (1024 px crop):")
            bench_jitter(landmarks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
