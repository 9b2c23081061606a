"""What the prepare/select stages left in a project, shaped for display.

The files belong to their writers (``personalize.faces.prepare``/``quality``, the select job)
and are read through ``studio.project``; these helpers only arrange them for the pages and never
fail on a project that is half made (nothing to show is an empty result).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from personalize.errors import ProjectError
from studio.project import Project


def frame_index(path: Path) -> int:
    """The video frame index of a crop (``{t:06d}.png``), -1 for other names."""
    return int(path.stem) if path.stem.isdigit() else -1


def quality_flags(project: Project) -> tuple[dict[int, list[str]], dict[str, Any]]:
    """(flags per frame index, summary) from the scan's quality report; empty when absent."""
    report = project.read_scan_quality() or {}
    flags = {int(record["t"]): list(record["flags"]) for record in report.get("frames", [])
             if record.get("flags")}
    return flags, dict(report.get("summary", {}))


def selected_frames(project: Project) -> tuple[list[int], dict[str, Any]]:
    """(selected frame indices, the whole selection record) or ([], {}) before selecting."""
    try:
        selection = project.read_selection()
    except ProjectError:
        return [], {}
    if selection is None:
        return [], {}
    return [int(t) for t in selection["frame_ids"]], selection


def pose_grid(project: Project, indices: list[int] | None, rows: int = 3, cols: int = 5,
              max_yaw: float = 40.0, max_pitch: float = 25.0) -> list[list[int]] | None:
    """Counts of frames per (pitch, yaw) cell from the scan's crop landmarks, or None."""
    from personalize.faces.quality import head_pose

    scan = project.read_scan_landmarks()
    if scan is None:
        return None
    landmarks, valid = scan
    grid = [[0] * cols for _ in range(rows)]
    chosen = range(len(landmarks)) if indices is None else indices
    for i in chosen:
        if 0 <= i < len(landmarks) and valid[i]:
            yaw, pitch, _roll = head_pose(landmarks[i])
            col = int((min(max(yaw, -max_yaw), max_yaw) + max_yaw) / (2 * max_yaw) * cols)
            row = int((min(max(pitch, -max_pitch), max_pitch) + max_pitch) / (2 * max_pitch) * rows)
            grid[min(row, rows - 1)][min(col, cols - 1)] += 1
    return grid
