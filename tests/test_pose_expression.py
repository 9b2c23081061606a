"""The fast modes' driving descriptor on real self-scan frames: a head turn reads as yaw, moving
the face in the crop changes only the pose elements, and the shape model runs backwards."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optimize.keypoints import normalized_keypoints
from optimize.pose_expression import (Descriptor, euler_from_rotation, fit_descriptor,
                                      keypoint_definition, rotation_from_euler)
from personalize.errors import ProjectError
from tests._fast_helpers import SCAN_SIZE, scan_crop_landmarks


@pytest.fixture(scope="module")
def scan() -> np.ndarray:
    """Crop-pixel landmarks (T,478,3) of every 6th frame of the shared self-scan (head turns)."""
    return scan_crop_landmarks()


@pytest.fixture(scope="module")
def descriptor(scan) -> Descriptor:
    return fit_descriptor(scan, SCAN_SIZE)


def _similarity(landmarks: np.ndarray, degrees: float, shift: tuple[float, float], scale: float) -> np.ndarray:
    """An in-plane rotation about the crop centre, a scale and a shift of (T,478,3) landmarks (z scaled too)."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    out = landmarks.astype(np.float64).copy()
    centre = SCAN_SIZE / 2
    out[..., :2] = (out[..., :2] - centre) @ rot.T * scale + centre + np.array(shift)
    out[..., 2] *= scale
    return out


def test_a_head_turn_reads_as_yaw_on_real_frames(scan, descriptor) -> None:
    from personalize.faces.quality import head_pose

    pose = descriptor.measure(scan, SCAN_SIZE).pose.numpy()
    yaw, pitch, roll = pose[:, 0], pose[:, 1], pose[:, 2]
    measured = np.array([head_pose(lm) for lm in scan])     # the prepare stage's own reading
    assert np.ptp(yaw) > 25.0                                  # she turns her head by ~40 degrees
    assert np.corrcoef(yaw, measured[:, 0])[0, 1] > 0.99       # same sign and shape as head_pose's yaw
    assert np.corrcoef(pitch, measured[:, 1])[0, 1] > 0.9      # and nods (~20 degrees)
    assert np.ptp(yaw) > 1.5 * np.ptp(pitch) and np.ptp(roll) < 6.0   # the aligned crop removes roll
    frontal = np.argmin(np.abs(measured[:, 0]) + np.abs(measured[:, 1]))
    assert abs(yaw[frontal]) < 5.0                             # the frontal mean shape is pose 0


def test_moving_the_face_in_the_crop_changes_only_the_pose(scan, descriptor) -> None:
    frames = scan[:6]
    base = descriptor.measure(frames, SCAN_SIZE)
    moved = descriptor.measure(_similarity(frames, 8.0, (6.0, -4.0), 1.1), SCAN_SIZE)
    np.testing.assert_allclose(moved.pose[:, 2] - base.pose[:, 2], 8.0, atol=1e-3)          # roll
    np.testing.assert_allclose(moved.pose[:, :2], base.pose[:, :2], atol=1e-3)              # yaw, pitch
    np.testing.assert_allclose(moved.pose[:, 5] - base.pose[:, 5], math.log(1.1), atol=1e-4)
    np.testing.assert_allclose(moved.expression, base.expression, atol=1e-4)
    assert float((moved.pose[:, 3:5] - base.pose[:, 3:5]).abs().min()) > 0.005             # x, y moved


def test_the_shape_model_runs_backwards(scan, descriptor) -> None:
    """Own descriptor -> own keypoints; a roll of +8 degrees -> the keypoints of the rotated face."""
    frames = scan[:6]
    measured = descriptor.measure(frames, SCAN_SIZE)
    own = normalized_keypoints(torch.from_numpy(frames).double() / SCAN_SIZE).float()
    torch.testing.assert_close(descriptor.synthesize_keypoints(measured, measured.p), own, atol=1e-5, rtol=0)
    rolled = measured.p.clone()
    rolled[:, 2] += 8.0
    rolled_lm = _similarity(frames, 8.0, (0.0, 0.0), 1.0)
    want = normalized_keypoints(torch.from_numpy(rolled_lm) / SCAN_SIZE).float()
    got = descriptor.synthesize_keypoints(measured, rolled)
    # the rigid fit's centre is not the crop centre: compare the relative parts (eyes, mouth)
    assert float((got[:, :62] - want[:, :62]).abs().max()) < 2e-4
    # an expression change moves the expression keypoints and nothing of the pose
    opened = measured.p.clone()
    opened[:, 6] += 2 * float(descriptor.measure(scan, SCAN_SIZE).expression[:, 0].std())
    moved = descriptor.synthesize_keypoints(measured, opened)
    assert float((moved - own).abs().max()) > 1e-3
    round_trip = euler_from_rotation(rotation_from_euler(opened[:, :3])).float()
    torch.testing.assert_close(round_trip, opened[:, :3], atol=1e-3, rtol=0)


def test_rescaling_and_files(tmp_path, scan, descriptor) -> None:
    raw = descriptor.describe(scan, SCAN_SIZE)
    fitted = Descriptor.from_state(descriptor.state())
    fitted.set_range(raw)
    scaled = fitted.rescale(raw)
    lo, hi = torch.quantile(scaled, 0.01, dim=0), torch.quantile(scaled, 0.99, dim=0)
    torch.testing.assert_close(lo, torch.full_like(lo, -1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(hi, torch.full_like(hi, 1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted.unscale(scaled), raw, atol=1e-4, rtol=1e-5)
    flat = raw.clone()
    flat[:, 0] = 3.0                                       # no spread: unit scale, no blow-up
    fitted.set_range(flat)
    assert float(fitted.half_range[0]) == 1.0
    path = tmp_path / "descriptor.npz"
    fitted.save(path)
    again = Descriptor.load(path)
    torch.testing.assert_close(again.describe(scan[:3], SCAN_SIZE), fitted.describe(scan[:3], SCAN_SIZE))
    assert 2 <= descriptor.n_expression <= 12 and descriptor.definition == keypoint_definition()
    stale = Descriptor.from_state({**fitted.state(), "definition": np.array("another")})
    stale.save(path)
    with pytest.raises(ProjectError, match="another definition of the 66 keypoints"):
        Descriptor.load(path)
