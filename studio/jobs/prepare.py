"""Jobs 'capture' + 'prepare' (self-scan) and driving-video preparation.

Shared by the CLI and the GUI. ``prepare_scan`` prepares the user's video into ``scan/`` and
keeps a copy of it as ``scan/source.<ext>`` (so the project does not break when the original is
moved), recording the original path and its sha256 in the manifest. The copy is made only after
preparation succeeded: an unusable video (no face, corrupt) leaves the project as it was.

Re-running with the same video and settings re-uses everything; the stages are marked done again
only when their outputs changed, so later stages do not become stale for nothing.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from personalize.errors import MediaError
from personalize.faces.prepare import PrepareResult, prepare_video, sha256_of
from personalize.fileio import atomic_path
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import probe_video
from studio.project import DONE, Project

SCAN_SOURCE_STEM = "source"
DRIVING_STEM = "driving"


def _copy_source(video: Path, folder: Path, stem: str, sha: str) -> Path:
    """Copy ``video`` to ``folder/<stem><ext>`` atomically (skipped if the same bytes are there);
    remove copies of earlier videos with another extension."""
    ext = video.suffix.lower() or ".mp4"
    target = folder / f"{stem}{ext}"
    for old in folder.glob(f"{stem}.*"):
        if old != target and old.is_file():
            old.unlink()
    if target.exists() and target.resolve() == video.resolve():
        return target
    if target.is_file() and target.stat().st_size == video.stat().st_size \
            and sha256_of(target) == sha:
        return target
    with atomic_path(target, suffix=ext) as tmp:
        shutil.copyfile(video, tmp)
    return target


def find_source(folder: Path, stem: str) -> Path | None:
    """The video copy kept in a project folder (``scan/source.*``, ``takes/x/driving.*``)."""
    for path in sorted(folder.glob(f"{stem}.*")):
        if path.is_file() and not path.name.startswith("."):
            return path
    return None


def prepare_scan(project: Project, video: str | os.PathLike[str] | None = None,
                 size: int = 1024, smooth: float = 2.0, progress: ProgressFn = no_progress,
                 cancel: CancelToken = NEVER_CANCELLED) -> PrepareResult:
    """Prepare a self-scan into ``project.scan_dir``; marks 'capture' and 'prepare' done.

    ``video`` None re-uses the copy already in the project (``scan/source.*``).
    """
    scan = project.scan_dir
    scan.mkdir(parents=True, exist_ok=True)
    if video is None:
        found = find_source(scan, SCAN_SOURCE_STEM)
        if found is None:
            raise MediaError("The project has no self-scan video yet.",
                             f"Give one: studio-cli prepare {project.root} --video FILE")
        video = found
    video = Path(video).expanduser().resolve()
    probe_video(video)  # clear errors before anything is touched
    sha = sha256_of(video)
    previous = project.manifest.get("sources", {}).get("scan", {})
    source_changed = previous.get("sha256") != sha or project.status("capture") != DONE
    prepare_was_done = project.status("prepare") == DONE
    done_settings = project.stage_info("prepare").get("settings")

    project.mark_running("prepare")
    try:
        result = prepare_video(video, scan, size=size, smooth_sigma=smooth, progress=progress,
                               cancel=cancel)
    except BaseException:  # cancelled, bad input or a bug: earlier results stay as they were
        project.mark_stopped("prepare")
        raise
    copy = _copy_source(video, scan, SCAN_SOURCE_STEM, sha)
    if source_changed:
        original = previous.get("original") if video == copy.resolve() else None
        project.manifest.setdefault("sources", {})["scan"] = {
            "original": original or str(video), "copy": copy.relative_to(project.root).as_posix(),
            "sha256": sha}
        project.mark_done("capture", source=copy.name, sha256=sha)
    if source_changed or not prepare_was_done or done_settings != result.settings:
        project.mark_done("prepare", settings=result.settings, **result.summary)
    else:
        project.mark_stopped("prepare")  # unchanged: only clear the 'running' entry
    return result


def prepare_driving(video: str | os.PathLike[str], take_dir: str | os.PathLike[str],
                    size: int = 1024, smooth: float = 2.0, progress: ProgressFn = no_progress,
                    cancel: CancelToken = NEVER_CANCELLED) -> PrepareResult:
    """Prepare a driving video into ``take_dir`` (crops/, landmarks.npz, quality.json) and keep
    a copy as ``take_dir/driving.<ext>``. Project bookkeeping is the re-enactment job's."""
    take_dir = Path(take_dir)
    video = Path(video).expanduser().resolve()
    probe_video(video)
    sha = sha256_of(video)
    result = prepare_video(video, take_dir, size=size, smooth_sigma=smooth, progress=progress,
                           cancel=cancel)
    _copy_source(video, take_dir, DRIVING_STEM, sha)
    return result
