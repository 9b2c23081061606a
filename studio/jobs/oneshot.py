"""Job 'reenact' for the one-shot modes (HyperReenact, latent directions, DiffusionAct): a take of images.

Called through ``studio.jobs.reenact.reenact_take(backend=...)``, so the CLI and the GUI start
every mode the same way. It needs no personalization: a prepared self-scan (its sharpest frontal
frame is the default source) or any photo with a face. Steps:

1. the weights the mode reads, resolved here (``studio.weights.require_weights``) and passed down
   as paths; nothing is downloaded (fetching, with its licence notes, is ``models fetch``'s and
   the Models dialog's business);
2. the driving video prepared like every take (MediaPipe landmarks, smoothed FFHQ crops at 256 px)
   and planned in the mode's crop convention (``optimize.oneshot_frames``);
3. the source cropped the same way, encoded once (cached in the take), the frames re-enacted in
   batches into ``frames/`` (``optimize.image_take``): resumable, a different input is refused.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from optimize.backends import BackendInfo, backend_info, load_backend
from optimize.image_take import reenact_images
from optimize.oneshot_frames import CROP_SIGMA, SourceFace, driving_crops, plan_driving, source_face
from personalize.errors import Action, CheckpointError, MediaError, MissingWeightsError, UserError
from personalize.fileio import atomic_write_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.project import Project

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default notify: say nothing."""


@dataclass(frozen=True)
class OneShotOptions:
    """What shapes a one-shot take besides the driving video (one object in, never changed).

    ``source``: None (the self-scan's sharpest frontal frame), a scan frame number, or an image
    file; ``landmarks``: DiffusionAct's conditioning, 'flame' (official, the default) or
    'mediapipe'; ``steps`` / ``quality``: its render step count or preset
    (``BackendInfo.step_presets``); ``inversion_steps``: its source inversion (None: the official
    50). A field left None when resuming a take is taken from what the take was started with.
    """

    source: str | None = None
    landmarks: str | None = None
    steps: int | None = None
    quality: str | None = None
    inversion_steps: int | None = None


def render_steps_for(info: BackendInfo, steps: int | None, quality: str | None) -> int | None:
    """The render step count from ``--steps`` or a ``--quality`` preset (None: not a diffusion mode)."""
    if not info.step_presets:
        if steps is not None or quality is not None:
            raise UserError(f"{info.title} has no step count or quality setting.",
                            "Leave the steps and the quality preset out for this mode.")
        return None
    if steps is not None and quality is not None:
        raise UserError("Both a step count and a quality preset were given.", "Give one of them.")
    if quality is not None:
        if quality not in info.step_presets:
            raise UserError(f"Unknown quality preset '{quality}'.",
                            f"Use one of: {', '.join(info.step_presets)}.")
        return info.step_presets[quality]
    return info.default_steps if steps is None else checked_steps(steps)


def checked_steps(steps: int) -> int:
    """A DDIM step count the 1000-step schedule can space evenly (UserError naming nearby ones)."""
    from optimize.ddim import valid_step_counts

    valid = valid_step_counts()
    if steps not in valid:
        near = sorted(sorted(valid, key=lambda k: abs(k - steps))[:4])
        raise UserError(f"{steps} diffusion steps cannot be spaced evenly over the 1000-step schedule.",
                        f"Use a nearby count, e.g. {', '.join(map(str, near))}.")
    return steps


def resolve_weights(info: BackendInfo, landmarks: str) -> dict[str, Path]:
    """registry name -> path of every file the mode reads; MissingWeightsError naming how to get them."""
    from studio.weights import is_present, require_weights

    missing_official = [n for n in info.landmark_weights if not is_present(n)] if landmarks == "flame" else []
    if missing_official:
        raise MissingWeightsError(
            f"{info.title} with the official landmarks (EMOCA + FLAME) needs {', '.join(missing_official)}, "
            "which this computer does not have.",
            "Two ways out: get them (FLAME needs a free registration at https://flame.is.tue.mpg.de and is "
            "imported as the 'flame' weights; the others download in the Models list), or draw the "
            "conditioning from MediaPipe's landmarks instead (--landmarks mediapipe on the command line, "
            "'MediaPipe landmarks' on the Re-enact page; not the official path, no FLAME needed).",
            Action("models", missing_official[0]))
    return {name: require_weights(name) for name in info.weights_for(landmarks)}


def load_source(project: Project, source: str | Path | None, info: BackendInfo) -> tuple[SourceFace, str]:
    """(the source in the mode's crop, a description): a scan frame (None: the sharpest frontal
    one; a number: that frame) or an image file with one face."""
    from personalize.faces import detect_landmarks
    from personalize.video import read_image

    size = info.resolution or 256
    if source is None or str(source).strip().isdigit():
        frame = None if source is None else int(str(source).strip())
        if not project.scan_crop_paths():
            raise UserError("A one-shot mode needs a source face: the self-scan is not prepared, and no "
                            "source image was given.", "Prepare the self-scan, or give a photo of the face "
                                                       "as the source.", Action("prepare"))
        path, mesh = project.scan_source_frame(frame)
        return source_face(read_image(path), mesh, info.crop, size), f"self-scan frame {int(path.stem)}"
    path = Path(source).expanduser()
    if not path.is_file():
        raise MediaError(f"Source image not found: {path}", "Check the path, or give a self-scan frame number.")
    image = read_image(path)
    mesh = detect_landmarks(image)
    if mesh is None:
        raise MediaError(f"No face was found in the source image {path.name}.",
                         "Use a photo where one face looks roughly at the camera, large enough and well lit.")
    return source_face(image, mesh, info.crop, size), str(path.resolve())


