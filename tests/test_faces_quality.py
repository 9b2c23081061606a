"""Landmark tracking with several faces, head pose, and the per-frame quality flags."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from personalize.faces import LandmarkTracker, detect_landmarks, head_pose
from personalize.faces.quality import (QualityThresholds, assess, quality_report, sharpness,
                                       summarize, usable_mask)
from personalize.video import iter_frames, read_image
from tests._faces_helpers import ALIGNED, SELFSCAN2


def _two_faces(left_size: int, right_size: int) -> np.ndarray:
    """A 1024x512 frame: one portrait on the left, another on the right, sizes given."""
    canvas = np.full((512, 1024, 3), 200, np.uint8)
    left = cv2.resize(read_image(ALIGNED[3]), (left_size, left_size), interpolation=cv2.INTER_AREA)
    right = cv2.resize(read_image(ALIGNED[4]), (right_size, right_size),
                       interpolation=cv2.INTER_AREA)
    canvas[(512 - left_size) // 2:(512 + left_size) // 2, 256 - left_size // 2:256 + left_size // 2] = left
    canvas[(512 - right_size) // 2:(512 + right_size) // 2,
           768 - right_size // 2:768 + right_size // 2] = right
    return canvas


def test_tracker_keeps_the_subject_when_someone_else_is_bigger() -> None:
    with LandmarkTracker() as tracker:
        first = tracker.process(_two_faces(480, 300))
        assert first.n_faces == 2
        assert first.landmarks[:, 0].mean() < 512  # the larger (left) face starts the track
        # now the other face is larger: the track stays with the left one
        later = [tracker.process(_two_faces(300, 480)) for _ in range(3)]
    assert all(f.n_faces == 2 and f.landmarks[:, 0].mean() < 512 for f in later)
    # static mode picks the largest face
    assert detect_landmarks(_two_faces(300, 480))[:, 0].mean() > 512


def test_no_face_is_none() -> None:
    blank = np.full((256, 256, 3), 128, np.uint8)
    assert detect_landmarks(blank) is None
    with LandmarkTracker() as tracker:
        result = tracker.process(blank)
    assert result.landmarks is None and result.n_faces == 0


def _rotated(landmarks: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Rotate a 3D mesh about the vertical axis through its centre (camera x right, y down)."""
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    centre = landmarks.mean(axis=0)
    return (landmarks - centre) @ rot.T + centre


def test_head_pose_frontal_and_rotated() -> None:
    lm = detect_landmarks(read_image(ALIGNED[3])).astype(np.float64)
    yaw, pitch, roll = head_pose(lm)
    assert abs(yaw) < 12 and abs(pitch) < 20 and abs(roll) < 5
    for turn in (-50.0, 30.0, 60.0):
        turned_yaw, _, _ = head_pose(_rotated(lm, turn))
        assert abs(abs(turned_yaw - yaw) - abs(turn)) < 6, (turn, turned_yaw)
    assert np.sign(head_pose(_rotated(lm, 40))[0] - yaw) != np.sign(head_pose(_rotated(lm, -40))[0] - yaw)


def test_head_pose_follows_real_head_turns() -> None:
    """selfscan_woman2 turns her head: yaw spans a real range and changes smoothly."""
    from personalize.faces.landmarks import track_landmarks
    faces = list(track_landmarks(iter_frames(SELFSCAN2, 0, 354, ), max_faces=1))[::6]
    yaws = np.array([head_pose(f.landmarks)[0] for f in faces if f.landmarks is not None])
    assert yaws.max() - yaws.min() > 15


def test_sharpness_drops_with_blur() -> None:
    crop = read_image(ALIGNED[3])
    assert sharpness(cv2.GaussianBlur(crop, (0, 0), 4)) < 0.2 * sharpness(crop)


def test_assess_flags_and_summary() -> None:
    lm = detect_landmarks(read_image(ALIGNED[2]))  # pitt.jpg, 256 px
    T = 6
    landmarks = np.repeat(lm[None].astype(np.float64), T, axis=0)
    valid = np.ones(T, bool)
    n_faces = np.ones(T, np.int32)
    sharp = np.full(T, 100.0)
    valid[1] = False
    landmarks[1] = np.nan
    n_faces[1] = 0
    n_faces[2] = 2
    landmarks[3] = (landmarks[3] - landmarks[3].mean(0)) * 0.3 + 100  # a tiny face
    sharp[4] = 10.0
    landmarks[5] = _rotated(landmarks[5], 70)
    thresholds = QualityThresholds(min_face_px=96)
    frames = assess(landmarks, valid, n_faces, sharp, thresholds)
    flags = [set(f.flags) for f in frames]
    assert flags[0] == set()
    assert flags[1] == {"no_face"}
    assert flags[2] == {"multiple_faces"}
    assert flags[3] == {"too_small"}
    assert flags[4] == {"blurry"}
    assert "extreme_pose" in flags[5]
    summary = summarize(frames)
    assert summary["n_frames"] == 6 and summary["n_valid"] == 5
    assert summary["n_usable"] == 2  # multiple faces alone does not make a frame unusable
    assert summary["counts"]["blurry"] == 1
    np.testing.assert_array_equal(usable_mask(frames), [True, False, True, False, False, False])
    report = quality_report(frames, thresholds)
    assert report["frames"][1]["face_px"] is None and report["frames"][0]["face_px"] > 96
    import json
    json.dumps(report)  # JSON-able (NaN replaced)


@pytest.mark.parametrize("relative", [0.35])
def test_blur_threshold_is_relative_to_the_video(relative: float) -> None:
    lm = detect_landmarks(read_image(ALIGNED[2])).astype(np.float64)
    landmarks = np.repeat(lm[None], 4, axis=0)
    # a sharp camera and a soft camera: same relative drop flags the same frame
    for scale in (1.0, 0.1):
        sharp = np.array([100.0, 110.0, 90.0, 20.0]) * scale
        frames = assess(landmarks, np.ones(4, bool), np.ones(4, int), sharp,
                        QualityThresholds(blur_relative=relative))
        assert [("blurry" in f.flags) for f in frames] == [False, False, False, True]
