#!/usr/bin/env bash
# One command: set up the environment (first run only) and start the studio GUI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/studio "$@"
