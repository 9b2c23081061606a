#!/usr/bin/env bash
# One command: set up the environment (first run only: system packages, .venv) and run the whole
# test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/system_packages.sh
studio_install_system_packages
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
exec .venv/bin/python -m pytest -q "$@"
