"""Persistent GUI settings (QSettings): device, weights cache folder, stage defaults, recent
projects, last folder and window geometry.

Why a wrapper: pages read typed values with defaults from one place, and tests can point the whole
app at a throw-away INI file instead of the user's real settings.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 8

# Stage defaults: what "Next" uses when the user changes nothing. 0 means "the job's own default".
DEFAULTS: dict[str, Any] = {
    "device": "auto",
    "cache_dir": "",
    "prepare/size": 1024,
    "prepare/smooth": 2.0,
    "select/count": 250,
    "personalize/base": "ffhq",
    "personalize/steps": 0,
    "personalize/inversion_steps": 500,
    "personalize/batch": 4,
    "reenact/steps": 0,
    "reenact/lr": 0.0,
    "reenact/smooth": True,
    "stylize/iters": 300,
}


class StudioSettings:
    """Typed access to the studio's QSettings store."""

    def __init__(self, store: QSettings | None = None) -> None:
        if store is None:
            path = os.environ.get("STUDIO_SETTINGS_FILE")
            store = (QSettings(path, QSettings.Format.IniFormat) if path
                     else QSettings("SelfScanAvatarStudio", "Studio"))
        self.store = store

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> "StudioSettings":
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    # ------------------------------------------------------------------ plain values
    def get(self, key: str) -> Any:
        default = DEFAULTS.get(key)
        value = self.store.value(key, default)
        if isinstance(default, bool):
            return value in (True, "true", "1", 1)
        if isinstance(default, int):
            try:
                return int(value)
            except (TypeError, ValueError):
                return default
        if isinstance(default, float):
            try:
                return float(value)
            except (TypeError, ValueError):
                return default
        return value if value is not None else default

    def set(self, key: str, value: Any) -> None:
        self.store.setValue(key, value)
        self.store.sync()

    def apply_environment(self) -> None:
        """Make the weights manager use the chosen cache folder (it reads STUDIO_CACHE_DIR)."""
        cache = str(self.get("cache_dir") or "")
        if cache:
            os.environ["STUDIO_CACHE_DIR"] = cache

    # ------------------------------------------------------------------ recent projects
    def recent_projects(self) -> list[str]:
        value = self.store.value("recent_projects", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])]

    def add_recent_project(self, path: str | os.PathLike[str]) -> None:
        path = str(Path(path))
        items = [p for p in self.recent_projects() if p != path]
        items.insert(0, path)
        self.store.setValue("recent_projects", items[:MAX_RECENT])
        self.store.sync()

    def remove_recent_project(self, path: str) -> None:
        self.store.setValue("recent_projects", [p for p in self.recent_projects() if p != path])
        self.store.sync()

    # ------------------------------------------------------------------ folders and geometry
    def last_folder(self) -> str:
        value = str(self.store.value("last_folder", "") or "")
        return value if value and Path(value).is_dir() else str(Path.home())

    def set_last_folder(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        self.set("last_folder", str(folder if folder.is_dir() else folder.parent))

    def geometry(self) -> QByteArray | None:
        value = self.store.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def set_geometry(self, geometry: QByteArray) -> None:
        self.set("window/geometry", geometry)
