"""An image take: the output crops of a one-shot backend, resumable, with what paste-back needs.

Every re-enactment mode writes one take folder (``studio.project`` places it). A latent take
holds ``latents.npz`` (``optimize.track``); an image take holds, beside the same driving copy and
preparation:

    frames/{t:06d}.png   the backend's output crops (R x R), each written atomically; frames
                         0 .. k-1 present = k frames done (a run resumes at the first missing one)
    frames.npz           the driving plan (``optimize.oneshot_frames.DrivingPlan``: per-frame
                         frame->crop transforms for paste-back and side-by-side, landmarks, the
                         faces found) and the take's fingerprint
    source.safetensors   the backend's source state (e.g. HyperReenact's e4e codes + ArcFace
                         features, DiffusionAct's 50-step inversion), with its own fingerprint in
                         the metadata: reused by every run (and by a restarted take) made from the
                         same source, weights and source settings
    source.png           the source crop the take was made from (what the user sees)

Fingerprints (sha256) cover everything the frames depend on: the backend and its settings, the
weights files (name, size, modification time), the source crop and landmarks, and the plan. A
folder made from other inputs is reported (restart the take), never silently mixed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from optimize.backends.base import OneShotBackend
from optimize.driving import tensor_to_uint8
from optimize.oneshot_frames import DrivingPlan, SourceFace
from personalize.errors import Action, ProjectError
from personalize.fileio import atomic_path, atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

FRAMES_DIR = "frames"
PLAN_FILE = "frames.npz"
SOURCE_STATE_FILE = "source.safetensors"
SOURCE_CROP_FILE = "source.png"
IMAGE_TAKE_FORMAT = 1


def weights_identity(weights: Mapping[str, Path]) -> dict[str, list[int | str]]:
    """name -> [file name, size, mtime_ns]: a changed file changes the fingerprints (cheap: no hashing)."""
    out: dict[str, list[int | str]] = {}
    for name, path in sorted(weights.items()):
        stat = Path(path).stat()
        out[name] = [Path(path).name, stat.st_size, stat.st_mtime_ns]
    return out


def _digest(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def source_fingerprint(backend: OneShotBackend, weights: Mapping[str, Path], source: SourceFace) -> str:
    return _digest(backend.info.name, backend.source_settings, weights_identity(weights), source.crop,
                   source.lm68, source.mesh)


def take_fingerprint(source_fp: str, backend: OneShotBackend, plan: DrivingPlan, driving_id: str) -> str:
    arrays = plan.arrays()
    return _digest(IMAGE_TAKE_FORMAT, source_fp, backend.settings, driving_id,
                   *[np.asarray(arrays[k]) for k in sorted(arrays) if arrays[k].dtype != object])


@dataclass(frozen=True)
class ImageTakeProgress:
    frames_done: int
    n_frames: int

    @property
    def complete(self) -> bool:
        return self.n_frames > 0 and self.frames_done >= self.n_frames


class ImageTake:
    """The files of one image take in ``folder`` (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @property
    def frames_dir(self) -> Path:
        return self.folder / FRAMES_DIR

    @property
    def plan_path(self) -> Path:
        return self.folder / PLAN_FILE

    @property
    def source_state_path(self) -> Path:
        return self.folder / SOURCE_STATE_FILE

    @property
    def source_crop_path(self) -> Path:
        return self.folder / SOURCE_CROP_FILE

    def frame_path(self, t: int) -> Path:
        return self.frames_dir / f"{t:06d}.png"

    def exists(self) -> bool:
        return self.plan_path.is_file()

    def frames_done(self, n_frames: int | None = None) -> int:
        """Frames 0..k-1 present (the first missing one is where a run resumes)."""
        if not self.frames_dir.is_dir():
            return 0
        present = {p.name for p in self.frames_dir.glob("*.png")}
        k = 0
        while (n_frames is None or k < n_frames) and f"{k:06d}.png" in present:
            k += 1
        return k

    # ------------------------------------------------------------------ plan
    def save_plan(self, plan: DrivingPlan, fingerprint: str, backend: str, options: Mapping[str, object]) -> None:
        """The plan, the fingerprint, the backend's name and the options the take was started with
        (JSON: a resumed run without options takes them from here)."""
        atomic_save_npz(self.plan_path, format=np.array(IMAGE_TAKE_FORMAT), fingerprint=np.array(fingerprint),
                        backend=np.array(backend), options=np.array(json.dumps(dict(options))), **plan.arrays())

    def stored_options(self) -> dict[str, object]:
        """The options the take was started with ({} when there is no readable plan)."""
        try:
            return dict(json.loads(str(self.read_plan_arrays()["options"])))
        except (ProjectError, KeyError, ValueError):
            return {}

    def read_plan_arrays(self) -> dict[str, np.ndarray]:
        """The stored plan (``transforms``, ``valid``, ``size``, ``fingerprint``...); ProjectError if unreadable."""
        try:
            with np.load(self.plan_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ProjectError(f"The take's frame plan {self.plan_path} is unreadable ({exc}).",
                               "Restart the take.", Action("restart-take", self.folder.name)) from exc
        if int(arrays.get("format", -1)) != IMAGE_TAKE_FORMAT:
            raise ProjectError(f"{self.plan_path} was written by another studio version.", "Restart the take.",
                               Action("restart-take", self.folder.name))
        return arrays

    def progress(self) -> ImageTakeProgress:
        """Frames done and frames in all, without reading any image."""
        with np.load(self.plan_path, allow_pickle=False) as data:
            n = int(data["valid"].shape[0])
        return ImageTakeProgress(self.frames_done(n), n)

    def clear(self) -> None:
        """Forget the frames and the plan (a restarted take); the source state stays (it has its own check)."""
        shutil.rmtree(self.frames_dir, ignore_errors=True)
        self.plan_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ source state
    def load_source_state(self, fingerprint: str) -> dict[str, torch.Tensor] | None:
        """The cached source state when it was made from the same source, weights and settings."""
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        if not self.source_state_path.is_file():
            return None
        try:
            with safe_open(str(self.source_state_path), framework="pt") as f:
                if (f.metadata() or {}).get("fingerprint") != fingerprint:
                    return None
                return {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, SafetensorError, ValueError):
            return None     # a damaged cache is just recomputed

    def save_source_state(self, state: Mapping[str, torch.Tensor], fingerprint: str) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        with atomic_path(self.source_state_path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint})


@dataclass
class ImageTakeResult:
    n_frames: int
    frames_rendered: int        # this run
    seconds: float              # this run, source included
    source_seconds: float       # 0 when the cached source state was reused
    source_reused: bool
    flagged_frames: list[int]


def reenact_images(backend: OneShotBackend, weights: Mapping[str, Path], source: SourceFace, plan: DrivingPlan,
                   crops: Callable[[int], Iterator[np.ndarray]], take: ImageTake, driving_id: str, *,
                   options: Mapping[str, object] | None = None, restart: bool = False,
                   progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> ImageTakeResult:
    """Render (or resume) an image take: the source state once, then the driving frames in batches.

    ``crops(start)`` yields the driving crops in order from frame ``start`` (the first frame not
    done yet; ``optimize.oneshot_frames.driving_crops``);
    ``driving_id`` identifies the driving video's preparation (part of the fingerprint);
    ``options`` (JSON-able) are recorded with the plan (``ImageTake.stored_options``). Raises
    ProjectError when the folder holds a take made from other inputs (unless ``restart``),
    ``Cancelled`` (after the finished frames are on disk) when cancelled.
    """
    from personalize.video import write_png

    started = time.perf_counter()
    source_fp = source_fingerprint(backend, weights, source)
    fingerprint = take_fingerprint(source_fp, backend, plan, driving_id)
    if take.exists() and not restart:
        stored = str(take.read_plan_arrays()["fingerprint"])
        if stored != fingerprint:
            raise ProjectError(f"The take folder {take.folder} holds frames made from another driving video, "
                               "source, mode or settings.",
                               "Restart the take to replace them, or give this take another name.",
                               Action("restart-take", take.folder.name))
    if restart or not take.exists():
        take.clear()
        take.save_plan(plan, fingerprint, backend.info.name, options or {})
        write_png(take.source_crop_path, source.crop)
    n = plan.n_frames
    start = take.frames_done(n)

    state = take.load_source_state(source_fp)
    source_seconds, reused = 0.0, state is not None
    if state is None:
        t0 = time.perf_counter()
        progress(0, n, "encoding the source")
        state = backend.prepare_source(source.batch(), on_step=lambda i, k: (cancel.check(),
                                                                                progress(0, n, f"source step {i}/{k}")))
        take.save_source_state(state, source_fp)
        source_seconds = time.perf_counter() - t0

    batch_size = backend.batch_size()
    frames = crops(start)
    t = start
    progress(t, n, "re-enacting")
    while t < n:
        cancel.check()
        chunk = [next(frames) for _ in range(min(batch_size, n - t))]
        with torch.no_grad():
            images = backend.reenact(state, plan.batch(chunk, t), on_step=lambda *_: cancel.check())
        for i, image in enumerate(tensor_to_uint8(images)):
            write_png(take.frame_path(t + i), image)
        t += len(chunk)
        progress(t, n, f"frame {t}/{n}")
    flagged = [int(i) for i in np.flatnonzero(~plan.valid)]
    return ImageTakeResult(n, n - start, time.perf_counter() - started, source_seconds, reused, flagged)
