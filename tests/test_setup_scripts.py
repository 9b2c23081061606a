"""The README's set-up commands on a fresh machine: the missing Debian packages are installed
(root or passwordless sudo) or named in the one command to run, and the scripts stop at once.

``dpkg``, ``id``, ``sudo`` and ``apt-get`` are fakes on PATH, so nothing is installed for real.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MISSING = "libpulse0"


def _fake_bin(tmp_path: Path, uid: int, sudo_without_password: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {
        # every package is installed but MISSING
        "dpkg": f'[ "$1" = -s ] && [ "$2" = {MISSING} ] && exit 1; exit 0',
        "id": f'[ "$1" = -u ] && echo {uid}',
        "sudo": ('[ "$1" = -n ] && shift; "$@"' if sudo_without_password
                 else '[ "$1" = -n ] && exit 1; exit 1'),
        "apt-get": f'echo "$(id -u) apt-get $*" >> {log}',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, command: str, uid: int, sudo_without_password: bool = False):
    bin_dir = _fake_bin(tmp_path, uid, sudo_without_password)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


INSTALL = ". scripts/system_packages.sh && studio_install_system_packages"


def test_without_root_or_sudo_it_stops_with_the_one_command(tmp_path):
    run = _run(tmp_path, INSTALL, uid=1000)
    assert run.returncode == 1
    assert f"sudo apt-get install -y {MISSING}" in run.stderr
    assert not (tmp_path / "apt.log").exists()


@pytest.mark.parametrize("script", ["scripts/test.sh", "scripts/studio.sh"])
def test_the_readme_commands_stop_before_setting_anything_up(tmp_path, script):
    run = _run(tmp_path, f"bash {script} --version", uid=1000)
    assert run.returncode == 1 and f"apt-get install -y {MISSING}" in run.stderr
    assert "Setting up .venv" not in run.stderr and "passed" not in run.stdout


def test_root_installs_the_missing_packages(tmp_path):
    run = _run(tmp_path, INSTALL, uid=0)
    assert run.returncode == 0, run.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0] == "0 apt-get update -qq"
    assert calls[1] == f"0 apt-get install -y -qq {MISSING}"


def test_passwordless_sudo_installs_them(tmp_path):
    run = _run(tmp_path, INSTALL, uid=1000, sudo_without_password=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "apt.log").read_text().splitlines()[1] == f"1000 apt-get install -y -qq {MISSING}"


def test_ci_runs_exactly_the_readme_test_command():
    body = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
            if line and not line.startswith(("#", "set ", "cd "))]
    assert body == ["bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text()
