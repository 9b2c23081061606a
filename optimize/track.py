"""The latent track of a take (``latents.npz``): per-frame codes, resumable, checked on load.

Shared by every re-enactment mode: the per-frame optimizer writes it, renderers and the studio
read it. The track is written atomically; it records how many frames are final
(``frames_done``) and a fingerprint of everything the codes depend on, so an interrupted take
resumes at the first unfinished frame and a track made from other inputs is reported, never
silently reused. The file's place in a project is the caller's business (``studio.project``):
every function here takes the file's path.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from personalize.errors import ProjectError
from personalize.fileio import atomic_save_npz

if TYPE_CHECKING:
    from optimize.driving import DrivingFrames

TRACK_FORMAT = 1
_RESTART_HINT = "Re-enact the take from scratch (restart it), or give it another name."


@dataclass
class LatentTrack:
    """The arrays of ``latents.npz`` (T frames, N anchors, L = num_ws layers, D = w_dim).

    alpha (T,N), delta (T,L,N): optimizer codes (unit scale) for resume and warm starts;
    ws (T,L,D): each frame's normalized result; ws_smooth (T,L,D): after the temporal filter
    (empty until ``complete``); face_found (T,) bool; final_loss, key_loss (T,); steps (T,) int;
    loss_curves (T,S) float32, NaN-padded; frames_done: frames 0..frames_done-1 are final.
    """

    fingerprint: str
    alpha: np.ndarray
    delta: np.ndarray
    ws: np.ndarray
    ws_smooth: np.ndarray
    face_found: np.ndarray
    final_loss: np.ndarray
    key_loss: np.ndarray
    steps: np.ndarray
    loss_curves: np.ndarray
    frames_done: int = 0
    complete: bool = False
    smooth_sigma: float = 0.0

    @classmethod
    def empty(cls, fingerprint: str, n_frames: int, n_anchors: int, num_ws: int, w_dim: int,
              max_steps: int) -> "LatentTrack":
        return cls(fingerprint=fingerprint,
                   alpha=np.zeros((n_frames, n_anchors), np.float32),
                   delta=np.zeros((n_frames, num_ws, n_anchors), np.float32),
                   ws=np.zeros((n_frames, num_ws, w_dim), np.float32),
                   ws_smooth=np.zeros((0, num_ws, w_dim), np.float32),  # filled when complete
                   face_found=np.zeros(n_frames, bool),
                   final_loss=np.full(n_frames, np.nan, np.float32),
                   key_loss=np.full(n_frames, np.nan, np.float32),
                   steps=np.zeros(n_frames, np.int32),
                   loss_curves=np.full((n_frames, max_steps), np.nan, np.float32))

    @property
    def n_frames(self) -> int:
        return int(self.ws.shape[0])

    def best_ws(self) -> np.ndarray:
        """The track to render: smoothed when finished with smoothing, else the raw codes."""
        return self.ws_smooth if self.complete and self.smooth_sigma > 0 else self.ws

    def save(self, path: Path) -> None:
        atomic_save_npz(path, format=np.array(TRACK_FORMAT), fingerprint=np.array(self.fingerprint),
                        alpha=self.alpha, delta=self.delta, ws=self.ws, ws_smooth=self.ws_smooth,
                        face_found=self.face_found, final_loss=self.final_loss, key_loss=self.key_loss,
                        steps=self.steps, loss_curves=self.loss_curves,
                        frames_done=np.array(self.frames_done), complete=np.array(self.complete),
                        smooth_sigma=np.array(self.smooth_sigma))

    @classmethod
    def load(cls, path: Path) -> "LatentTrack":
        """Read a track file; raise ProjectError (with what to do) if it is unreadable or inconsistent."""
        try:
            with np.load(path, allow_pickle=False) as data:
                _check_format(data, path)
                track = cls(fingerprint=str(data["fingerprint"]),
                            **{k: data[k] for k in ("alpha", "delta", "ws", "ws_smooth", "face_found",
                                                    "final_loss", "key_loss", "steps", "loss_curves")},
                            frames_done=int(data["frames_done"]), complete=bool(data["complete"]),
                            smooth_sigma=float(data["smooth_sigma"]))
        except ProjectError:
            raise
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise _corrupt(path, exc) from exc
        t = track.ws.shape[0]
        shapes_ok = (track.alpha.shape[0] == t and track.delta.shape[0] == t and track.ws.ndim == 3
                     and (track.ws_smooth.shape == track.ws.shape or not track.complete)
                     and track.face_found.shape == (t,)
                     and 0 <= track.frames_done <= t and np.isfinite(track.ws[:track.frames_done]).all())
        if not shapes_ok:
            raise ProjectError(f"The latent track {path} is inconsistent (corrupt).", _RESTART_HINT)
        return track


@dataclass(frozen=True)
class TrackProgress:
    """How far a take got, read without loading its codes (cheap enough for listing takes)."""

    frames_done: int
    n_frames: int
    complete: bool


def read_track_progress(path: str | Path) -> TrackProgress:
    """Frames done, frames in all and whether the track at ``path`` is finished (smoothed).

    Reads only the small entries of the file; raises ProjectError when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"No latent track at {path}.", "Re-enact the take first.")
    try:
        with np.load(path, allow_pickle=False) as data:
            _check_format(data, path)
            return TrackProgress(int(data["frames_done"]), int(data["face_found"].shape[0]),
                                 bool(data["complete"]))
    except ProjectError:
        raise
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc) from exc


def load_track(path: str | Path) -> LatentTrack:
    """Public reader for renderers: the track file at ``path`` (ProjectError if missing or bad)."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"No latent track at {path}.", "Re-enact the take first.")
    return LatentTrack.load(path)


def track_fingerprint(driving: "DrivingFrames", anchors: np.ndarray, generator_id: str,
                      settings: Mapping[str, Any]) -> str:
    """sha256 over everything the codes depend on: the driving crops and landmarks, the anchors,
    the generator (``generator_id``) and the settings that change the codes (a JSON-able dict)."""
    digest = hashlib.sha256()
    digest.update(driving.content_hash.encode())
    digest.update(np.ascontiguousarray(driving.landmarks, np.float32).tobytes())
    digest.update(np.ascontiguousarray(anchors, np.float32).tobytes())
    digest.update(generator_id.encode())
    digest.update(json.dumps(dict(settings), sort_keys=True).encode())
    return digest.hexdigest()


def _check_format(data: Any, path: Path) -> None:
    if int(data["format"]) != TRACK_FORMAT:
        raise ProjectError(f"{path} was written by another studio version.", _RESTART_HINT)


def _corrupt(path: Path, exc: BaseException) -> ProjectError:
    return ProjectError(f"The latent track {path} is corrupt or unreadable ({exc}).", _RESTART_HINT)
