"""Long takes in overlapping chunks, so several GPUs (or a queue) can share one driving video.

The per-frame optimizer (``optimize.reenact``) warm-starts every frame from the previous one, so a
take is sequential. A chunk is simply a take of a slice of the frames: it runs the same loop, with
its own resumable track file, and starts from its own first frame (the anchor with the nearest
keypoints, or a caller's prediction through ``first_start``: the hook the fast mode plugs into).

Seams: chunk i (i > 0) starts ``overlap`` frames before the first frame it owns, so by then its
cold start has settled, and over those frames its codes are blended linearly with the end of
chunk i - 1 (weights (k + 1) / (overlap + 1) for the k-th overlap frame); the temporal latent
filter then runs over the WHOLE merged track, exactly as for a sequential take. Why a long linear
blend and nothing cleverer: the codes of a face are not unique (many P+ codes draw the same
keypoints), so two independently started chunks usually settle on codes some distance ``D``
apart. Both chunks' codes fit every overlap frame, so mixing them there costs little accuracy,
and the blend moves by ``D / (overlap + 1)`` per frame. Moving chunk i by ``D`` beyond the overlap
(tried: aligning the chunks, then fading the offset out) smoothed the seam but cost 5-15 % of
keypoint accuracy on the known-answer stand-in, since a shifted code fits no frame; a longer
overlap costs only compute (16 of thousands of frames per chunk on a long take).

Robustness: each chunk's track is saved every few frames and resumes on its own, so a chunk that
failed or was interrupted is redone alone (from its last saved frame) while finished chunks are
only read back. The plan (``plan.json``) is kept with the chunks: a resumed take keeps its chunks
whatever number of processes runs it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from optimize.driving import DrivingFrames
from optimize.latent_space import PPlusCode
from optimize.losses import FrameTarget, LandmarkFn
from optimize.reenact import ReenactResult, reenact
from optimize.reenact_settings import ReenactSettings
from optimize.smoothing import smooth_track
from optimize.track import LatentTrack
from personalize.errors import ProjectError
from personalize.fileio import atomic_write_json, read_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

PLAN_FILE = "plan.json"
DEFAULT_OVERLAP = 16
"""Frames each chunk re-does before the first frame it owns: a few settle its cold start (the
first optimized frame converges in its 2x step budget), and the blend spreads the difference of
the two chunks' codes over all of them (about half a second of video)."""

FirstStart = Callable[[int, FrameTarget], "PPlusCode | None"]
"""(frame index in the take, the frame's target) -> the code to start that chunk's first face
frame from, or None for the default (``ReenactSettings.first_frame``)."""


@dataclass(frozen=True)
class Chunk:
    """Frames ``start .. stop-1`` of the take; it owns ``core .. stop-1`` (``start .. core-1``
    overlap the previous chunk and are blended)."""

    index: int
    start: int
    core: int
    stop: int


