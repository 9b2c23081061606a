"""Jobs 'select' and 'personalize': from a prepared scan to a personalized generator.

Shared by the CLI and the GUI. Each job takes a Project, options, ``progress`` and ``cancel``,
resolves pretrained weights through ``studio.weights`` (lower layers never touch the cache),
calls ``personalize.selection`` / ``inversion`` / ``tuning`` and writes the project files:

    dataset/selection.json   chosen frame ids, diversity, coverage report
    dataset/anchors.npy      (N, w_dim) float32, row i <-> selection frame_ids[i]
    dataset/inversion.json   per-frame reconstruction LPIPS, base generator, method, settings
    dataset/inversion_progress.npz   anchors of the finished batches while inverting (resume)
    model/                   generator.safetensors+.json, anchors.npy, config.json, log.csv,
                             previews/, checkpoints/ (resume)

Every stage resumes: selection and anchors are reused when their inputs did not change, the
inversion keeps every finished batch, and tuning continues from its last checkpoint. A cancel
says exactly what was kept (``Cancelled.kept``). Progress messages start with the phase
("selecting: ...", "inverting: ...", "tuning: ...") so a progress display can name it.

Anchors (``anchors=``): "optimize" (default) projects every frame into W by optimization;
"encoder" uses the official FFHQ e4e (registry ``e4e-ffhq``, about 1 GB): seconds instead of
minutes, as the paper does (an encoder of the pSp family into W). e4e predicts W+ codes; the W
anchor of a frame is its **first style plus the checkpoint's ``latent_avg``** (e4e trains its
per-layer offsets to stay near that one code; ``personalize.encoders.e4e.encode_w_anchors``).
Why optimization stays the default: it needs no 1 GB download, works with any base generator
(the e4e was trained for the 1024 px FFHQ generator only), and encoding is "significantly faster
than optimization, but is also less accurate" (the paper, Sec. 2); the same command gives the
same kind of anchors on every machine instead of silently depending on whether a file happens
to be in the cache.

Several processes (``dist``, started by torchrun): rank 0 selects the frames and writes every
file; the inversion's batches are dealt to the ranks; tuning shares each global batch.
"""
from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from personalize.distributed import SINGLE, DistContext
from personalize.errors import Action, Cancelled, MediaError, ProjectError, UserError
from personalize.fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import read_image
from studio.project import DONE, Project
from studio.timings import measured_speed, record_speed, speed_key

log = logging.getLogger(__name__)

Notify = Callable[[str], None]


def _default_notify(message: str) -> None:
    log.warning(message)


