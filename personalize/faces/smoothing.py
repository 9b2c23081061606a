"""Temporal smoothing of per-frame crop parameters (Stitch-it-in-Time style).

Why a zero-phase Gaussian: aligning each frame independently makes crops jitter by a pixel or two
(landmark noise), which the generator then "learns" and re-enactment reproduces. A causal filter
(e.g. an exponential moving average) would remove the jitter but make the crop *lag* behind real
head motion; a Gaussian applied forwards and backwards over the whole clip (offline) has no lag:
it leaves a linear motion exactly as it is and only removes the wiggle around it.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def fill_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace the rows of ``values`` (T, ...) where ``valid`` (T,) is False.

    Gaps between valid frames are interpolated linearly; leading/trailing gaps take the nearest
    valid value. Raises ValueError if no frame is valid.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if values.shape[0] != valid.shape[0]:
        raise ValueError(f"values have {values.shape[0]} frames, valid has {valid.shape[0]}")
    if not valid.any():
        raise ValueError("no valid frame to interpolate from")
    if valid.all():
        return values.copy()
    t = np.arange(values.shape[0])
    flat = values.reshape(values.shape[0], -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, t[valid], flat[valid, j])
    return filled.reshape(values.shape)


def _line_fit(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(value at row 0, slope per row) of a straight line fitted to the first ``count`` rows."""
    t = np.arange(count, dtype=np.float64)
    flat = values[:count].reshape(count, -1)
    if count < 2:
        return flat[0].reshape(values.shape[1:]), np.zeros(values.shape[1:])
    slope, intercept = np.polyfit(t, flat, 1)
    return intercept.reshape(values.shape[1:]), slope.reshape(values.shape[1:])


def _extend_head(values: np.ndarray, pad: int, fit: int) -> np.ndarray:
    """``pad`` rows to put before ``values``: point reflection of the first rows through the
    fitted line's value at row 0 (continued along the line where the clip is too short)."""
    pivot, slope = _line_fit(values, fit)
    k = np.arange(pad, 0, -1)  # rows -pad .. -1 mirror rows pad .. 1
    mirrored = np.empty((pad,) + values.shape[1:])
    have = k <= values.shape[0] - 1
    mirrored[have] = 2.0 * pivot - values[k[have]]
    extra = k[~have].reshape((-1,) + (1,) * (values.ndim - 1))
    mirrored[~have] = pivot - slope * extra  # 2 * pivot - line(k)
    return mirrored


def _extend_odd(values: np.ndarray, pad: int, fit: int) -> np.ndarray:
    """Pad (T, ...) values at both ends by point reflection about lines fitted to the ends.

    Why not ``mode='nearest'`` alone: repeating the edge value makes a head that is moving at
    the start or end of the clip look like it slows down there (a lag at the edges). Reflecting
    through the edge keeps straight motion straight; pivoting on a fitted line instead of the
    raw edge sample keeps the first/last frame's landmark noise from surviving unsmoothed.
    """
    head = _extend_head(values, pad, fit)
    tail = _extend_head(values[::-1], pad, fit)[::-1]
    return np.concatenate([head, values, tail], axis=0)


def smooth_series(values: np.ndarray, valid: np.ndarray | None = None,
                  sigma: float = 2.0) -> np.ndarray:
    """Zero-phase Gaussian low-pass over time (axis 0) of (T, ...) values; sigma in frames.

    Invalid frames are interpolated first so they neither pull neighbours towards garbage nor
    leave holes; ``sigma == 0`` only fills the gaps. The ends are extended by odd reflection
    (see ``_extend_odd``) so linear motion passes unchanged everywhere, edges included.
    """
    values = np.asarray(values, dtype=np.float64)
    if valid is None:
        valid = np.ones(values.shape[0], dtype=bool)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    filled = fill_invalid(values, valid)
    T = filled.shape[0]
    if sigma == 0 or T < 3:
        return filled
    pad = int(4.0 * sigma + 0.5)  # scipy's kernel radius (truncate=4)
    fit = min(T, pad + 1)
    extended = _extend_odd(filled, pad, fit)
    smoothed = gaussian_filter1d(extended, sigma=float(sigma), axis=0, mode="nearest")
    return smoothed[pad:pad + T]


def smooth_quads(centers: np.ndarray, half_sides: np.ndarray, valid: np.ndarray,
                 sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth the crop-defining quantities: quad centres (T, 2) and half-side vectors (T, 2).

    The half-side vector carries both the crop's size and its rotation, so smoothing it smooths
    zoom and roll together; the perpendicular side vector is derived from it and stays square.
    """
    params = np.concatenate([centers, half_sides], axis=1)
    smoothed = smooth_series(params, valid, sigma)
    return smoothed[:, :2], smoothed[:, 2:]


def jitter(points: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean frame-to-frame motion (pixels) of (T, N, 2+) points over consecutive valid frames."""
    points = np.asarray(points, dtype=np.float64)[..., :2]
    if valid is None:
        valid = np.ones(points.shape[0], dtype=bool)
    pair = valid[1:] & valid[:-1]
    if not pair.any():
        return float("nan")
    motion = np.linalg.norm(points[1:] - points[:-1], axis=-1).mean(axis=-1)
    return float(motion[pair].mean())
