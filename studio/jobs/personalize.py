"""Jobs 'select' and 'personalize': from a prepared scan to a personalized generator.

Shared by the CLI and the GUI. Each job takes a Project, options, ``progress`` and ``cancel``,
resolves pretrained weights through ``studio.weights`` (lower layers never touch the cache),
calls ``personalize.selection`` / ``inversion`` / ``tuning`` and writes the project files:

    dataset/selection.json   chosen frame ids, diversity, coverage report
    dataset/anchors.npy      (N, w_dim) float32, row i <-> selection frame_ids[i]
    dataset/inversion.json   per-frame reconstruction LPIPS, base generator, settings
    model/                   generator.safetensors+.json, anchors.npy, config.json, log.csv,
                             previews/, checkpoints/ (resume)

Every stage resumes: selection and anchors are reused when their inputs did not change, and
tuning continues from its last checkpoint.
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

from personalize.errors import Action, MediaError, ProjectError, UserError
from personalize.fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import read_image
from studio.project import DONE, Project

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


def personalize_project(project: Project, base: str, frames: int | None = None, steps: int | None = None,
                        batch: int = 4, device: torch.device | str = "cpu", *,
                        inversion_steps: int = 500, checkpoint_every: int = 100,
                        lpips_model: torch.nn.Module | None = None, encoder=None,
                        progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED,
                        notify: Notify = _default_notify) -> dict[str, Any]:
    """Select (if needed), invert (if needed) and tune; resumes each part. Returns the model config.

    ``frames``: how many frames to train on; None keeps a finished selection as it is (else the
    paper's 250); another number than the selection's re-selects.
    """
    from personalize.inversion import InversionConfig, invert_frames
    from personalize.stylegan2 import load_generator
    from personalize.tuning import TuningConfig, default_steps, prepare_targets, tune_generator, write_personalized_model

    device = torch.device(device)
    if batch < 1:
        raise UserError(f"--batch must be at least 1 (got {batch}).", "Try --batch 4.")
    base_path = resolve_base(base)
    model = lpips_model if lpips_model is not None else build_project_lpips(device)
    G = load_generator(base_path, device="cpu")
    resolution = int(G.img_resolution)
    base_id = {"base": str(base), "path": str(base_path), "size": base_path.stat().st_size,
               "mtime": int(base_path.stat().st_mtime)}

    # 1. selection (reuse when done with the same count)
    selection = project.read_selection()
    if (selection is None or project.status("select") != DONE
            or (frames is not None and selection.get("requested") != frames)):
        from personalize.selection import DEFAULT_COUNT

        count = frames or DEFAULT_COUNT
        notify(f"selecting {count} diverse frames")
        selection = select_frames(project, count, device=device, lpips_model=model,
                                  progress=progress, cancel=cancel, notify=notify)
    frame_ids: list[int] = list(selection["frame_ids"])
    crops = {int(p.stem): p for p in project.scan_crop_paths() if p.stem.isdigit()}
    missing = [t for t in frame_ids if t not in crops]
    if missing:
        raise ProjectError(f"{len(missing)} selected frame(s) have no aligned crop (e.g. frame {missing[0]}).",
                           "Select the frames again.", Action("select"))
    paths = [crops[t] for t in frame_ids]
    project.mark_running("personalize")
    try:
        crops = read_crops_uint8(paths)
        targets, resized = prepare_targets(crops, resolution)
        if resized:
            notify(f"the crops are {crops.shape[-1]} px and the base generator {resolution} px: "
                   f"resizing the crops to {resolution} px (antialiased)")
        del crops

        # 2. anchors (reuse when made for the same frames and base)
        anchors_path = project.dataset_anchors_path
        inv_path = project.inversion_path
        inv_info = read_json(inv_path) if inv_path.is_file() else None
        if (inv_info is not None and anchors_path.is_file() and inv_info.get("frame_ids") == frame_ids
                and inv_info.get("base") == base_id):
            anchors = np.load(anchors_path, allow_pickle=False)
        else:
            notify(f"inverting {len(frame_ids)} frames into W")
            inv_cfg = InversionConfig(steps=inversion_steps, batch=max(1, min(8, batch * 2)))
            result = invert_frames(G, targets, model, inv_cfg, encoder=encoder, device=device,
                                   progress=progress, cancel=cancel)
            anchors = result.anchors
            _save_npy(anchors_path, anchors)
            atomic_write_json(inv_path, {
                "frame_ids": frame_ids, "base": base_id, "method": "encoder" if encoder else "projection",
                "steps": inversion_steps, "lpips": [round(float(v), 6) for v in result.lpips],
                "steps_run": result.steps_run.tolist(), "mean_lpips": float(np.mean(result.lpips)),
            })

        # 3. pivotal tuning (resumes from model/checkpoints/last.pt)
        tune_cfg = TuningConfig(steps=steps or default_steps(resolution), batch=batch,
                                checkpoint_every=checkpoint_every)
        G.to(device)
        result_t = tune_generator(G, torch.from_numpy(anchors), targets, model, tune_cfg,
                                  work_dir=project.model_dir, device=device, progress=progress, cancel=cancel)
        if result_t.resumed_from:
            notify(f"resumed tuning from step {result_t.resumed_from}")
        config = {
            "base": base_id, "resolution": resolution, "frames": len(frame_ids), "frame_ids": frame_ids,
            "tuning": {"steps": tune_cfg.steps, "batch": tune_cfg.batch, "lr": tune_cfg.lr,
                       "lambda_pixel": tune_cfg.lambda_pixel, "checkpoint_every": tune_cfg.checkpoint_every,
                       "seed": tune_cfg.seed, "noise_mode": "const", "trained": "synthesis"},
            "crops_resized": resized, "final_loss": result_t.last_loss,
            "source_fingerprint": _scan_fingerprint(project),
        }
        write_personalized_model(G.cpu(), anchors, project.model_dir, config)
    except BaseException:
        project.mark_stopped("personalize")
        raise
    project.mark_done("personalize", frames=len(frame_ids), steps=tune_cfg.steps, resolution=resolution,
                      final_loss=result_t.last_loss)
    return config


def _scan_fingerprint(project: Project) -> str | None:
    """sha256 of the prepared scan's landmarks file: which preparation the model was made from."""
    lm = project.scan_landmarks_path
    return sha256_file(lm) if lm.is_file() else None
