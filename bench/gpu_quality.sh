#!/usr/bin/env bash
# bench/fastmode.py's quality part (issue #14's error targets on the known-answer stand-in) with the
# product's full motion-model training (MotionSettings: 1500 keypoint steps of 8, a pool of 512; the
# bench's CPU default is 100 steps of 4 on 256, as the full one takes over an hour a model on a
# 2-core CPU), the stand-in, FaceMesh and models on CUDA, one process per motion-model seed in
# parallel (2 CPU threads each: MediaPipe's reads stay on the CPU). Each seed's output goes to
# $LOGS/quality_seed<N>.log as it runs (LOGS: default bench/out, or $OUT on the device machine).
# Measured on one H200 (2026-12-04), seven seeds at once: each MLP's training took 440 s (held-out
# keypoint error 0.167-0.224 px, within -0.001/+0.006 px of its fitted start: the 1500 steps moved
# it by nothing), and the 540 s call ended during the linear models' training, before the takes.
# A call of the `device` tool lasts 10 minutes at most: give it fewer seeds (default three; not
# yet timed).
# Usage: bash bench/gpu_quality.sh [SEED ...]   (default 0 1 2; extra fastmode.py options in
# $QUALITY_ARGS). On the `device` tool's machine, after bash bench/gpu_bundle.sh here:
#   run(command="bash bench/gpu_quality.sh", carry=[".gpu"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
LOGS=${LOGS:-${OUT:-bench/out}}
mkdir -p "$LOGS"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for seed in "${seeds[@]}"; do
    # shellcheck disable=SC2086  # QUALITY_ARGS holds several options
    "$PY" bench/fastmode.py --skip-speed --quality-device cuda --threads 2 --train-steps 1500 --pool 512 \
        --train-batch 8 --first-frame keypoint-mix --reruns 2 --model-seed "$seed" ${QUALITY_ARGS:-} \
        2>&1 | grep --line-buffered -v '^W0000\|^I0000\|^INFO\|^WARNING' > "$LOGS/quality_seed$seed.log" &
done
status=0
for job in $(jobs -p); do wait "$job" || status=$?; done
grep -h "motion model\|fast/exact error\|^\[quality\] generator passes" "$LOGS"/quality_seed*.log || true
exit "$status"
