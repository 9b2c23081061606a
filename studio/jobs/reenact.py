"""Jobs 'reenact' (driving video -> latent track) and 'export' (latent track -> video).

Shared by the CLI and the GUI. ``reenact_take`` prepares the driving video into
``takes/<name>/`` with the self-scan's smoothed alignment at the generator's resolution, finds
MediaPipe keypoints on the aligned crops, and runs ``optimize.reenact`` (resumable: run it again
after an interruption). ``render_take_job`` renders a finished take with the personalized or a
stylized generator, optionally through semantic edits, and exports MP4 (with the driving audio),
GIF or PNG frames. Every path comes from ``studio.project``.

Take folder: ``driving.<ext>`` (copy), ``crops/``, ``landmarks.npz``, ``quality.json`` (prepare),
``driving_keypoints.npz`` (MediaPipe on the crops), ``latents.npz`` (track), ``track.json``
(settings, flagged frames, timings).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from editing.directions import TrackEdit
from editing.render import (RenderResult, check_output_height, output_kind, read_crops, render_crops, render_take,
                            warped_driving_crops)
from optimize.driving import DrivingFrames
from optimize.latent_space import PersonalizedSpace
from optimize.reenact import ReenactResult, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.track import load_track
from personalize.errors import Action, ProjectError, UserError
from personalize.fileio import atomic_write_json, same_file_content
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.jobs.editing import EditSpec, edits_to_ws_edit
from studio.jobs.oneshot import OneShotOptions
from studio.project import Project

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default notify: say nothing."""


def load_personalized_generator(project: Project, device: torch.device | str) -> torch.nn.Module:
    """The personalized generator in eval mode, frozen (ProjectError when missing)."""
    from personalize.stylegan2 import load_generator

    generator = load_generator(project.require_generator(), device=device).eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator


