"""Long takes in overlapping chunks, so several GPUs (or a queue) can share one driving video.

The per-frame optimizer (``optimize.reenact``) warm-starts every frame from the previous one, so a
take is sequential. A chunk is simply a take of a slice of the frames: it runs the same loop, with
its own resumable track file, and starts from its own first frame (the anchor with the nearest
keypoints, or a caller's prediction through ``first_start``: the hook the fast mode plugs into).

Seams: chunk i (i > 0) starts ``overlap`` frames before the first frame it owns, so by then its
cold start has settled. Its codes and chunk i - 1's both fit the overlap frames, but the codes of
a face are not unique (many P+ codes draw the same keypoints), so two independently started
chunks usually settle on codes some frames' worth of motion apart; blending them over a few frames
alone would put that whole difference into a few frame-to-frame steps. So chunk i is first moved
by the mean difference over the overlap (``D``), fading out linearly over the frames it owns
(``2 * overlap`` of them, more when ``D`` is large: see ``aligned_chunk_ws``), and then blended
linearly with chunk i - 1 over the overlap (weights (k + 1) / (overlap + 1) for the k-th overlap
frame): the difference is spread over many frames instead of a few. The temporal latent filter then runs over the WHOLE merged track,
exactly as for a sequential take. The merged track has the
sequential take's fingerprint (same driving frames, anchors, generator and settings), so renderers
and later runs treat it like any finished take.

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
DEFAULT_OVERLAP = 8
"""Frames each chunk re-does before the first frame it owns (a few frames settle a cold start:
the first optimized frame converges in its 2x step budget, the next ones follow warm-started)."""

FirstStart = Callable[[int, FrameTarget], "PPlusCode | None"]
"""(frame index in the take, the frame's target) -> the code to start that chunk's first face
frame from, or None for the default (nearest anchor / center of P)."""


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

    Fewer chunks are made when a chunk would own fewer than ``2 * overlap`` frames (more of its
    time would go into re-doing overlap than into its own frames).
    """
    if n_frames < 1 or n_chunks < 1 or overlap < 0:
        raise ValueError("n_frames and n_chunks must be positive and overlap not negative")
    n_chunks = max(1, min(n_chunks, n_frames // max(1, 2 * overlap)))
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


def aligned_chunk_ws(plan: ChunkPlan, tracks: Sequence[LatentTrack]) -> list[np.ndarray]:
    """Each chunk's ws (float64), chunk i > 0 moved towards chunk i - 1 (already moved) by their
    mean difference ``D`` over the overlap, fading out over the frames chunk i owns.

    The fade lasts ``2 * overlap`` frames, or longer when ``D`` is large: long enough that it adds
    at most half of the chunk's median frame-to-frame change per frame (and never past the chunk's
    end), so the seam moves no faster than the face does."""
    aligned: list[np.ndarray] = []
    for c, track in zip(plan.chunks, tracks):
        ws = track.ws.astype(np.float64)
        if c.index and c.core > c.start:
            before = plan.chunks[c.index - 1]
            previous = aligned[-1][c.start - before.start:c.core - before.start]
            offset = (previous - ws[:c.core - c.start]).mean(axis=0)
            steps = np.linalg.norm(np.diff(ws.reshape(len(ws), -1), axis=0), axis=1)
            typical = float(np.median(steps)) if steps.size else 0.0
            needed = int(np.ceil(2.0 * np.linalg.norm(offset) / typical)) if typical > 0 else 0
            fade = max(1, min(max(2 * plan.overlap, needed), c.stop - c.core))
            keep = np.clip(1.0 - (np.arange(c.stop - c.start) - (c.core - c.start)) / fade, 0.0, 1.0)
            ws = ws + keep[:, None, None] * offset
        aligned.append(ws)
    return aligned


def merge_chunk_tracks(plan: ChunkPlan, tracks: Sequence[LatentTrack], smooth_sigma: float) -> LatentTrack:
    """The whole take's track from its finished chunks: ws aligned and blended over the overlaps
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
    for c, track, chunk_ws in zip(plan.chunks, tracks, aligned_chunk_ws(plan, tracks)):
        ws[c.start:c.stop] += weights[c.index, c.start:c.stop, None, None] * chunk_ws
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
