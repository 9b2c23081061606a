"""Jobs 'reenact' (driving video -> latent track) and 'export' (latent track -> video).

Shared by the CLI and the GUI. ``reenact_take`` prepares the driving video into
``takes/<name>/`` with the self-scan's smoothed alignment at the generator's resolution, finds
MediaPipe keypoints on the aligned crops, and runs ``optimize.reenact`` (resumable: run it again
after an interruption). ``render_take_job`` renders a finished take with the personalized or a
stylized generator, optionally through semantic edits, and exports MP4 (with the driving audio),
GIF or PNG frames.

Take folder: ``driving.<ext>`` (copy), ``crops/``, ``landmarks.npz``, ``quality.json`` (prepare),
``driving_keypoints.npz`` (MediaPipe on the crops), ``latents.npz`` (track), ``track.json``
(settings, flagged frames, timings).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from editing.render import RenderResult, WsEdit, check_output_height, output_kind, render_take
from optimize.keypoints import KEYPOINT_DEFINITION
from optimize.reenact import (TRACK_FILE, DrivingFrames, ReenactResult, ReenactSettings,
                              anchor_keypoints, load_track, reenact)
from personalize.errors import ProjectError, UserError
from personalize.fileio import atomic_save_npz, atomic_write_json, read_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.project import Project

TRACK_INFO = "track.json"
DRIVING_KEYPOINTS = "driving_keypoints.npz"
ANCHOR_KEYPOINTS = ".anchor_keypoints.npz"

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default notify: say nothing."""


# ----------------------------------------------------------------------------- project files
def personalized_generator_path(project: Project) -> Path:
    return project.model_dir / "generator.safetensors"


def load_project_anchors(project: Project) -> np.ndarray:
    """(N, w_dim) float32 anchors: model/anchors.npy (written with the generator), else dataset/."""
    for path in (project.model_dir / "anchors.npy", project.dataset_dir / "anchors.npy"):
        if path.is_file():
            try:
                anchors = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as exc:
                raise ProjectError(f"{path} is unreadable ({exc}).",
                                   f"Re-run: studio-cli personalize {project.root} --base ffhq") from exc
            if anchors.ndim != 2 or anchors.shape[0] < 1 or not np.isfinite(anchors).all():
                raise ProjectError(f"{path} does not hold valid anchors (N, w_dim).",
                                   f"Re-run: studio-cli personalize {project.root} --base ffhq")
            return anchors
    raise ProjectError("This project has no anchors (the person's latent codes).",
                       f"Run first: studio-cli personalize {project.root} --base ffhq")


def load_personalized_generator(project: Project, device: torch.device | str) -> torch.nn.Module:
    from personalize.stylegan2 import load_generator

    path = personalized_generator_path(project)
    if not path.is_file():
        raise ProjectError(f"The personalized generator {path} is missing.",
                           f"Re-run: studio-cli personalize {project.root} --base ffhq")
    generator = load_generator(path, device=device).eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator


def _generator_id(project: Project) -> str:
    """Identifies the personalized generator for the track fingerprint (stage fingerprint + file)."""
    path = personalized_generator_path(project)
    stat = path.stat()
    return f"{project.fingerprint('personalize')}:{stat.st_size}:{stat.st_mtime_ns}"


def _enable_fast_math(device: torch.device) -> None:
    """TF32 convolutions/matmuls on CUDA: ~2x faster StyleGAN2 passes, keypoint error unchanged."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def cached_anchor_keypoints(project: Project, generator: torch.nn.Module, anchors: np.ndarray,
                            landmarks: Any, generator_id: str, cancel: CancelToken) -> np.ndarray:
    """Every anchor's rendered keypoints (N,66,3), computed once per personalized generator."""
    from optimize.latent_space import PersonalizedSpace

    path = project.takes_dir / ANCHOR_KEYPOINTS
    key = hashlib.sha256(generator_id.encode() + np.ascontiguousarray(anchors).tobytes()
                         + KEYPOINT_DEFINITION.encode()).hexdigest()  # a new keypoint definition recomputes
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) == key:
                    return data["keypoints"]
        except (OSError, KeyError, ValueError):
            pass  # recompute a damaged cache
    device = next(generator.parameters()).device
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    keypoints = anchor_keypoints(generator, space, landmarks, cancel=cancel)
    atomic_save_npz(path, keypoints=keypoints, key=np.array(key))
    return keypoints


