"""Job 'prepare' (self-scan) and driving-video preparation.

Shared by the CLI and the GUI. ``prepare_scan`` prepares the self-scan into ``scan/``. Given a
video (the CLI's ``--video``), it records it as the capture (``studio.jobs.capture``) only after
preparation succeeded: an unusable video (no face, corrupt) leaves the project as it was.
Without one it prepares the video the capture stage chose (the GUI's Capture page).

Re-running with the same video and settings re-uses everything; the stages are marked done again
only when their outputs changed, so later stages do not become stale for nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

from personalize.errors import Action, MediaError
from personalize.faces.prepare import PrepareResult, prepare_video
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import probe_video
from studio.jobs.capture import capture_scan, copy_suffix, keep_copy
from studio.project import DONE, Project


def prepare_scan(project: Project, video: str | os.PathLike[str] | None = None,
                 size: int = 1024, smooth: float = 2.0, progress: ProgressFn = no_progress,
                 cancel: CancelToken = NEVER_CANCELLED) -> PrepareResult:
    """Prepare a self-scan into ``project.scan_dir``; marks 'prepare' (and, for a new ``video``,
    'capture') done. ``video`` None prepares the captured video (``scan/source.*``)."""
    if video is None:
        source = project.scan_source()
        if source is None:
            raise MediaError("The project has no self-scan video yet.", "Choose one first.",
                             Action("capture"))
    else:
        source = Path(video).expanduser().resolve()
        probe_video(source)  # clear errors before anything is touched
    done_settings = project.stage_info("prepare").get("settings")
    prepare_was_done = project.status("prepare") == DONE
    captured = project.fingerprint("capture")

    project.mark_running("prepare")
    try:
        result = prepare_video(source, project.scan_dir, size=size, smooth_sigma=smooth,
                               progress=progress, cancel=cancel)
    except BaseException:  # cancelled, bad input or a bug: earlier results stay as they were
        project.mark_stopped("prepare")
        raise
    if video is not None or project.status("capture") != DONE:
        capture_scan(project, source)  # records a new video; the same one changes nothing
    if (project.fingerprint("capture") != captured or not prepare_was_done
            or done_settings != result.settings):
        project.mark_done("prepare", settings=result.settings, **result.summary)
    else:
        project.mark_stopped("prepare")  # unchanged: only clear the 'running' entry
    return result


def prepare_driving(project: Project, take: str, video: str | os.PathLike[str], size: int = 1024,
                    smooth: float = 2.0, progress: ProgressFn = no_progress,
                    cancel: CancelToken = NEVER_CANCELLED) -> PrepareResult:
    """Prepare a driving video into the take's folder (crops/, landmarks.npz, quality.json) and
    keep a copy as ``driving.<ext>`` there. Project bookkeeping is the re-enactment job's."""
    video = Path(video).expanduser().resolve()
    probe_video(video)
    result = prepare_video(video, project.take_dir(take), size=size, smooth_sigma=smooth,
                           progress=progress, cancel=cancel)
    keep_copy(video, project.driving_copy_path(take, copy_suffix(video)))
    return result