def enable_fast_math(device: torch.device) -> None:
    """TF32 convolutions/matmuls on CUDA: ~2x faster StyleGAN2 passes, keypoint error unchanged."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


# ----------------------------------------------------------------------------- reenact
def resolve_driving(project: Project, driving: str | Path | None, name: str, restart: bool) -> Path:
    """The driving video of take ``name``: ``driving``, or the take's copy when None (resume).

    Refuses a different video under the name of a take that has output (unless ``restart``), and a
    file that is not a readable video (said before any network is loaded).
    """
    from personalize.video import probe_video

    if driving is None:
        driving = project.driving_copy(name)
        if driving is None:
            raise UserError(f"The take '{name}' has no driving video yet.",
                            "Give the driving video to re-enact.", Action("reenact", name))
    driving = Path(driving).expanduser()
    if not driving.is_file():
        raise UserError(f"Driving video not found: {driving}", "Check the path.")
    probe_video(driving)
    existing = project.driving_copy(name)
    has_output = project.track_path(name).is_file() or project.image_take(name).exists()
    if (not restart and existing is not None and has_output
            and existing.resolve() != driving.resolve() and not same_file_content(existing, driving)):
        raise ProjectError(f"The take '{name}' was made from another driving video ({existing.name}).",
                           "Give this take another name, or restart the take to replace it.",
                           Action("restart-take", name))
    return driving


def claim_take(project: Project, name: str, backend: str, restart: bool) -> None:
    """Make sure take ``name`` is ``backend``'s: a take another mode made is refused, or (with
    ``restart``) that mode's output is removed, so a folder never holds two modes' results."""
    from optimize.backends import backend_info

    wanted = backend_info(backend).output
    made = project.take_output(name) if (project.track_path(name).is_file()
                                         or project.image_take(name).exists()) else None
    if made is None or made == wanted:
        return
    if not restart:
        raise ProjectError(f"The take '{name}' was made with another re-enactment mode "
                           f"({project.take_backend(name)}).",
                           "Give this take another name, or restart the take to replace it.",
                           Action("restart-take", name))
    if made == "images":
        project.image_take(name).clear()
    else:
        project.track_path(name).unlink(missing_ok=True)


def reenact_take(project: Project, driving: str | Path | None, name: str,
                 settings: ReenactSettings = ReenactSettings(), device: torch.device | str = "cpu",
                 progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED, *,
                 restart: bool = False, notify: Notify = _quiet, backend: str = "personal",
                 oneshot: OneShotOptions = OneShotOptions(), mode: str = "exact",
                 refine_steps: int | None = None,
                 runner: Callable[..., ReenactResult] | None = None) -> dict[str, Any]:
    """Re-enact the project's person from ``driving`` into ``takes/<name>/``; returns track.json's dict.

    ``driving`` None re-uses the take's copy (``takes/<name>/driving.*``), e.g. to resume.
    ``backend``: the re-enactment mode (``optimize.backends.BACKENDS``). 'personal' (the
    personalized generator) is shaped by ``settings`` (read, never changed; build them with
    ``ReenactSettings().adjusted(...)`` from the user's options) and by ``mode``: 'exact'
    (per-frame optimization), 'fast' (the motion model's prediction, corrected by the earlier frames' misses: one generator
    pass per frame)
    or 'refine' (the first frame as 'exact' does it, then the prediction corrected in a closed
    loop and ``refine_steps`` optimizer steps a frame; ``studio.jobs.motion``).
    A one-shot mode is shaped by ``oneshot`` (``studio.jobs.oneshot``: source, landmarks,
    diffusion steps). ``runner``: what optimizes an exact personal track, called as
    ``optimize.reenact.reenact`` (default); ``studio.jobs.reenact_chunks`` passes one that runs
    the take in chunks, over several processes.
    """
    from personalize.video import probe_video
    from studio.jobs.motion import check_mode, mode_track, motion_predictor
    from studio.jobs.prepare import prepare_driving

    check_mode(mode, refine_steps)
    if backend != "personal":
        if mode != "exact":
            raise UserError(f"The {mode} mode drives the personalized generator only, not {backend}.",
                            "Choose the personal mode, or leave the fast/refine mode out.")
        from studio.jobs.oneshot import reenact_oneshot

        return reenact_oneshot(project, driving, name, backend, oneshot, device=device, progress=progress,
                               cancel=cancel, restart=restart, notify=notify)
    project.require("personalize", "Re-enactment")
    settings.validate()
    device = torch.device(device)
    take_dir = project.take_dir(name)
    driving = resolve_driving(project, driving, name, restart)
    claim_take(project, name, backend, restart)

    generator = load_personalized_generator(project, device)
    anchors = project.load_anchors()
    if anchors.shape[1] != generator.w_dim:
        raise ProjectError(f"The anchors have w_dim {anchors.shape[1]} but the generator {generator.w_dim}.",
                           "Personalize the generator again.", Action("personalize"))
    predictor = None
    if mode != "exact":  # before the slow preparation: a missing motion model is said at once
        predictor = motion_predictor(project, PersonalizedSpace(anchors, generator.num_ws, device=device), device)
    enable_fast_math(device)
    resolution = int(generator.img_resolution)
    started = time.time()
    take_dir.mkdir(parents=True, exist_ok=True)

    notify("preparing the driving video (landmarks, smoothed alignment, crops)")
    prepared = prepare_driving(project, name, driving, size=resolution, smooth=2.0, progress=progress,
                               cancel=cancel)
    copy = project.driving_copy(name) or driving
    info = probe_video(copy)
    notify("finding the driving keypoints on the aligned crops")
    frames = DrivingFrames.from_crop_files(prepared.crop_paths, cache=project.driving_keypoints_path(name),
                                           progress=progress, cancel=cancel)
    frames.valid = frames.valid & np.asarray(prepared.valid, bool)

    project.mark_running("reenact")
    try:
        if mode == "exact":
            result: ReenactResult = (runner or reenact)(
                generator, anchors, frames, project.track_path(name), settings=settings,
                generator_id=project.generator_id(), anchor_cache=project.anchor_keypoints_cache,
                device=device, restart=restart, progress=progress, cancel=cancel)
        else:
            result = mode_track(project, name, mode, generator, anchors, frames, settings, predictor,
                                refine_steps=refine_steps, device=device, restart=restart,
                                progress=progress, cancel=cancel)
    except BaseException:
        project.mark_stopped("reenact")
        raise
    track = result.track
    record = {
        "take": name,
        "backend": "personal", "output": "latents",
        "driving_source": str(driving.resolve()),
        "driving": copy.name,
        "fps": info.fps, "n_frames": track.n_frames, "width": info.width, "height": info.height,
        "has_audio": info.has_audio,
        "resolution": resolution,
        "device": str(device),
        "mode": mode,
        "refine_steps": refine_steps if mode == "refine" else None,
        "settings": asdict(settings),
        "flagged_frames": result.flagged_frames,
        "frames_optimized_this_run": result.frames_optimized,
        "generator_passes_this_run": result.generator_passes,
        "seconds_this_run": round(result.seconds, 2),
        "seconds_per_frame": round(result.seconds / max(1, result.frames_optimized), 3),
        "mean_final_loss": _nanmean(track.final_loss),
        "mean_key_loss": _nanmean(track.key_loss),
        "mean_steps": float(np.mean(track.steps[track.face_found])) if track.face_found.any() else 0.0,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_seconds": round(time.time() - started, 2),
    }
    atomic_write_json(project.track_info_path(name), record)
    project.mark_done("reenact", take=name, frames=track.n_frames, flagged=len(result.flagged_frames))
    if result.flagged_frames:
        notify(f"{len(result.flagged_frames)} frame(s) without a face held the previous code: "
               f"{_ranges(result.flagged_frames)}")
    return record


def _nanmean(values: np.ndarray) -> float | None:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _ranges(indices: list[int]) -> str:
    """[1,2,3,7] -> '1-3, 7' (short messages for long flag lists)."""
    parts: list[str] = []
    start = prev = None
    for i in indices + [None]:  # type: ignore[list-item]
        if i is not None and prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = i
    return ", ".join(parts)


# ----------------------------------------------------------------------------- render / export
def render_take_job(project: Project, take: str, out: str | Path, paste_back: bool = False,
                    side_by_side: bool = False, edits: EditSpec = None, style: str | None = None,
                    device: torch.device | str = "cpu", *, raw: bool = False,
                    frames: slice | None = None, height: int | None = None,
                    batch_size: int | None = None, feather: float = 0.08, mark_export: bool = True,
                    progress: ProgressFn = no_progress,
                    cancel: CancelToken = NEVER_CANCELLED) -> RenderResult:
    """Render take ``take`` to ``out`` (.mp4 with the driving audio, .gif, or a folder of PNGs).

    paste_back: into the driving video's full frames (else the aligned crops); side_by_side:
    driving | result; edits: semantic directions and strengths; style: a stylized generator's
    name; raw: render the unsmoothed codes (to compare with the filtered track); height: output
    height in pixels (None: the natural size); mark_export: record the result as the project's
    Export stage (False for previews, which are not an export the user asked for).
    """
    from personalize.faces import load_prepared
    from personalize.stylegan2 import load_generator
    from personalize.video import probe_video

    take_dir = project.take_dir(take)
    if take not in project.takes():
        available = ", ".join(project.takes()) or "none"
        raise ProjectError(f"No take named '{take}' in {project.takes_dir}.",
                           f"Available: {available}. Re-enact a driving video as '{take}' first.",
                           Action("reenact", take))
    images = project.take_output(take) == "images"
    if images:
        _check_image_take(project, take, edits, style)
    else:
        track = load_track(project.track_path(take))
        if track.frames_done < track.n_frames or not track.complete:
            raise ProjectError(f"The take '{take}' is not finished ({track.frames_done} of {track.n_frames} frames).",
                               "Resume the take first.", Action("resume-take", take))
    output_kind(out)  # validate the output name and size before any work
    check_output_height(height)
    device = torch.device(device)
    prepared = load_prepared(take_dir)
    driving_video = project.driving_copy(take)
    if driving_video is None:
        raise ProjectError(f"The take folder {take_dir} lost its driving video copy.",
                           "Re-enact the driving video again.", Action("restart-take", take))
    info = probe_video(driving_video)
    layout = dict(fps=info.fps if info.fps > 0 else prepared.fps, paste_back=paste_back,
                  side_by_side_with_driving=side_by_side, driving_video=driving_video, audio_from=driving_video,
                  frames=frames, height=height, feather=feather, progress=progress, cancel=cancel)
    if images:
        result = _render_image_take(project, take, out, prepared.crop_paths, layout)
    else:
        ws = track.ws if raw else track.best_ws()
        enable_fast_math(device)
        generator_file = project.style_generator_path(style) if style else project.require_generator()
        generator = load_generator(generator_file, device=device).eval()
        edit = edits_to_ws_edit(project, edits, int(ws.shape[2]), int(ws.shape[1]))
        result = render_take(generator, ws, out, edit_ws=edit, transforms=prepared.transforms,
                             crop_size=prepared.size, driving_crops=prepared.crop_paths, device=device,
                             batch_size=batch_size, **layout)
        if isinstance(edit, TrackEdit) and edit.report.codes:
            result = replace(result, edit_report=edit.report.summary())
    if mark_export:
        project.mark_done("export", take=take, out=str(Path(out).resolve()), kind=result.kind,
                          frames=result.frames, style=style, edits=json.dumps(_edit_record(edits)))
    return result


def _check_image_take(project: Project, take: str, edits: EditSpec, style: str | None) -> None:
    """A one-shot take renders as it is: no edits or style (they act on latent codes), and only finished."""
    if edits or style:
        raise UserError(f"The take '{take}' was made by {project.take_backend(take)}, a one-shot mode: it holds "
                        "images, not the personal generator's codes, so semantic edits and styles cannot apply.",
                        "Export it without edits and style, or re-enact the video with the personal generator.")
    done = project.image_take(take).progress()
    if not done.complete:
        raise ProjectError(f"The take '{take}' is not finished ({done.frames_done} of {done.n_frames} frames).",
                           "Resume the take first.", Action("resume-take", take))


def _render_image_take(project: Project, take: str, out: str | Path, prepared_crops: list[Path],
                       layout: dict[str, Any]) -> RenderResult:
    """Compose a one-shot take's stored frames (in its own crop convention, with its transforms)."""
    frames_of = project.image_take(take)
    plan = frames_of.read_plan_arrays()
    transforms, size, n = plan["transforms"], int(plan["size"]), int(plan["valid"].shape[0])
    if str(plan["crop"]) == "ffhq" and len(prepared_crops) == n:
        driving_crops: Any = prepared_crops          # the preparation's crops are this convention's
    else:
        start = range(n)[layout["frames"]].start if layout["frames"] is not None else 0
        driving_crops = warped_driving_crops(layout["driving_video"], transforms, size, start)
    crops = read_crops([frames_of.frame_path(t) for t in range(n)], layout["frames"])
    face = plan["mesh"] if str(plan["crop"]) != "ffhq" else None   # the FFHQ ellipse fits ffhq crops
    return render_crops(crops, n, out, transforms=transforms, crop_size=size, driving_crops=driving_crops,
                        face_landmarks=face, **layout)


def _edit_record(edits: EditSpec) -> Any:
    if not edits:
        return None
    if isinstance(edits, Mapping):
        return {str(k): float(v) for k, v in edits.items()}
    return [item if isinstance(item, str) else [str(item[0]), float(item[1])] for item in edits]
