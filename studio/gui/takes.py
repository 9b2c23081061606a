"""Finding takes and their files in a project folder (display only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.gui.widgets.drop_zone import VIDEO_EXTS


def list_takes(takes_dir: Path) -> list[str]:
    if not takes_dir.is_dir():
        return []
    return sorted(p.name for p in takes_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def driving_video(take_dir: Path) -> Path | None:
    for path in sorted(take_dir.glob("driving.*")):
        if path.suffix.lower() in VIDEO_EXTS:
            return path
    return None


def rendered_video(take_dir: Path) -> Path | None:
    """The newest MP4 in the take's folder that is not the driving video itself."""
    videos = [p for p in take_dir.glob("*.mp4") if not p.name.startswith(("driving", "."))]
    return max(videos, key=lambda p: p.stat().st_mtime) if videos else None


def take_is_complete(take_dir: Path) -> bool:
    """True when the take's latent track (``latents.npz``, saved incrementally) is marked complete."""
    path = take_dir / "latents.npz"
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return bool(data["complete"]) if "complete" in data.files else True
    except (OSError, ValueError, KeyError):
        return False
