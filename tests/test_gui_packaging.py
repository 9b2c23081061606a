"""Cheap checks of the bundle recipe (the real build takes ~10 min: scripts/build_bundle.sh)."""
from __future__ import annotations

import ast
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_build_script_is_valid_bash_and_smoke_tests_the_bundle():
    script = ROOT / "scripts" / "build_bundle.sh"
    assert script.stat().st_mode & 0o111, "build_bundle.sh must be executable"
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--version" in text and "--self-test" in text
    assert "--target" in text  # PyInstaller goes next to the venv, not into it


def test_spec_is_python_and_names_the_gui_entry_and_data():
    spec = (ROOT / "studio.spec").read_text()
    ast.parse(spec)
    assert 'studio" / "__main__.py"' in spec and "COLLECT(" in spec
    for data in ("mediapipe", "lpips", "imageio_ffmpeg", "assets"):
        assert f'collect_data_files("{data}"' in spec
    # modules the GUI imports by name at run time must be hidden imports
    assert "collect_submodules(package)" in spec and '"studio", "personalize", "optimize", "editing"' in spec