def reenact_oneshot(project: Project, driving: str | Path | None, name: str, backend: str,
                    options: OneShotOptions = OneShotOptions(), *, device: torch.device | str = "cpu",
                    progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED,
                    restart: bool = False, notify: Notify = _quiet) -> dict[str, Any]:
    """Re-enact ``options.source`` (see ``load_source``) from ``driving`` with the one-shot mode
    ``backend`` into ``takes/<name>/``; returns track.json's dict (as ``reenact_take``)."""
    from personalize.video import iter_frames, probe_video, read_image
    from studio.jobs.prepare import prepare_driving
    from studio.jobs.reenact import claim_take, resolve_driving

    info = backend_info(backend)
    if info.output != "images":
        raise ValueError(f"{backend} is not a one-shot mode")
    take = project.image_take(name)
    if not restart and take.exists():
        stored = take.stored_options()
        if options.quality is not None:
            stored.pop("steps", None)       # a preset given now replaces the stored step count
        options = OneShotOptions(**{k: v if v is not None else stored.get(k) for k, v in asdict(options).items()})
    landmarks = options.landmarks or "flame"
    if landmarks not in (info.landmark_sources or ("flame",)):
        raise UserError(f"{info.title} takes no landmark source '{landmarks}'.",
                        "Leave the landmark source out for this mode (only DiffusionAct has one).")
    render_steps = render_steps_for(info, options.steps, options.quality)
    device = torch.device(device)
    driving = resolve_driving(project, driving, name, restart)
    claim_take(project, name, backend, restart)
    weights = resolve_weights(info, landmarks)
    face, source_text = load_source(project, options.source, info)

    build: dict[str, Any] = {}
    if info.landmark_sources:
        build["landmarks"] = landmarks
    if render_steps is not None:
        build["steps"] = render_steps
        if options.inversion_steps is not None:
            build["inversion_steps"] = checked_steps(options.inversion_steps)
    notify(f"loading the {info.title} networks")
    try:
        model = load_backend(backend, weights, device, **build)
    except CheckpointError as err:
        raise _unpinned(err) from None

    started = time.time()
    notify("preparing the driving video (landmarks, smoothed crops)")
    size = info.resolution or 256
    prepared = prepare_driving(project, name, driving, size=size, smooth=CROP_SIGMA, progress=progress, cancel=cancel)
    copy = project.driving_copy(name) or driving
    video = probe_video(copy)
    plan = plan_driving(info.crop, prepared.landmarks, prepared.valid, video.width, prepared.transforms, size)
    source_file = options.source is not None and not str(options.source).strip().isdigit()
    used = {"source": str(Path(options.source).expanduser().resolve()) if source_file else options.source,
            "landmarks": landmarks if info.landmark_sources else None,
            "steps": render_steps, "inversion_steps": getattr(model, "inversion_steps", None)}

    def crops_from(start: int):  # noqa: ANN202 - an iterator of driving crops
        frames = iter_frames(copy, start=start) if info.crop == "landmarks68" else None
        return driving_crops(plan, frames, lambda t: read_image(prepared.crop_paths[t]), start)

    project.mark_running("reenact")
    try:
        result = reenact_images(model, weights, face, plan, crops_from, take,
                                driving_id=f"{prepared.source_sha256}:{sorted(prepared.settings.items())}",
                                options=used, restart=restart, progress=progress, cancel=cancel)
    except BaseException:
        project.mark_stopped("reenact")
        raise
    record = {
        "take": name, "backend": backend, "output": "images",
        "driving_source": str(driving.resolve()), "driving": copy.name,
        "fps": video.fps, "n_frames": result.n_frames, "width": video.width, "height": video.height,
        "has_audio": video.has_audio, "resolution": size, "device": str(device),
        "source": source_text, "settings": model.settings, "options": used,
        "flagged_frames": result.flagged_frames,
        "frames_rendered_this_run": result.frames_rendered,
        "source_reused": result.source_reused,
        "source_seconds": round(result.source_seconds, 2),
        "seconds_this_run": round(result.seconds, 2),
        "seconds_per_frame": round((result.seconds - result.source_seconds) / max(1, result.frames_rendered), 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_seconds": round(time.time() - started, 2),
    }
    atomic_write_json(project.track_info_path(name), record)
    project.mark_done("reenact", take=name, backend=backend, frames=result.n_frames,
                      flagged=len(result.flagged_frames))
    if result.flagged_frames:
        notify(f"{len(result.flagged_frames)} frame(s) without a face used landmarks interpolated from "
               "their neighbours")
    return record


def _unpinned(err: CheckpointError) -> CheckpointError:
    """A weights file that does not load must not stay pinned (the right one would be refused)."""
    from studio.weights.store import forget_pin

    subject = err.action.subject if err.action is not None and err.action.step == "models" else None
    if not subject or not forget_pin(subject):
        return err
    hint = ((err.hint + "\n") if err.hint else "") + (
        f"Its recorded hash was cleared, so the right '{subject}' file can be fetched or imported.")
    return CheckpointError(err.message, hint, err.action)
