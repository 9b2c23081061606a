#!/usr/bin/env bash
# Build the one-folder desktop bundle (dist/studio/) with PyInstaller, then start the bundled app
# with --version as a smoke test.
#
# PyInstaller is a build tool, not a runtime dependency, so it is NOT installed into the project's
# virtual environment: it goes into build/pyinstaller-tools (pip --target, no dependencies; the
# venv already has `packaging` and `setuptools`) and is put on PYTHONPATH only for this build.
#
# Usage:  scripts/build_bundle.sh            (uses .venv/bin/python)
#         PYTHON=/path/to/python scripts/build_bundle.sh
# Result: dist/studio/studio   (copy the whole dist/studio folder to install; weights are fetched
#         on first run from Tools > Models or `studio-cli models fetch NAME`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
TOOLS="build/pyinstaller-tools"
PYINSTALLER_VERSION="${PYINSTALLER_VERSION:-6.22.3}"
HOOKS_VERSION="${HOOKS_VERSION:-2026.9}"

if [ ! -x "$PYTHON" ]; then
  echo "error: $PYTHON not found. Set up the project first (see README), or set PYTHON=..." >&2
  exit 2
fi
if [ ! -d "$TOOLS/PyInstaller" ]; then
  echo "installing PyInstaller $PYINSTALLER_VERSION into $TOOLS (not into the venv)…"
  "$PYTHON" -m pip install --quiet --no-deps --target "$TOOLS" \
    "pyinstaller==$PYINSTALLER_VERSION" "pyinstaller-hooks-contrib==$HOOKS_VERSION" "altgraph>=0.17"
fi

export PYTHONPATH="$PWD/$TOOLS${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath build/pyinstaller --distpath dist studio.spec

APP="dist/studio/studio"
[ -x "$APP.exe" ] && APP="$APP.exe"
echo "smoke test: $APP --version"
version_out="$("$APP" --version)"
echo "$version_out"
expected="studio $("$PYTHON" -c 'import studio; print(studio.__version__)')"
if [ "$version_out" != "$expected" ]; then
  echo "error: the bundled app printed '$version_out', expected '$expected'" >&2
  exit 1
fi
echo "self-test: $APP --self-test (off-screen window, every job module, MediaPipe models)"
QT_QPA_PLATFORM=offscreen "$APP" --self-test
du -sh dist/studio | awk '{print "bundle size: " $1}'
echo "ok: dist/studio/ is ready"