# ----------------------------------------------------------------------------- reenact
def reenact_take(project: Project, driving: str | Path | None, name: str, steps: int | None = None,
                 lr: float | None = None, smooth: bool = True, device: torch.device | str = "cpu",
                 progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED, *,
                 restart: bool = False, settings: ReenactSettings | None = None,
                 notify: Notify = _quiet) -> dict[str, Any]:
    """Re-enact the project's person from ``driving`` into ``takes/<name>/``; returns track.json's dict.

    ``driving`` None re-uses the take's copy (``takes/<name>/driving.*``), e.g. to resume.
    ``steps``/``lr`` override ``settings``; ``smooth`` False skips the temporal latent filter.
    """
    from personalize.faces.facemesh import FaceMesh
    from optimize.losses import MeshLandmarks
    from personalize.video import probe_video
    from studio.jobs.prepare import DRIVING_STEM, find_source, prepare_driving

    project.require("personalize", "Re-enactment")
    device = torch.device(device)
    settings = settings or ReenactSettings()
    if steps is not None:
        settings.steps = int(steps)
    if lr is not None:
        settings.first_lr = float(lr) * settings.first_lr / settings.lr  # keep the cold-start ratio
        settings.lr = float(lr)
    if not smooth:
        settings.smooth_sigma = 0.0
    settings.validate()
    take_dir = project.take_dir(name)
    take_dir.mkdir(parents=True, exist_ok=True)
    if driving is None:
        driving = find_source(take_dir, DRIVING_STEM)
        if driving is None:
            raise UserError(f"The take '{name}' has no driving video yet.",
                            "Give one with --driving FILE.")
    driving = Path(driving).expanduser()
    if not driving.is_file():
        raise UserError(f"Driving video not found: {driving}", "Check the path.")

    existing = find_source(take_dir, DRIVING_STEM)
    if (not restart and existing is not None and (take_dir / TRACK_FILE).is_file()
            and existing.resolve() != driving.resolve() and not _same_bytes(existing, driving)):
        raise ProjectError(f"The take '{name}' was made from another driving video ({existing.name}).",
                           "Choose another --name, or add --restart to replace this take.")

    generator = load_personalized_generator(project, device)
    anchors = load_project_anchors(project)
    if anchors.shape[1] != generator.w_dim:
        raise ProjectError(f"The anchors have w_dim {anchors.shape[1]} but the generator {generator.w_dim}.",
                           f"Re-run: studio-cli personalize {project.root} --base ffhq")
    _enable_fast_math(device)
    resolution = int(generator.img_resolution)
    started = time.time()

    notify("preparing the driving video (landmarks, smoothed alignment, crops)")
    prepared = prepare_driving(driving, take_dir, size=resolution, smooth=2.0, progress=progress, cancel=cancel)
    copy = find_source(take_dir, DRIVING_STEM) or driving
    info = probe_video(copy)
    notify("finding the driving keypoints on the aligned crops")
    frames = DrivingFrames.from_crop_files(prepared.crop_paths, cache=take_dir / DRIVING_KEYPOINTS,
                                           progress=progress, cancel=cancel)
    frames.valid = frames.valid & np.asarray(prepared.valid, bool)

    face_mesh = FaceMesh.from_mediapipe(device=device)
    landmarks = MeshLandmarks(face_mesh, input_size=min(settings.mesh_input, resolution))
    generator_id = _generator_id(project)
    anchor_kp = None
    if settings.first_frame == "nearest-anchor":
        notify(f"rendering the {len(anchors)} anchors once to find the best start")
        anchor_kp = cached_anchor_keypoints(project, generator, anchors, landmarks, generator_id, cancel)

    project.mark_running("reenact")
    try:
        result: ReenactResult = reenact(
            generator, anchors, frames, take_dir / TRACK_FILE, landmarks, settings=settings,
            generator_id=generator_id, device=device, restart=restart, anchor_kp=anchor_kp,
            progress=progress, cancel=cancel)
    except BaseException:
        project.mark_stopped("reenact")
        raise
    track = result.track
    record = {
        "take": name,
        "driving_source": str(driving.resolve()),
        "driving": copy.name,
        "fps": info.fps, "n_frames": track.n_frames, "width": info.width, "height": info.height,
        "has_audio": info.has_audio,
        "resolution": resolution,
        "device": str(device),
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
    atomic_write_json(take_dir / TRACK_INFO, record)
    project.mark_done("reenact", take=name, frames=track.n_frames, flagged=len(result.flagged_frames))
    if result.flagged_frames:
        notify(f"{len(result.flagged_frames)} frame(s) without a face held the previous code: "
               f"{_ranges(result.flagged_frames)}")
    return record


def _same_bytes(a: Path, b: Path) -> bool:
    from personalize.faces.prepare import sha256_of

    return a.stat().st_size == b.stat().st_size and sha256_of(a) == sha256_of(b)


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


def read_take_info(project: Project, take: str) -> dict[str, Any]:
    path = project.take_dir(take) / TRACK_INFO
    return read_json(path) if path.is_file() else {}


def list_takes(project: Project) -> list[str]:
    """Takes that have a latent track (finished or not)."""
    if not project.takes_dir.is_dir():
        return []
    return sorted(p.name for p in project.takes_dir.iterdir() if (p / TRACK_FILE).is_file())


# ----------------------------------------------------------------------------- render / export
EditSpec = Mapping[str, float] | Iterable[str] | Iterable[tuple[str, float]] | None


def edits_to_ws_edit(project: Project, edits: EditSpec, w_dim: int, num_ws: int) -> WsEdit | None:
    """``edits`` ({'smile': 1.5}, ['smile=1.5'] or [('smile', 1.5)]) -> a ws-edit function, or None."""
    if not edits:
        return None
    try:
        from editing.directions import load_direction, make_ws_edit, parse_edit
    except ImportError as exc:
        raise UserError("Semantic edits are not available in this build (editing.directions is missing).",
                        "Render without --edit.") from exc
    pairs: list[tuple[str, float]] = []
    items = edits.items() if isinstance(edits, Mapping) else edits
    for item in items:
        if isinstance(item, str):
            pairs.append(parse_edit(item))
        else:
            name, strength = item
            pairs.append((str(name), float(strength)))
    chosen = [(load_direction(project, n, w_dim=w_dim, num_ws=num_ws), s) for n, s in pairs if s != 0.0]
    return make_ws_edit(chosen, anchors=load_project_anchors(project)) if chosen else None  # inside P_beta


def style_path(project: Project, style: str) -> Path:
    """The stylized generator file of ``style`` (editing's lookup when present, else the layout)."""
    try:
        from editing.directions import style_generator_path
    except ImportError:
        path = project.style_dir(style) / "generator.safetensors"
        if not path.is_file():
            raise UserError(f"No style named '{style}' in {project.styles_dir}.",
                            "Create one with: studio-cli stylize PROJECT --prompt TEXT --name NAME") from None
        return path
    return style_generator_path(project, style)


def render_take_job(project: Project, take: str, out: str | Path, paste_back: bool = False,
                    side_by_side: bool = False, edits: EditSpec = None, style: str | None = None,
                    device: torch.device | str = "cpu", *, raw: bool = False,
                    frames: slice | None = None, height: int | None = None,
                    batch_size: int = 4, feather: float = 0.08, mark_export: bool = True,
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
    from studio.jobs.prepare import DRIVING_STEM, find_source

    take_dir = project.take_dir(take)
    if not take_dir.is_dir():
        available = ", ".join(list_takes(project)) or "none"
        raise ProjectError(f"No take named '{take}' in {project.takes_dir}.",
                           f"Available: {available}. Make one with: studio-cli reenact {project.root} "
                           f"--driving FILE --name {take}")
    track = load_track(take_dir)
    if track.frames_done < track.n_frames or not track.complete:
        raise ProjectError(f"The take '{take}' is not finished ({track.frames_done} of {track.n_frames} frames).",
                           f"Resume it with: studio-cli reenact {project.root} --name {take}")
    ws = track.ws if raw else track.best_ws()
    output_kind(out)  # validate the output name and size before any work
    check_output_height(height)
    device = torch.device(device)
    _enable_fast_math(device)
    generator_file = style_path(project, style) if style else personalized_generator_path(project)
    if not generator_file.is_file():
        raise ProjectError(f"The generator {generator_file} is missing.",
                           f"Re-run: studio-cli personalize {project.root} --base ffhq")
    generator = load_generator(generator_file, device=device).eval()
    edit = edits_to_ws_edit(project, edits, int(ws.shape[2]), int(ws.shape[1]))

    prepared = load_prepared(take_dir)
    driving_video = find_source(take_dir, DRIVING_STEM)
    if driving_video is None:
        raise ProjectError(f"The take folder {take_dir} lost its driving video copy.",
                           f"Re-run: studio-cli reenact {project.root} --driving FILE --name {take}")
    info = probe_video(driving_video)
    fps = info.fps if info.fps > 0 else prepared.fps
    result = render_take(generator, ws, out, fps=fps, edit_ws=edit, paste_back=paste_back,
                         side_by_side_with_driving=side_by_side, driving_video=driving_video,
                         transforms=prepared.transforms, crop_size=prepared.size,
                         driving_crops=prepared.crop_paths, audio_from=driving_video, frames=frames,
                         height=height, device=device, batch_size=batch_size, feather=feather,
                         progress=progress, cancel=cancel)
    if mark_export:
        project.mark_done("export", take=take, out=str(Path(out).resolve()), kind=result.kind,
                          frames=result.frames, style=style, edits=json.dumps(_edit_record(edits)))
    return result


def _edit_record(edits: EditSpec) -> Any:
    if not edits:
        return None
    if isinstance(edits, Mapping):
        return {str(k): float(v) for k, v in edits.items()}
    return [item if isinstance(item, str) else [str(item[0]), float(item[1])] for item in edits]
