#!/usr/bin/env bash
# The Debian/Ubuntu packages real Qt windows, the webcam (QtMultimedia: libpulse) and the
# screenshot test (Xvfb) need; installed when missing, so the README's two commands work on a
# fresh machine. Sourced by scripts/studio.sh and scripts/test.sh (and so by .ci/run).
#
# - Not Debian/Ubuntu (no dpkg, e.g. macOS): nothing to do.
# - Everything installed (checked with dpkg -s): nothing to do.
# - Missing packages and root, or passwordless sudo: apt-get installs them.
# - Otherwise: stop at once, printing the one command to run.
STUDIO_SYSTEM_PACKAGES="xvfb xauth libpulse0 libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 \
libxkbcommon-x11-0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0 \
libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3"

studio_missing_packages() {
  command -v dpkg >/dev/null 2>&1 || return 0
  local p
  for p in $STUDIO_SYSTEM_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || printf '%s ' "$p"
  done
}

studio_install_system_packages() {
  local missing sudo=""
  missing=$(studio_missing_packages)
  missing=${missing% }
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "error: system packages are missing: $missing" >&2
      echo "Install them (once) with:" >&2
      echo "  sudo apt-get install -y $missing" >&2
      return 1
    fi
  fi
  echo "Installing the system packages the studio needs: $missing" >&2
  $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
}
