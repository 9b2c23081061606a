"""Frame selection: the greedy max-min LPIPS-diverse subset of a self-scan (paper Alg. 1).

A self-scan has ~1000 frames, mostly near-duplicates; MyStyle needs ~250 varied ones. Algorithm 1
starts with the two most distant frames and repeatedly adds the frame whose smallest distance to
the chosen set is largest.

Why it is exact *and* fast: LPIPS(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (f_x - f_y)^2 where f are
the channel-normalized AlexNet activations. Expanding the square,
    LPIPS(x, y) = sum_l (|a_x|^2 + |a_y|^2 - 2 a_x . a_y) / (H_l W_l),   a = sqrt(w) * f  (flattened),
so every frame goes through the network ONCE and the full pairwise matrix is a few matrix products
(accumulated in float64, chunked to bound memory) instead of N^2/2 network passes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from personalize.errors import UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

log = logging.getLogger(__name__)

DEFAULT_COUNT = 250
MIN_FRAMES = 10
DEFAULT_WORK_SIZE = 128  # LPIPS works at any size; 128 keeps ~1000 frames under a minute on CPU


# ----------------------------------------------------------------------------- features
@dataclass
class LpipsFeatures:
    """Cached LPIPS features of N frames.

    ``layers[l]``: (N, C_l*H_l*W_l) float32, channel-normalized activations scaled by sqrt(w_{l,c})
    (for weights < 0 the sign is kept in ``signs[l]`` so the formula stays exact).
    ``spatial[l]``: H_l*W_l, the averaging denominator of layer l.
    """

    layers: list[torch.Tensor]
    spatial: list[int]
    signs: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.layers[0].shape[0]) if self.layers else 0


@torch.no_grad()
def lpips_features(model: torch.nn.Module, batches: Iterable[torch.Tensor],
                   cancel: CancelToken = NEVER_CANCELLED) -> LpipsFeatures:
    """Run each frame through the LPIPS backbone once and keep its weighted, normalized features.

    ``batches``: iterable of (B,3,H,W) float32 images in [-1, 1] (all the same H,W).
    """
    import lpips

    from personalize.perceptual import lpips_layer_weights

    weights = lpips_layer_weights(model)
    sqrt_w = [w.abs().sqrt() for w in weights]
    signs = [None if bool((w >= 0).all()) else torch.sign(w).cpu() for w in weights]
    device = next(model.parameters()).device
    per_layer: list[list[torch.Tensor]] = [[] for _ in weights]
    spatial: list[int] = [0] * len(weights)
    for batch in batches:
        cancel.check()
        x = model.scaling_layer(batch.to(device=device, dtype=torch.float32))
        outs = model.net.forward(x)
        for l, out in enumerate(outs):
            f = lpips.normalize_tensor(out) * sqrt_w[l].to(device)[None, :, None, None]
            spatial[l] = int(f.shape[2] * f.shape[3])
            per_layer[l].append(f.reshape(f.shape[0], -1).float().cpu())
    layers = [torch.cat(chunks) for chunks in per_layer] if per_layer[0] else []
    return LpipsFeatures(layers, spatial, signs)


def pairwise_lpips(features: LpipsFeatures, chunk: int = 256, depth_chunk: int = 8192) -> np.ndarray:
    """The full (N, N) LPIPS distance matrix, float64, from cached features.

    Exact up to float rounding: each Gram product covers ``depth_chunk`` feature dimensions in
    float32 (fast BLAS) and the partial sums are accumulated in float64. Only blocks on or above
    the diagonal are computed (the matrix is symmetric), ``chunk`` rows at a time, so memory stays
    at about chunk x N x 8 bytes on top of the cached features.
    """
    n = features.count
    out = np.zeros((n, n), dtype=np.float64)
    for l, feats in enumerate(features.layers):
        sign = features.signs[l] if l < len(features.signs) else None
        signed = _apply_sign(feats, sign) if sign is not None else feats
        depth = feats.shape[1]
        parts = [(d, min(d + depth_chunk, depth)) for d in range(0, depth, depth_chunk)]
        sq = torch.zeros(n, dtype=torch.float64)
        for d0, d1 in parts:
            sq += (feats[:, d0:d1].double() * signed[:, d0:d1].double()).sum(dim=1)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            gram = torch.zeros(stop - start, n - start, dtype=torch.float64)
            for d0, d1 in parts:
                gram += (signed[start:stop, d0:d1] @ feats[start:, d0:d1].T).double()
            block = (sq[start:stop, None] + sq[None, start:] - 2.0 * gram) / features.spatial[l]
            out[start:stop, start:] += block.numpy()
    upper = np.triu(out, k=1)
    out = upper + upper.T  # mirror the computed upper triangle; zero diagonal
    return np.maximum(out, 0.0)


def _apply_sign(feats: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    n = feats.shape[0]
    return (feats.reshape(n, sign.numel(), -1) * sign[None, :, None]).reshape(n, -1)


# ----------------------------------------------------------------------------- greedy
def greedy_max_min(dist: np.ndarray, count: int) -> list[int]:
    """Algorithm 1 on a symmetric (N, N) distance matrix; returns ``count`` indices in pick order.

    Ties are broken by the lowest index (numpy argmax), so the result is deterministic.
    """
    n = dist.shape[0]
    if count >= n:
        count = n
    if n == 0 or count <= 0:
        return []
    if n == 1 or count == 1:
        return [0]
    flat = int(np.argmax(np.triu(dist, k=1)))
    i, j = divmod(flat, n)
    chosen = [i, j]
    min_dist = np.minimum(dist[i], dist[j]).astype(np.float64)
    taken = np.zeros(n, dtype=bool)
    taken[[i, j]] = True
    while len(chosen) < count:
        candidates = np.where(taken, -np.inf, min_dist)
        nxt = int(np.argmax(candidates))
        chosen.append(nxt)
        taken[nxt] = True
        min_dist = np.minimum(min_dist, dist[nxt])
    return chosen


# ----------------------------------------------------------------------------- whole stage
@dataclass
class SelectionResult:
    indices: list[int]          # chosen frame ids (positions in the input list), pick order
    min_distances: list[float]  # distance of each pick to the set chosen before it (NaN for first)
    network_passes: int         # frames pushed through AlexNet
    warnings: list[str]


def select_diverse(model: torch.nn.Module, images: Sequence[torch.Tensor] | torch.Tensor, count: int,
                   batch: int = 32, chunk: int = 256, minimum: int = MIN_FRAMES,
                   progress: ProgressFn = no_progress,
                   cancel: CancelToken = NEVER_CANCELLED) -> SelectionResult:
    """Pick ``count`` LPIPS-diverse frames among ``images`` ((N,3,H,W) or list of (3,H,W), [-1,1]).

    Fewer frames than ``count``: all are used and a warning is returned; fewer than ``minimum``:
    ``UserError``.
    """
    n = len(images)
    warnings_: list[str] = []
    if n < minimum:
        raise UserError(f"Only {n} usable face frames; at least {minimum} are needed to personalize.",
                        "Record a longer self-scan (about 30 s) with your face visible and well lit.")
    if n < count:
        msg = f"Only {n} usable frames, fewer than the {count} requested: using all of them."
        log.warning(msg)
        warnings_.append(msg)
        count = n

    def batches() -> Iterable[torch.Tensor]:
        for start in range(0, n, batch):
            part = images[start:start + batch]
            progress(start, n, "LPIPS features")
            yield part if isinstance(part, torch.Tensor) else torch.stack(list(part))
        progress(n, n, "LPIPS features")

    feats = lpips_features(model, batches(), cancel)
    cancel.check()
    dist = pairwise_lpips(feats, chunk=chunk)
    order = greedy_max_min(dist, count)
    mins = [float("nan")] + [float(dist[order[k], order[:k]].min()) for k in range(1, len(order))]
    return SelectionResult(order, mins, n, warnings_)


# ----------------------------------------------------------------------------- coverage
# MediaPipe FaceMesh indices used for rough pose/expression measures.
_NOSE_TIP, _CHIN, _FOREHEAD = 1, 152, 10
_EYE_OUTER_L, _EYE_INNER_L, _EYE_TOP_L, _EYE_BOTTOM_L = 33, 133, 159, 145
_EYE_OUTER_R, _EYE_INNER_R, _EYE_TOP_R, _EYE_BOTTOM_R = 263, 362, 386, 374
_LIP_TOP, _LIP_BOTTOM, _MOUTH_L, _MOUTH_R = 13, 14, 61, 291


def face_measures(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Rough per-frame yaw, pitch, mouth and eye opening from (T,478,3) landmarks (pixels).

    Unitless ratios (not degrees): yaw = horizontal nose offset from the eyes' middle over the eye
    distance; pitch = vertical nose position between eyes and chin; openings = lid / lip gap over
    eye / mouth width. Enough to compare spreads, which is all the coverage report needs.
    """
    lm = landmarks[..., :2].astype(np.float64)

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) + 1e-9

    eye_mid = 0.5 * (lm[:, _EYE_OUTER_L] + lm[:, _EYE_OUTER_R])
    eye_dist = dist(_EYE_OUTER_L, _EYE_OUTER_R)
    axis = (lm[:, _EYE_OUTER_R] - lm[:, _EYE_OUTER_L]) / eye_dist[:, None]
    normal = np.stack([-axis[:, 1], axis[:, 0]], axis=1)
    nose = lm[:, _NOSE_TIP] - eye_mid
    yaw = (nose * axis).sum(1) / eye_dist
    chin = ((lm[:, _CHIN] - eye_mid) * normal).sum(1)
    pitch = (nose * normal).sum(1) / (np.abs(chin) + 1e-9)
    mouth = dist(_LIP_TOP, _LIP_BOTTOM) / dist(_MOUTH_L, _MOUTH_R)
    eye_l = dist(_EYE_TOP_L, _EYE_BOTTOM_L) / dist(_EYE_OUTER_L, _EYE_INNER_L)
    eye_r = dist(_EYE_TOP_R, _EYE_BOTTOM_R) / dist(_EYE_OUTER_R, _EYE_INNER_R)
    return {"yaw": yaw, "pitch": pitch, "mouth_open": mouth, "eye_open": 0.5 * (eye_l + eye_r)}


def coverage_report(landmarks: np.ndarray, chosen: Sequence[int]) -> dict[str, dict[str, float]]:
    """Spread (std, 5-95 % range, min, max) of pose/expression measures: chosen frames vs all.

    ``landmarks``: (T,478,3) of the usable frames; ``chosen``: indices into them.
    """
    measures = face_measures(landmarks)
    report: dict[str, dict[str, float]] = {}
    for name, values in measures.items():
        sel = values[np.asarray(chosen, dtype=int)]
        report[name] = {
            "all_std": float(values.std()), "chosen_std": float(sel.std()),
            "all_p5_p95": float(np.percentile(values, 95) - np.percentile(values, 5)),
            "chosen_p5_p95": float(np.percentile(sel, 95) - np.percentile(sel, 5)),
            "all_min": float(values.min()), "all_max": float(values.max()),
            "chosen_min": float(sel.min()), "chosen_max": float(sel.max()),
        }
    return report
