"""Job 'capture': choose the self-scan video (optionally a part of it) for a project.

Shared by the CLI (``studio-cli prepare --video``, through ``prepare_scan``) and the GUI's
Capture page. The one writer of the capture record (``Project.scan_record``):

    sources.scan = {"original": the chosen file, "sha256": its sha256,
                    "trim": [start, end] seconds or None, "copy": "scan/source.<ext>"}

The copy keeps the project working when the original is moved; a trimmed part is re-encoded as
``scan/source.mp4``. Choosing the same file (same bytes) and the same part again changes
nothing, so the later stages stay valid; another video or part marks 'capture' done anew, which
makes every later stage stale.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from personalize.errors import MediaError
from personalize.fileio import atomic_path, same_file_content, sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import iter_frames, probe_video, write_video
from studio.project import DONE, Project

MIN_SECONDS = 0.5
"""The shortest part of a video that can be a self-scan (and the trim fields' spacing)."""


def capture_scan(project: Project, video: str | os.PathLike[str], start: float = 0.0,
                 end: float | None = None, progress: ProgressFn = no_progress,
                 cancel: CancelToken = NEVER_CANCELLED) -> dict[str, Any]:
    """Make ``video`` — the part from ``start`` to ``end`` seconds (None: to its end) — the
    project's self-scan; returns the capture record. MediaError for a file that is not a video
    or a part shorter than ``MIN_SECONDS``; nothing changes then."""
    video = Path(video).expanduser().resolve()
    info = probe_video(video)
    trim = chosen_part(start, end, info.duration)
    record = project.scan_record
    copy = project.scan_source()
    is_the_copy = copy is not None and video == copy.resolve()
    sha = sha256_file(video, progress, "checking the video")
    unchanged = (record.get("sha256") == sha and record.get("trim") == trim and copy is not None
                 and project.status("capture") == DONE)
    if unchanged:
        return record
    if trim is None:
        copy = keep_copy(video, project.scan_source_path(copy_suffix(video)))
    else:
        copy = _trimmed_copy(video, project.scan_source_path(".mp4"), trim, info.fps, progress, cancel)
    record = {"original": record.get("original", str(video)) if is_the_copy else str(video),
              "sha256": sha, "trim": trim, "copy": copy.relative_to(project.root).as_posix()}
    project.manifest.setdefault("sources", {})["scan"] = record
    project.mark_done("capture", source=copy.name, sha256=sha, trim=trim)
    return record


def keep_copy(video: Path, target: Path) -> Path:
    """Copy ``video`` to ``target`` atomically (skipped when the same bytes are there); then
    remove copies of earlier videos with another extension (``<target stem>.*``)."""
    if not (target.exists() and (target.resolve() == video.resolve()
                                 or same_file_content(target, video))):
        with atomic_path(target, suffix=target.suffix) as tmp:
            shutil.copyfile(video, tmp)
    _remove_other_copies(target)
    return target


def copy_suffix(video: Path) -> str:
    """The copy's suffix: the video's, lower case ('.mp4' when it has none)."""
    return video.suffix.lower() or ".mp4"


def chosen_part(start: float, end: float | None, duration: float) -> list[float] | None:
    """[start, end] in seconds, or None for the whole video (a trim within 0.05 s of the ends)."""
    start = max(0.0, float(start))
    end = duration if end is None else min(float(end), duration)
    if start <= 0.05 and end >= duration - 0.05:
        return None
    if end - start < MIN_SECONDS:
        raise MediaError(f"The chosen part ({start:.1f}-{end:.1f} s) is too short.",
                         f"Choose at least {MIN_SECONDS} s; a self-scan should be 20-30 s long.")
    return [round(start, 3), round(end, 3)]


def _trimmed_copy(video: Path, target: Path, trim: list[float], fps: float,
                  progress: ProgressFn, cancel: CancelToken) -> Path:
    """Re-encode frames [start*fps, end*fps) of ``video`` into ``target`` (MP4, atomically)."""
    first, stop = int(round(trim[0] * fps)), int(round(trim[1] * fps))
    total = max(1, stop - first)

    def frames():
        for i, frame in enumerate(iter_frames(video, start=first, stop=stop)):
            cancel.check()
            progress(i + 1, total, "trimming")
            yield frame

    write_video(target, frames(), fps, audio_from=None)
    _remove_other_copies(target)
    return target


def _remove_other_copies(keep: Path) -> None:
    for old in keep.parent.glob(f"{keep.stem}.*"):
        if old != keep and old.is_file() and not old.name.startswith("."):
            old.unlink()
