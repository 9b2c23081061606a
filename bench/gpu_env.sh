# Sourced by the GPU scripts (bench/gpu_checks.sh, bench/gpu_quality.sh): the interpreter ($PY),
# the packages the `device` tool's GPU machine lacks (installed from .gpu/wheels into /tmp/gpu-site,
# bench/gpu_bundle.sh) and the shared media (.gpu/shared); stops with a clear message where there is
# no CUDA GPU. Run from the repository root.
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
