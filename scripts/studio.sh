#!/usr/bin/env bash
# One command: set up the environment (first run only: system packages, .venv) and start the
# studio GUI.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/system_packages.sh
studio_install_system_packages
bash scripts/setup_env.sh
exec .venv/bin/studio "$@"
