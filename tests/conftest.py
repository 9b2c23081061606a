"""Shared test fixtures: where ../shared lives, small real media, deterministic torch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STUDIO_SHARED", ROOT.parent / "shared"))
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set STUDIO_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture()
def studio_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache, so tests never see (or write) the user's real one."""
    cache = tmp_path / "weights-cache"
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(cache))
    return cache
