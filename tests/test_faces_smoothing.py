"""Temporal smoothing: zero-phase (no lag), removes jitter, bridges frames without a face."""
from __future__ import annotations

import numpy as np
import pytest

from personalize.faces.alignment import alignment_anchors, quad_params_from_anchors
from personalize.faces.landmarks import track_landmarks
from personalize.faces.prepare import crop_transforms
from personalize.faces.alignment import transform_points
from personalize.faces.smoothing import fill_invalid, jitter, smooth_series
from personalize.video import iter_frames
from tests._faces_helpers import SELFSCAN2

# head points that move rigidly (no expression): nose bridge/tip, forehead, cheeks at the ears
RIGID = [6, 168, 1, 4, 10, 234, 454, 127, 356]
EYES_MOUTH = [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380, 61, 291, 0, 17]


def test_linear_ramp_passes_unchanged_edges_included() -> None:
    t = np.arange(40, dtype=float)
    ramp = np.stack([2.5 * t - 7, -0.3 * t + 100], axis=1)
    for sigma in (1.0, 2.0, 5.0):
        np.testing.assert_allclose(smooth_series(ramp, sigma=sigma), ramp, atol=1e-9)


def test_sigma_zero_is_identity_and_noise_is_reduced() -> None:
    rng = np.random.default_rng(0)
    truth = np.stack([np.sin(np.arange(200) / 15.0) * 20] * 2, axis=1)
    noisy = truth + rng.normal(scale=1.0, size=truth.shape)
    np.testing.assert_array_equal(smooth_series(noisy, sigma=0), noisy)
    smoothed = smooth_series(noisy, sigma=2)
    assert np.abs(smoothed - truth).mean() < 0.5 * np.abs(noisy - truth).mean()


def test_invalid_frames_are_interpolated_not_used() -> None:
    values = np.arange(10, dtype=float)[:, None] * np.array([[1.0, 2.0]])
    valid = np.ones(10, bool)
    valid[[0, 4, 5, 9]] = False
    garbage = values.copy()
    garbage[~valid] = 1e6
    filled = fill_invalid(garbage, valid)
    np.testing.assert_allclose(filled[1:9], values[1:9])  # gaps inside: linear interpolation
    np.testing.assert_allclose(filled[0], values[1])       # leading/trailing: nearest valid
    np.testing.assert_allclose(filled[9], values[8])
    smoothed = smooth_series(garbage, valid, sigma=1.5)
    np.testing.assert_allclose(smoothed, smooth_series(filled, sigma=1.5))
    assert np.abs(smoothed).max() < 20  # the garbage never leaks in
    with pytest.raises(ValueError):
        fill_invalid(values, np.zeros(10, bool))


@pytest.fixture(scope="module")
def tracked_clip() -> tuple[np.ndarray, np.ndarray]:
    frames = iter_frames(SELFSCAN2, 0, 90)
    faces = list(track_landmarks(frames))
    landmarks = np.stack([f.landmarks for f in faces])
    return landmarks, np.ones(len(faces), bool)


def _second_difference(points: np.ndarray) -> float:
    """Mean deviation from locally linear motion: jitter, not motion."""
    return float(np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1).mean())


def test_smoothing_reduces_jitter_on_a_real_clip(tracked_clip) -> None:
    landmarks, valid = tracked_clip
    raw_t, _, _ = crop_transforms(landmarks, valid, 256, smooth_sigma=0)
    smooth_t, raw_q, smooth_q = crop_transforms(landmarks, valid, 256, smooth_sigma=2.0)
    rigid_raw = transform_points(raw_t, landmarks)[:, RIGID, :2]
    rigid_smooth = transform_points(smooth_t, landmarks)[:, RIGID, :2]
    j_raw, j_smooth = _second_difference(rigid_raw), _second_difference(rigid_smooth)
    # (the rigid points carry their own landmark noise in both cases, so the gain is partial)
    assert j_smooth < 0.85 * j_raw, (j_raw, j_smooth)
    # the crop window itself (centre, in source pixels) wiggles less
    assert _second_difference(smooth_q[:, None, :2]) < 0.5 * _second_difference(raw_q[:, None, :2])
    # eye/mouth points of the crops still move (expressions survive), finite metric
    assert np.isfinite(jitter(transform_points(smooth_t, landmarks)[:, EYES_MOUTH]))


def test_smoothing_does_not_lag_on_a_real_clip(tracked_clip) -> None:
    landmarks, valid = tracked_clip
    _, raw_q, smooth_q = crop_transforms(landmarks, valid, 256, smooth_sigma=2.0)
    # cross-correlate the frame-to-frame motion of the crop centre: best alignment at lag 0
    raw_v = np.diff(raw_q[:, :2], axis=0).ravel()
    sm_v = np.diff(smooth_q[:, :2], axis=0).ravel()
    raw_x = np.diff(raw_q[:, 0])
    sm_x = np.diff(smooth_q[:, 0])
    scores = {lag: float(np.dot(raw_x[max(0, lag):len(raw_x) + min(0, lag)],
                                sm_x[max(0, -lag):len(sm_x) - max(0, lag)]))
              for lag in range(-4, 5)}
    assert max(scores, key=scores.get) == 0, scores
    # and the smoothed track stays within a few pixels of the raw one (no drift)
    assert np.abs(smooth_q[:, :2] - raw_q[:, :2]).mean() < 3.0
    assert raw_v.shape == sm_v.shape


def test_anchors_match_quad_params(tracked_clip) -> None:
    landmarks, _ = tracked_clip
    c, x = quad_params_from_anchors(alignment_anchors(landmarks))
    assert c.shape == (len(landmarks), 2) and x.shape == (len(landmarks), 2)
    assert np.all(np.linalg.norm(x, axis=1) > 50)  # a 512 px video with a big face
