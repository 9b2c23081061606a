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


def smooth_series(values: np.ndarray, valid: np.ndarray | None = None,
                  sigma: float = 2.0) -> np.ndarray:
    """Zero-phase Gaussian low-pass over time (axis 0) of (T, ...) values, in frames.

    Invalid frames are interpolated first so they neither pull neighbours towards garbage nor
    leave holes; ``sigma == 0`` only fills the gaps. Edges use 'nearest' so the first and last
    frames are not pulled towards zero.
    """
    values = np.asarray(values, dtype=np.float64)
    if valid is None:
        valid = np.ones(values.shape[0], dtype=bool)
    filled = fill_invalid(values, valid)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0 or values.shape[0] < 2:
        return filled
    return gaussian_filter1d(filled, sigma=float(sigma), axis=0, mode="nearest")


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
