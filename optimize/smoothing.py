"""Temporal smoothing of a latent track (main paper Sec. 3.3.3, Appendix C.3: sigma = 2 frames).

Why a zero-phase Gaussian along time: per-frame optimization leaves small frame-to-frame jitter in
the codes; a centered (non-causal) Gaussian removes it without delaying motion, which a causal
filter would. ``mode='nearest'`` repeats the end frames, so the first and last frames are not
pulled towards zero. Codes are linear in ws, so filtering ws equals filtering the coefficients.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

LATENT_SMOOTH_SIGMA = 2.0


def smooth_track(track: np.ndarray, sigma: float = LATENT_SMOOTH_SIGMA) -> np.ndarray:
    """Filter ``track`` (T, ...) along axis 0 with a Gaussian of std ``sigma`` frames.

    Returns a new float32 array of the same shape; ``sigma <= 0`` or a single frame returns a copy.
    """
    track = np.asarray(track, dtype=np.float32)
    if track.ndim < 1:
        raise ValueError("track must have a time axis")
    if sigma <= 0 or track.shape[0] < 2:
        return track.copy()
    # float64 inside: a long track of large ws loses precision in float32 accumulation.
    return gaussian_filter1d(track.astype(np.float64), sigma=float(sigma), axis=0,
                             mode="nearest").astype(np.float32)