# ----------------------------------------------------------------------------- LPIPS
def build_project_lpips(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The real LPIPS metric: AlexNet from the weights cache (MissingWeightsError if absent).

    A module-level function so tests can substitute a random-backbone metric explicitly.
    """
    from personalize.perceptual import build_lpips
    from studio.weights import require_weights

    return build_lpips(require_weights("lpips-alex"), device=device)


# ----------------------------------------------------------------------------- scan
@dataclass
class ScanFrames:
    frame_ids: list[int]            # video frame index t of each usable crop
    paths: list[Path]               # scan/crops/{t:06d}.png
    landmarks: np.ndarray | None    # (len(frame_ids), 478, 3) crop-pixel landmarks, if recorded


def load_scan(project: Project) -> ScanFrames:
    """Usable frames of the prepared scan: valid in its landmarks and with a crop on disk."""
    paths = {int(p.stem): p for p in project.scan_crop_paths() if p.stem.isdigit()}
    if not paths:
        raise ProjectError(f"The project has no aligned crops in {project.scan_dir}.",
                           "Prepare the self-scan first.", Action("prepare"))
    scan = project.read_scan_landmarks()
    if scan is None:
        return ScanFrames(sorted(paths), [paths[t] for t in sorted(paths)], None)
    landmarks, valid = scan
    ids = [t for t in np.flatnonzero(valid).tolist() if t in paths]
    return ScanFrames(ids, [paths[t] for t in ids], landmarks[ids])


def read_crop(path: Path, size: int | None = None) -> np.ndarray:
    """HWC uint8 RGB crop, optionally resized (area filter) to size x size."""
    try:
        image = read_image(path)
    except MediaError as exc:
        raise MediaError(f"Cannot read the aligned crop {path}.", "Prepare the self-scan again.",
                         Action("prepare")) from exc
    if size is not None and image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def read_crops_uint8(paths: list[Path], size: int | None = None) -> torch.Tensor:
    """(N,3,H,W) uint8 RGB."""
    return torch.from_numpy(np.stack([read_crop(p, size) for p in paths])).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- select
def select_frames(project: Project, count: int = 250, *, work_size: int | None = None, batch: int = 32,
                  device: torch.device | str = "cpu", lpips_model: torch.nn.Module | None = None,
                  progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED,
                  notify: Notify = _default_notify) -> dict[str, Any]:
    """Pick ``count`` LPIPS-diverse frames (paper Alg. 1) and write ``dataset/selection.json``."""
    from personalize import selection as sel

    work_size = work_size or sel.DEFAULT_WORK_SIZE
    if count < 2:
        raise UserError(f"--count must be at least 2 (got {count}).", "The paper uses 250.")
    scan = load_scan(project)
    n = len(scan.frame_ids)
    if n < sel.MIN_FRAMES:
        raise UserError(f"Only {n} usable face frames in the scan; at least {sel.MIN_FRAMES} are needed.",
                        "Record a longer self-scan (about 30 s) with your face visible and well lit.")
    project.mark_running("select")
    try:
        model = lpips_model if lpips_model is not None else build_project_lpips(device)
        started = time.perf_counter()
        images = []
        for k, path in enumerate(scan.paths):
            if k % 16 == 0:
                cancel.check()
                progress(k, n, "reading crops")
            images.append(torch.from_numpy(read_crop(path, work_size)))
        stack = torch.stack(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        result = sel.select_diverse(model, stack, count, batch=batch, progress=progress, cancel=cancel)
        for w in result.warnings:
            notify(w)
        chosen_ids = [scan.frame_ids[i] for i in result.indices]
        info: dict[str, Any] = {
            "requested": count,
            "count": len(chosen_ids),
            "usable_frames": n,
            "frame_ids": chosen_ids,
            "min_lpips_at_pick": [None if np.isnan(v) else round(v, 6) for v in result.min_distances],
            "work_size": work_size,
            "metric": "LPIPS AlexNet v0.1",
            "network_passes": result.network_passes,
            "naive_network_passes": n * (n - 1),
            "seconds": round(time.perf_counter() - started, 2),
            "warnings": result.warnings,
        }
        if scan.landmarks is not None:
            info["coverage"] = sel.coverage_report(scan.landmarks, result.indices)
        atomic_write_json(project.selection_path, info)
    except BaseException:
        project.mark_stopped("select")
        raise
    project.mark_done("select", count=len(chosen_ids), usable_frames=n)
    return info


# ----------------------------------------------------------------------------- personalize
def resolve_base(base: str) -> Path:
    """'ffhq' -> the cached official checkpoint (or MissingWeightsError); else an existing file."""
    if base.lower() == "ffhq":
        from studio.weights import require_weights

        return require_weights("ffhq")
    path = Path(base).expanduser()
    if not path.is_file():
        raise UserError(f"The base generator {path} does not exist.",
                        "Use the official FFHQ generator ('ffhq') or the path of a .pkl / "
                        ".safetensors StyleGAN2 checkpoint.", Action("models", "ffhq"))
    return path


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


ANCHOR_METHODS = ("optimize", "encoder")
E4E_WEIGHTS = "e4e-ffhq"


def phase_progress(progress: ProgressFn, phase: str) -> ProgressFn:
    """``progress`` with every message prefixed by the phase ("inverting: frames 1-8 ...")."""

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{phase}: {message}" if message else phase)

    return report


def inversion_batch(batch: int) -> int:
    """Frames projected together: twice the tuning batch (projection needs no gradients of the
    generator's weights), at most 8."""
    return max(1, min(8, batch * 2))


def load_anchor_encoder(G: torch.nn.Module, device: torch.device, notify: Notify,
                        base: str) -> tuple[Any, str]:
    """The FFHQ e4e as an ``AnchorEncoder`` (W = first style + latent_avg) and the text that
    identifies the file (part of the inversion's resume key). UserError when the base does not
    have the e4e's number of styles (the official file is for the 1024 px FFHQ generator)."""
    from personalize.encoders.e4e import E4EAnchorEncoder, load_e4e
    from studio.weights import require_weights

    path = require_weights(E4E_WEIGHTS)
    encoder, latent_avg = load_e4e(path, device=device)
    if encoder.style_count != G.num_ws:
        raise UserError(f"The FFHQ e4e encoder makes anchors for a {encoder.resolution} px generator "
                        f"({encoder.style_count} styles); this base generator is {G.img_resolution} px.",
                        "Use the optimization anchors with this base generator.")
    if base.lower() != "ffhq":
        notify("the e4e encoder was trained for the official FFHQ generator; with another base "
               "its anchors may fit less well")
    stat = path.stat()
    return E4EAnchorEncoder(encoder, latent_avg, "first"), f"{E4E_WEIGHTS}:{stat.st_size}:{int(stat.st_mtime)}"


def personalize_project(project: Project, base: str, frames: int | None = None, steps: int | None = None,
                        batch: int = 4, device: torch.device | str = "cpu", *,
                        inversion_steps: int = 500, checkpoint_every: int = 100, anchors: str = "optimize",
                        lpips_model: torch.nn.Module | None = None, encoder=None,
                        progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED,
                        notify: Notify = _default_notify, dist: DistContext = SINGLE) -> dict[str, Any]:
    """Select (if needed), invert (if needed) and tune; resumes each part. Returns the model config.

    ``frames``: how many frames to train on; None keeps a finished selection as it is (else the
    paper's 250); another number than the selection's re-selects. ``anchors``: "optimize" or
    "encoder" (see the module docstring); ``encoder`` (tests): an ``AnchorEncoder`` to use instead.
    ``batch`` is the global batch (shared by the processes of ``dist``). Raises ``Cancelled`` with
    ``kept`` saying what was saved, in the phase it was stopped.
    """
    from personalize.inversion import InversionConfig, invert_frames
    from personalize.stylegan2 import load_generator
    from personalize.tuning import (TuningConfig, check_batch_shares, default_steps, prepare_targets,
                                    tune_generator, write_personalized_model)

    device = torch.device(device)
    if batch < 1:
        raise UserError(f"--batch must be at least 1 (got {batch}).", "Try --batch 4.")
    check_batch_shares(batch, dist.world_size)
    if anchors not in ANCHOR_METHODS:
        raise UserError(f"Unknown anchors method '{anchors}'.", f"Use {' or '.join(ANCHOR_METHODS)}.")
    main = dist.is_main
    if not main:  # only rank 0 reports and writes
        progress, notify = no_progress, _quiet
    base_path = resolve_base(base)
    model = lpips_model if lpips_model is not None else build_project_lpips(device)
    G = load_generator(base_path, device="cpu")
    resolution = int(G.img_resolution)
    base_id = {"base": str(base), "path": str(base_path), "size": base_path.stat().st_size,
               "mtime": int(base_path.stat().st_mtime)}
    resume_key = ""
    if encoder is None and anchors == "encoder":
        encoder, resume_key = load_anchor_encoder(G, device, notify, base)
    method = "projection" if encoder is None else ("e4e-ffhq (first style + latent_avg)" if resume_key else "encoder")
    speed = _speed_key(device, base, batch, dist)
    phase = "selecting"
    try:
        # 1. selection (reuse when done with the same count); rank 0 selects, the others receive it
        def selection_to_use() -> dict[str, Any]:
            selection = project.read_selection()
            if (selection is None or project.status("select") != DONE
                    or (frames is not None and selection.get("requested") != frames)):
                from personalize.selection import DEFAULT_COUNT

                count = frames or DEFAULT_COUNT
                notify(f"selecting {count} diverse frames")
                selection = select_frames(project, count, device=device, lpips_model=model,
                                          progress=phase_progress(progress, "selecting"), cancel=cancel,
                                          notify=notify)
            return selection

        selection = dist.broadcast_call(selection_to_use)
        frame_ids: list[int] = list(selection["frame_ids"])
        crops = {int(p.stem): p for p in project.scan_crop_paths() if p.stem.isdigit()}
        missing = [t for t in frame_ids if t not in crops]
        if missing:
            raise ProjectError(f"{len(missing)} selected frame(s) have no aligned crop (e.g. frame {missing[0]}).",
                               "Select the frames again.", Action("select"))
        paths = [crops[t] for t in frame_ids]
        if main:
            project.mark_running("personalize")
        try:
            crops = read_crops_uint8(paths)
            targets, resized = prepare_targets(crops, resolution)
            if resized:
                notify(f"the crops are {crops.shape[-1]} px and the base generator {resolution} px: "
                       f"resizing the crops to {resolution} px (antialiased)")
            del crops

            # 2. anchors (reuse when made for the same frames, base and method)
            phase = "inverting"
            anchors_path = project.dataset_anchors_path
            inv_path = project.inversion_path

            def finished_anchors() -> np.ndarray | None:
                inv_info = read_json(inv_path) if inv_path.is_file() else None
                if (inv_info is not None and anchors_path.is_file() and inv_info.get("frame_ids") == frame_ids
                        and inv_info.get("base") == base_id and inv_info.get("method") == method):
                    return np.load(anchors_path, allow_pickle=False)
                return None

            anchor_array = dist.broadcast_call(finished_anchors)
            if anchor_array is None:
                notify(f"inverting {len(frame_ids)} frames into W ({method})")
                inv_cfg = InversionConfig(steps=inversion_steps, batch=inversion_batch(batch))
                result = invert_frames(G, targets, model, inv_cfg, encoder=encoder, device=device,
                                       progress=phase_progress(progress, "inverting"), cancel=cancel,
                                       progress_path=project.inversion_progress_path, resume_key=resume_key,
                                       dist=dist)
                anchor_array = result.anchors
                if result.resumed_batches:
                    notify(f"resumed the inversion: {result.resumed_batches} finished batch(es) kept")
                if main:
                    _save_npy(anchors_path, anchor_array)
                    atomic_write_json(inv_path, {
                        "frame_ids": frame_ids, "base": base_id, "method": method,
                        "steps": inversion_steps, "batch": inv_cfg.batch,
                        "lpips": [round(float(v), 6) for v in result.lpips],
                        "steps_run": result.steps_run.tolist(), "mean_lpips": float(np.mean(result.lpips)),
                    })
                    project.inversion_progress_path.unlink(missing_ok=True)  # anchors.npy holds it all now
                    if result.seconds_per_step is not None and encoder is None:
                        record_speed(speed, inversion_seconds_per_step=round(result.seconds_per_step, 5),
                                     inversion_batch=inv_cfg.batch, resolution=resolution)

            # 3. pivotal tuning (resumes from model/checkpoints/last.pt)
            phase = "tuning"
            tune_cfg = TuningConfig(steps=steps or default_steps(resolution), batch=batch,
                                    checkpoint_every=checkpoint_every)
            G.to(device)
            started = time.perf_counter()
            result_t = tune_generator(G, torch.from_numpy(anchor_array), targets, model, tune_cfg,
                                      work_dir=project.model_dir, device=device,
                                      progress=phase_progress(progress, "tuning"), cancel=cancel, dist=dist)
            if result_t.resumed_from:
                notify(f"resumed tuning from step {result_t.resumed_from}")
            config = {
                "base": base_id, "resolution": resolution, "frames": len(frame_ids), "frame_ids": frame_ids,
                "anchors": method,
                "tuning": {"steps": tune_cfg.steps, "batch": tune_cfg.batch, "lr": tune_cfg.lr,
                           "lambda_pixel": tune_cfg.lambda_pixel, "checkpoint_every": tune_cfg.checkpoint_every,
                           "seed": tune_cfg.seed, "noise_mode": "const", "trained": "synthesis",
                           "processes": dist.world_size},
                "crops_resized": resized, "final_loss": result_t.last_loss,
                "source_fingerprint": _scan_fingerprint(project),
            }
            if main:
                ran = result_t.steps_done - result_t.resumed_from
                if ran > 0:
                    record_speed(speed, tuning_seconds_per_step=round((time.perf_counter() - started) / ran, 5),
                                 resolution=resolution, default_steps=default_steps(resolution))
                write_personalized_model(G.cpu(), anchor_array, project.model_dir, config)
        except BaseException:
            if main:
                project.mark_stopped("personalize")
            raise
    except Cancelled as exc:
        raise Cancelled(str(exc), kept=_kept_when_stopped(phase, exc.kept)) from exc
    if main:
        project.mark_done("personalize", frames=len(frame_ids), steps=tune_cfg.steps, resolution=resolution,
                          final_loss=result_t.last_loss, processes=dist.world_size)
    return config


def _kept_when_stopped(phase: str, kept: str | None) -> str:
    """What a stopped personalize run saved, in the words the CLI and the GUI show."""
    if phase == "selecting":
        return "Stopped while selecting frames: the selection is not kept (it starts over, in about a minute)."
    if phase == "inverting":
        if kept and not kept.startswith("the anchors of 0 "):
            return (f"Stopped while inverting: {kept} are kept; the frames being inverted when it "
                    "stopped start over.")
        return "Stopped while inverting: no batch of frames had finished, so the inversion starts over."
    return f"Stopped while tuning: the anchors and {kept or 'the last checkpoint'} are kept."


def _quiet(message: str) -> None:
    """notify for ranks other than 0: they say nothing."""


def _speed_key(device: torch.device, base: str, batch: int, dist: DistContext) -> str:
    from personalize.device import describe_device

    return speed_key(describe_device(device), base, batch, dist.world_size)


@dataclass
class PhaseEstimate:
    """One phase of a personalize run as the Personalize page shows it before starting."""

    name: str
    steps: int | None           # steps the phase runs (None: unknown before the base is read)
    done: int = 0               # steps already done (kept from a stopped run)
    seconds: float | None = None  # estimated seconds left (None: no measurement yet)
    basis: str = ""             # where the estimate comes from, in words


def estimate_personalize(project: Project, base: str, frames: int | None, steps: int | None, batch: int,
                         inversion_steps: int, device: str) -> list[PhaseEstimate]:
    """Inversion and tuning steps of the next run, with seconds from speeds measured on this
    machine (same device, base and batch; ``studio.timings``). Cheap: reads small files only.

    Inversion steps are an upper bound (a batch stops early once its loss stops improving).
    """
    from personalize.device import describe_device, pick_device
    from personalize.tuning import default_steps

    try:
        device_name = describe_device(pick_device(device))
    except UserError:
        device_name = str(device)
    measured = measured_speed(speed_key(device_name, base, batch))
    selection = project.read_selection() if project.selection_path.is_file() else None
    n = frames or (len(selection["frame_ids"]) if selection else 250)
    inv_batch = inversion_batch(batch)
    n_batches = -(-n // inv_batch)
    inv = PhaseEstimate("inversion", n_batches * inversion_steps)
    info = read_json(project.inversion_path) if project.inversion_path.is_file() else None
    if info is not None and selection is not None and info.get("frame_ids") == selection.get("frame_ids") \
            and len(info["frame_ids"]) == n and info.get("base", {}).get("base") == base:
        inv.done, inv.basis = inv.steps, "anchors already made"
    elif project.inversion_progress_path.is_file():
        from personalize.inversion import InversionProgress

        saved = InversionProgress.load(project.inversion_progress_path)
        if saved is not None and saved.done.shape == (n_batches,):
            inv.done = int(saved.done.sum()) * inversion_steps
    per_step = measured.get("inversion_seconds_per_step")
    if inv.done < (inv.steps or 0) and per_step is not None and measured.get("inversion_batch") == inv_batch:
        inv.seconds = float(per_step) * ((inv.steps or 0) - inv.done)
        inv.basis = "at most; measured on this machine"
    tuning_steps = steps or measured.get("default_steps") or (default_steps(1024) if base.lower() == "ffhq" else None)
    tune = PhaseEstimate("tuning", int(tuning_steps) if tuning_steps else None)
    if project.has_tuning_checkpoint():  # the next run resumes from it (a finished run: nothing left)
        tune.done = min(_checkpoint_step(project), tune.steps or 0)
    if measured.get("tuning_seconds_per_step") is not None and tune.steps is not None:
        tune.seconds = float(measured["tuning_seconds_per_step"]) * max(0, tune.steps - tune.done)
        tune.basis = "measured on this machine"
    for phase in (inv, tune):
        if phase.seconds is None and not phase.basis:
            phase.basis = "no measurement yet on this machine: the job strip estimates it from the first steps"
    return [inv, tune]


def _checkpoint_step(project: Project) -> int:
    """The step the tuning checkpoint reached: the last row of ``model/log.csv``, which is
    written together with every checkpoint (reading the checkpoint itself would load the weights)."""
    path = project.tuning_log_path
    try:
        lines = path.read_text().strip().splitlines() if path.is_file() else []
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def _scan_fingerprint(project: Project) -> str | None:
    """sha256 of the prepared scan's landmarks file: which preparation the model was made from."""
    lm = project.scan_landmarks_path
    return sha256_file(lm) if lm.is_file() else None
