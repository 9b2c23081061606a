"""Job 'reenact' for long takes and queues: takes split into chunks, spread over processes.

``reenact_queue`` re-enacts several takes one after the other; each take runs through
``studio.jobs.reenact.reenact_take`` (preparation, bookkeeping, ``track.json``) on rank 0, with
``ChunkedReenact`` in place of the per-frame loop: the take's frames are planned into chunks
(``optimize.chunks``), the chunks are dealt round-robin to the processes, each process runs its
chunks with the unchanged per-frame optimizer, and rank 0 merges them into the take's track.

Processes other than rank 0 (``torchrun``) serve: they wait for rank 0's order for a take, read
the personalized generator, anchors and the prepared driving crops from the project, run their
chunks, and report. Every rank leaves a take together: a cancel or an error on any rank is
shared before anyone raises, so none is left waiting. A crashed process (killed, out of memory)
makes the launcher start all of them again; finished chunks are read back, interrupted ones
resume from their last saved frame, so only the unfinished work is redone.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from optimize.chunks import (DEFAULT_OVERLAP, ChunkPlan, FirstStart, merge_chunk_tracks, plan_chunks,
                             plan_summary, run_chunk)
from optimize.driving import DrivingFrames
from optimize.losses import LandmarkFn
from optimize.reenact import ReenactResult, mesh_landmarks, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.track import LatentTrack, read_track_progress, track_fingerprint
from personalize.distributed import SINGLE, DistContext, transportable
from personalize.errors import Action, Cancelled, ProjectError, UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import read_image
from studio.jobs.oneshot import OneShotOptions
from studio.jobs.reenact import load_personalized_generator, reenact_take
from studio.project import Project

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """notify for ranks other than 0."""


@dataclass
class _Channel:
    """Rank 0's side of the conversation: whether the other ranks wait for its next order."""

    dist: DistContext
    others_waiting: bool = True


