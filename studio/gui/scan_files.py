"""Reading what the prepare/select stages left in a project folder, for display only.

The file formats belong to the jobs; these readers are tolerant (several likely key names, partial
files) because the GUI must never crash on a half-written or older project.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np



def crop_paths(scan_dir: Path) -> list[Path]:
    crops = scan_dir / "crops"
    return sorted(crops.glob("*.png")) + sorted(crops.glob("*.jpg")) if crops.is_dir() else []


def frame_index(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return -1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_quality(scan_dir: Path) -> tuple[dict[int, list[str]], dict[str, Any]]:
    """(flags per frame index, summary) from ``quality.json``; empty when absent."""
    data = _read_json(scan_dir / "quality.json")
    flags: dict[int, list[str]] = {}
    if not isinstance(data, dict):
        return flags, {}
    frames = data.get("frames") or data.get("per_frame") or data.get("flags")
    if isinstance(frames, list):
        for i, entry in enumerate(frames):
            if isinstance(entry, dict):
                idx = int(entry.get("index", entry.get("frame", i)))
                raw = entry.get("flags", [k for k, v in entry.items() if v is True])
            else:
                idx, raw = i, entry
            names = [raw] if isinstance(raw, str) else list(raw or [])
            if names:
                flags[idx] = [str(n) for n in names]
    elif isinstance(frames, dict):
        for key, value in frames.items():
            if isinstance(value, list) and all(isinstance(v, int) for v in value):
                for idx in value:  # {flag: [frame indices]}
                    flags.setdefault(int(idx), []).append(str(key))
            elif key.isdigit():
                names = [value] if isinstance(value, str) else list(value or [])
                if names:
                    flags[int(key)] = [str(n) for n in names]
    summary = data.get("summary", {})
    return flags, summary if isinstance(summary, dict) else {}


def load_selection(dataset_dir: Path) -> tuple[list[int], dict[str, Any]]:
    """(selected frame indices, the whole selection.json) or ([], {})."""
    data = _read_json(dataset_dir / "selection.json")
    if isinstance(data, list):
        return [int(i) for i in data], {}
    if not isinstance(data, dict):
        return [], {}
    for key in ("frames", "selected", "indices", "frame_ids", "frame_indices"):
        value = data.get(key)
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            return [int(v) for v in value], data
    return [], data


def pose_grid(scan_dir: Path, indices: list[int] | None, rows: int = 3, cols: int = 5,
              max_yaw: float = 40.0, max_pitch: float = 25.0) -> list[list[int]] | None:
    """Counts of frames per (pitch, yaw) cell from the scan's crop landmarks, or None."""
    path = scan_dir / "landmarks.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            lm = data["crop_landmarks"] if "crop_landmarks" in data else data["landmarks"]
            valid = data["valid"] if "valid" in data else np.ones(len(lm), bool)
    except (OSError, KeyError, ValueError):
        return None
    from personalize.faces.quality import head_pose

    grid = [[0] * cols for _ in range(rows)]
    chosen = range(len(lm)) if indices is None else indices
    for i in chosen:
        if 0 <= i < len(lm) and valid[i]:
            yaw, pitch, _roll = head_pose(lm[i])
            col = int((min(max(yaw, -max_yaw), max_yaw) + max_yaw) / (2 * max_yaw) * cols)
            row = int((min(max(pitch, -max_pitch), max_pitch) + max_pitch) / (2 * max_pitch) * rows)
            grid[min(row, rows - 1)][min(col, cols - 1)] += 1
    return grid
