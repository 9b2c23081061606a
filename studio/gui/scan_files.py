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


# The prepare stage's quality flags (``personalize.faces.quality.FLAGS``) in words.
FLAG_WORDS = {
    "no_face": "no face found",
    "multiple_faces": "several faces",
    "too_small": "face too small",
    "blurry": "blurry",
    "extreme_pose": "head turned too far",
}


def flag_words(flag: str) -> str:
    return FLAG_WORDS.get(flag, flag.replace("_", " "))


def describe_scan(summary: dict[str, Any], n_pictures: int) -> str:
    """The prepare stage's summary as a sentence or two (never a dump of its keys)."""
    if not n_pictures:
        return "Nothing prepared yet."
    size, fps = summary.get("size"), summary.get("fps")
    shape = ", ".join(part for part in (f"{size} × {size} px" if size else "",
                                        f"from a {fps:.0f} fps video" if fps else "") if part)
    text = f"{n_pictures} face pictures" + (f" ({shape})" if shape else "") + "."
    frames, usable = summary.get("n_frames"), summary.get("n_usable")
    if isinstance(frames, int) and isinstance(usable, int):
        text += f" {usable} of {frames} can be used for training"
        counts = summary.get("counts") or {}
        problems = [f"{n} {flag_words(flag)}" for flag, n in counts.items()
                    if isinstance(n, int) and n]
        text += f"; problems: {', '.join(problems)}." if problems else "; no problems found."
    return text


def first_frame(video: Path | None):
    """The first frame of ``video`` (HWC uint8 RGB) for a thumbnail, or None when unreadable."""
    from personalize.errors import MediaError
    from personalize.video import iter_frames

    if video is None:
        return None
    frames = iter_frames(video)
    try:
        return next(frames, None)
    except (MediaError, OSError):
        return None
    finally:
        frames.close()


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