@dataclass
class ChunkedReenact:
    """Drop-in for ``optimize.reenact.reenact`` (same call) that runs the take in chunks.

    ``chunks``: how many (at most; short takes get fewer); an existing plan of this take is kept.
    ``landmarks``/``first_start``: as ``reenact``'s (tests pass a landmark function; the fast
    mode may pass a first-frame predictor).
    """

    project: Project
    take: str
    chunks: int
    overlap: int = DEFAULT_OVERLAP
    channel: _Channel = field(default_factory=lambda: _Channel(SINGLE))
    landmarks: LandmarkFn | None = None
    first_start: FirstStart | None = None
    notify: Notify = _quiet

    def __call__(self, generator: torch.nn.Module, anchors: np.ndarray, frames: DrivingFrames, track_path: Path,
                 landmarks: LandmarkFn | None = None, *, settings: ReenactSettings = ReenactSettings(),
                 generator_id: str = "", anchor_cache: Path | None = None, device: torch.device | str = "cpu",
                 restart: bool = False, progress: ProgressFn = no_progress,
                 cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
        started = time.perf_counter()
        folder = self.project.take_chunks_dir(self.take)
        if not restart and track_path.is_file():
            so_far = read_track_progress(track_path)
            if so_far.frames_done >= so_far.n_frames:
                # finished (in chunks or in one piece): the per-frame loop checks that it was made
                # from these inputs and only re-applies the temporal filter
                return reenact(generator, anchors, frames, track_path, settings=settings,
                               generator_id=generator_id, device=device, progress=progress, cancel=cancel)
            if ChunkPlan.load(folder) is None:
                raise ProjectError(f"The take '{self.take}' was started in one piece and stopped at frame "
                                   f"{so_far.frames_done} of {so_far.n_frames}.",
                                   "Resume it with one process, or restart it to run it in chunks.",
                                   Action("resume-take", self.take))
        fingerprint = track_fingerprint(frames, anchors, generator_id, settings.fingerprint_dict())
        plan = self._plan(folder, frames.n_frames, fingerprint, restart)
        dist = self.channel.dist
        crop_paths = [str(p) for p in _crop_paths(self.project, self.take)] if dist.is_distributed else []
        self.notify(f"take '{self.take}' in {plan_summary(plan)}"
                    + (f", over {dist.world_size} processes" if dist.is_distributed else ""))
        order = {"take": self.take, "plan": plan, "chunk_dir": str(folder), "settings": settings,
                 "generator_id": generator_id, "restart": restart, "crop_paths": crop_paths,
                 "landmarks": frames.landmarks, "valid": frames.valid, "content_hash": frames.content_hash}
        if dist.is_distributed:
            dist.broadcast(("take", order))
            self.channel.others_waiting = False
        mine = _work(order, generator, anchors, frames, landmarks or self.landmarks, dist, device,
                     anchor_cache, self.first_start, progress, cancel)
        results = _settle(dist, mine)
        self.channel.others_waiting = True
        tracks = [LatentTrack.load(plan.track_path(folder, c)) for c in plan.chunks]
        track = merge_chunk_tracks(plan, tracks, settings.smooth_sigma)
        track.save(track_path)
        done = sum(r[0] for r in results)
        passes = sum(r[1] for r in results)
        return ReenactResult(track, done, passes, time.perf_counter() - started,
                             [int(i) for i in np.flatnonzero(~track.face_found)])

    def _plan(self, folder: Path, n_frames: int, fingerprint: str, restart: bool) -> ChunkPlan:
        """This take's chunk plan: the saved one when it was made from the same inputs."""
        if restart and folder.is_dir():
            shutil.rmtree(folder)
        saved = ChunkPlan.load(folder)
        if saved is not None:
            if saved.fingerprint == fingerprint and saved.n_frames == n_frames:
                return saved
            raise ProjectError(f"The chunks in {folder} were made from another driving video, generator "
                               "or settings.", "Restart the take to discard them.")
        plan = plan_chunks(n_frames, self.chunks, self.overlap, fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        plan.save(folder)
        return plan


def _crop_paths(project: Project, take: str) -> list[Path]:
    from personalize.faces import load_prepared

    return list(load_prepared(project.take_dir(take)).crop_paths)


def _work(order: dict[str, Any], generator: torch.nn.Module, anchors: np.ndarray, frames: DrivingFrames,
          landmarks: LandmarkFn | None, dist: DistContext, device: torch.device | str, anchor_cache: Path | None,
          first_start: FirstStart | None, progress: ProgressFn, cancel: CancelToken) -> tuple[str, Any]:
    """Run this rank's chunks of the order: ("ok", [(frames optimized, generator passes)]),
    ("cancelled", kept) or ("error", exception). Never raises: every rank must reach the gather."""
    plan: ChunkPlan = order["plan"]
    chunk_dir = Path(order["chunk_dir"])
    counts = []
    try:
        if landmarks is None:
            landmarks = mesh_landmarks(device, int(generator.img_resolution), order["settings"])
        for chunk in plan.chunks[dist.rank::dist.world_size]:
            result = run_chunk(generator, anchors, frames, plan, chunk, chunk_dir, landmarks,
                               settings=order["settings"], generator_id=order["generator_id"],
                               anchor_cache=anchor_cache, device=device, restart=order["restart"],
                               first_start=first_start, progress=progress, cancel=cancel)
            counts.append((result.frames_optimized, result.generator_passes))
    except Cancelled:
        return ("cancelled", None)
    except Exception as exc:  # noqa: BLE001 - reported to every rank by _settle
        return ("error", transportable(exc))
    return ("ok", counts)


def _settle(dist: DistContext, mine: tuple[str, Any]) -> list[tuple[int, int]]:
    """Every rank's outcome; raise the same Cancelled / error on every rank when any had one."""
    outcomes = dist.gather(mine)
    if any(kind == "cancelled" for kind, _ in outcomes):
        raise Cancelled("cancelled by the user",
                        kept="Kept: every chunk's finished frames (each resumes at its first unfinished frame).")
    for kind, value in outcomes:
        if kind == "error":
            raise value  # the same error on every rank (the first rank's that had one)
    return [counts for _, result in outcomes for counts in result]


def reenact_queue(project: Project, takes: Sequence[tuple[str | Path | None, str]],
                  settings: ReenactSettings = ReenactSettings(), device: torch.device | str = "cpu", *,
                  chunks: int = 1, overlap: int = DEFAULT_OVERLAP, dist: DistContext = SINGLE,
                  restart: bool = False, progress: ProgressFn = no_progress,
                  cancel: CancelToken = NEVER_CANCELLED, notify: Notify = _quiet,
                  landmarks: LandmarkFn | None = None, first_start: FirstStart | None = None,
                  backend: str = "personal", oneshot: OneShotOptions = OneShotOptions(),
                  mode: str = "exact", refine_steps: int | None = None) -> list[dict[str, Any]]:
    """Re-enact ``takes`` ((driving video or None to resume, take name), ...) in order; returns
    their ``track.json`` records (rank 0; other ranks return []).

    ``chunks`` > 1 splits each take into that many chunks (one per process is the natural
    choice); a take that already has a chunk plan continues in chunks whatever ``chunks`` says.
    Chunks and processes serve the personal generator's exact mode (the per-frame optimizer);
    ``backend``, ``oneshot``, ``mode`` and ``refine_steps`` are ``reenact_take``'s, and the other
    modes run each take in one piece in this process.
    """
    if (dist.is_distributed or chunks > 1) and (backend != "personal" or mode != "exact"):
        raise UserError(f"Only the personal generator's exact mode runs in chunks or over several processes "
                        f"(not {backend if backend != 'personal' else mode}).",
                        "Run it with one process and one chunk (leave --gpus and --chunks out).")
    if not dist.is_main:
        _serve(project, dist, device, cancel, landmarks, first_start)
        return []
    channel = _Channel(dist)
    records = []
    try:
        for driving, name in takes:
            in_chunks = backend == "personal" and mode == "exact" and (
                dist.is_distributed or chunks > 1 or ChunkPlan.load(project.take_chunks_dir(name)) is not None)
            runner = ChunkedReenact(project, name, max(1, chunks), overlap, channel, landmarks, first_start,
                                    notify) if in_chunks else None
            report = (lambda d, t, m="", name=name: progress(d, t, f"{name}: {m}" if m else name)) \
                if len(takes) > 1 else progress
            records.append(reenact_take(project, driving, name, settings, device=device, progress=report,
                                        cancel=cancel, restart=restart, notify=notify, runner=runner,
                                        backend=backend, oneshot=oneshot, mode=mode, refine_steps=refine_steps))
    except BaseException as exc:
        if dist.is_distributed and channel.others_waiting:
            dist.broadcast(("stop", transportable(exc) if isinstance(exc, Exception) else Cancelled()))
        raise
    if dist.is_distributed:
        dist.broadcast(("done", None))
    return records


def _serve(project: Project, dist: DistContext, device: torch.device | str, cancel: CancelToken,
           landmarks: LandmarkFn | None, first_start: FirstStart | None) -> None:
    """Ranks other than 0: run the chunks of every take rank 0 orders, until it says done."""
    generator = anchors = None
    generator_id = None
    while True:
        kind, order = dist.broadcast(None)
        if kind == "done":
            return
        if kind == "stop":
            raise order
        if order["generator_id"] != generator_id:
            generator = load_personalized_generator(project, device)
            anchors = project.load_anchors()
            generator_id = order["generator_id"]
        paths = [Path(p) for p in order["crop_paths"]]
        frames = DrivingFrames(lambda t, paths=paths: read_image(paths[t]), order["landmarks"], order["valid"],
                               order["content_hash"])
        mine = _work(order, generator, anchors, frames, landmarks, dist, device, project.anchor_keypoints_cache,
                     first_start, no_progress, cancel)
        _settle(dist, mine)
