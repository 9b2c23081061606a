#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run meant to fit 10 minutes (under 2 on one H200 before the
# training test, which took 58 s there beside seven bench runs, 2026-12-04; the tests skip them without one):
# the CUDA-only tests (fp16 generator blocks, FaceMesh and DiffusionAct on CUDA, the fast modes
# and live driving on the GPU, the motion model's training there), then bench/fastmode.py's speed and live parts at 1024 px on CUDA
# (issue #14: fast >= 20x and refine >= 5x faster than exact, live >= 30 fps on one H100).
# Usage: bash bench/gpu_checks.sh   (PY=path/to/python to use another interpreter than .venv's,
# python3 where there is no .venv). On the `device` tool's GPU machine: first `bash bench/gpu_bundle.sh`
# here, then run(command="bash bench/gpu_checks.sh", carry=[".gpu"]): the packages that machine lacks
# are installed from .gpu/wheels into /tmp/gpu-site, and the shared media are read from .gpu/shared.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
export PYTHONPATH=$PWD QT_QPA_PLATFORM=offscreen PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null || { echo "No NVIDIA driver here (nvidia-smi not found): run this on a machine with a CUDA GPU." >&2; exit 2; }
if [ -d .gpu/wheels ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/gpu-site:$PWD
fi
if [ -d .gpu/shared ]; then export STUDIO_SHARED=$PWD/.gpu/shared; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device for torch'; print('torch', torch.__version__, torch.cuda.get_device_name())"
tests_status=0   # the bench still runs when a test fails: one device call gives both
"$PY" -m pytest -q -p no:cacheprovider -rs \
    "tests/test_stylegan2.py::test_fp16_blocks_match_fp32_on_cuda" \
    "tests/test_facemesh.py::test_cuda_matches_cpu" \
    "tests/test_oneshot_diffusionact.py::test_fp16_autocast_close_to_fp32_on_cuda" \
    "tests/test_fast_reenact.py::test_fast_refine_and_live_on_cuda_follow_the_driving_frames_as_on_the_cpu" \
    "tests/test_fast_reenact.py::test_live_render_replayed_as_a_cuda_graph_equals_the_eager_render" \
    "tests/test_fast_reenact.py::test_motion_model_trained_on_cuda_predicts_as_the_cpu_one" || tests_status=$?
"$PY" bench/fastmode.py --skip-quality --device cuda --size 1024
exit "$tests_status"