@dataclass(frozen=True)
class ChunkPlan:
    n_frames: int
    overlap: int
    chunks: tuple[Chunk, ...]
    fingerprint: str
    """The whole take's track fingerprint: a plan made from other inputs is not reused."""

    def save(self, folder: Path) -> None:
        atomic_write_json(folder / PLAN_FILE, {
            "n_frames": self.n_frames, "overlap": self.overlap, "fingerprint": self.fingerprint,
            "chunks": [[c.start, c.core, c.stop] for c in self.chunks]})

    @classmethod
    def load(cls, folder: Path) -> "ChunkPlan | None":
        path = folder / PLAN_FILE
        if not path.is_file():
            return None
        try:
            data = read_json(path)
            chunks = tuple(Chunk(i, int(a), int(b), int(c)) for i, (a, b, c) in enumerate(data["chunks"]))
            return cls(int(data["n_frames"]), int(data["overlap"]), chunks, str(data["fingerprint"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"The chunk plan {path} is unreadable ({exc}).",
                               "Restart the take to discard its chunks.") from exc

    def track_path(self, folder: Path, chunk: Chunk) -> Path:
        return folder / f"chunk_{chunk.index:03d}.npz"


def plan_chunks(n_frames: int, n_chunks: int, overlap: int = DEFAULT_OVERLAP, fingerprint: str = "") -> ChunkPlan:
    """Split ``n_frames`` into at most ``n_chunks`` chunks of nearly equal owned length.

    Fewer chunks are made when a chunk would own fewer than ``overlap`` frames (more of its time
    would go into re-doing its neighbour's frames than into its own).
    """
    if n_frames < 1 or n_chunks < 1 or overlap < 0:
        raise ValueError("n_frames and n_chunks must be positive and overlap not negative")
    n_chunks = max(1, min(n_chunks, n_frames // max(1, overlap)))
    bounds = [round(i * n_frames / n_chunks) for i in range(n_chunks + 1)]
    chunks = tuple(Chunk(i, max(0, bounds[i] - (overlap if i else 0)), bounds[i], bounds[i + 1])
                   for i in range(n_chunks))
    return ChunkPlan(n_frames, overlap, chunks, fingerprint)


def frames_subset(frames: DrivingFrames, start: int, stop: int) -> DrivingFrames:
    """Frames ``start .. stop-1`` as a take of their own (its own content hash)."""
    load = frames.load_image
    digest = hashlib.sha256(f"{frames.content_hash}:{start}:{stop}".encode()).hexdigest()
    return DrivingFrames(lambda t: load(start + t), frames.landmarks[start:stop], frames.valid[start:stop], digest)


def run_chunk(generator: torch.nn.Module, anchors: np.ndarray, frames: DrivingFrames, plan: ChunkPlan,
              chunk: Chunk, folder: Path, landmarks: LandmarkFn | None = None, *,
              settings: ReenactSettings = ReenactSettings(), generator_id: str = "",
              anchor_cache: Path | None = None, device: torch.device | str = "cpu", restart: bool = False,
              first_start: FirstStart | None = None, progress: ProgressFn = no_progress,
              cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
    """Optimize (or resume, or just read back) one chunk's track into ``folder``.

    ``frames``: the whole take; the chunk's track is not smoothed (the merged take is)."""
    hook = None if first_start is None else (lambda t, target: first_start(chunk.start + t, target))

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"chunk {chunk.index + 1} of {len(plan.chunks)}: {message}")

    return reenact(generator, anchors, frames_subset(frames, chunk.start, chunk.stop),
                   plan.track_path(folder, chunk), landmarks, settings=replace(settings, smooth_sigma=0.0),
                   generator_id=generator_id, anchor_cache=anchor_cache, device=device, restart=restart,
                   first_start=hook, progress=report, cancel=cancel)


def blend_weights(plan: ChunkPlan) -> np.ndarray:
    """(n_chunks, n_frames) weights summing to 1 over chunks at every frame."""
    weights = np.zeros((len(plan.chunks), plan.n_frames), np.float64)
    for c in plan.chunks:
        weights[c.index, c.core:c.stop] = 1.0
        ramp = (np.arange(c.core - c.start) + 1.0) / (c.core - c.start + 1.0)
        weights[c.index, c.start:c.core] = ramp
        if c.index:
            weights[c.index - 1, c.start:c.core] = 1.0 - ramp
    return weights


def merge_chunk_tracks(plan: ChunkPlan, tracks: Sequence[LatentTrack], smooth_sigma: float) -> LatentTrack:
    """The whole take's track from its finished chunks: ws blended linearly over the overlaps
    (see the module docstring), then the temporal filter over the whole take. Per-frame records
    (codes for resume, losses, steps, face found) come from the chunk with the larger weight."""
    if len(tracks) != len(plan.chunks) or any(t.frames_done < t.n_frames for t in tracks):
        raise ValueError("every chunk must be finished before merging")
    first = tracks[0]
    n = plan.n_frames
    merged = LatentTrack.empty(plan.fingerprint, n, first.alpha.shape[1], first.ws.shape[1], first.ws.shape[2],
                               first.loss_curves.shape[1])
    weights = blend_weights(plan)
    ws = np.zeros(merged.ws.shape, np.float64)
    owner = np.argmax(weights, axis=0)
    for c, track in zip(plan.chunks, tracks):
        ws[c.start:c.stop] += weights[c.index, c.start:c.stop, None, None] * track.ws
        mine = np.flatnonzero(owner[c.start:c.stop] == c.index)
        for name in ("alpha", "delta", "face_found", "final_loss", "key_loss", "steps", "loss_curves"):
            getattr(merged, name)[c.start + mine] = getattr(track, name)[mine]
    merged.ws = ws.astype(np.float32)
    merged.frames_done = n
    merged.smooth_sigma = float(smooth_sigma)
    merged.ws_smooth = smooth_track(merged.ws, smooth_sigma)
    merged.complete = True
    return merged


def plan_summary(plan: ChunkPlan) -> str:
    """'3 chunks of ~40 frames, 8 overlapping' (for messages)."""
    owned = [c.stop - c.core for c in plan.chunks]
    return (f"{len(plan.chunks)} chunk{'s' if len(plan.chunks) > 1 else ''} of ~{int(np.mean(owned))} frames, "
            f"{plan.overlap} overlapping")
