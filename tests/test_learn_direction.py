"""Learning a direction: landmark measures on real faces, and recovery of a known latent axis."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing.attributes import ImageLandmarker, measure, mouth_open, pitch, yaw
from editing.clip_model import random_clip
from editing.directions import project_direction
from editing.learn_direction import fit_logistic, learn_direction
from personalize.errors import UserError
from tests._editing_helpers import load_aligned_face, make_mouth_setup, mouth_warp_generator


@pytest.fixture(scope="module")
def stone_landmarks() -> np.ndarray:
    with ImageLandmarker() as lm:
        image = torch.from_numpy(load_aligned_face("stone", 256)).permute(2, 0, 1)[None].float() / 127.5 - 1
        out = lm(image)
    assert np.isfinite(out).all()
    return out


def _rotate(lm: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """Rotate landmarks rigidly about their centroid (image frame: x right, y down, z away)."""
    c = lm.mean(axis=1, keepdims=True)
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    # yaw: turn towards +x means the normal (0,0,-1) -> (sin a, 0, -cos a)
    ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    # pitch up: normal (0,0,-1) -> (0, -sin b, -cos b)
    rx = np.array([[1, 0, 0], [0, np.cos(b), np.sin(b)], [0, -np.sin(b), np.cos(b)]])
    return (lm - c) @ (rx @ ry).T + c


def test_yaw_and_pitch_follow_a_3d_rotation(stone_landmarks) -> None:
    base_yaw, base_pitch = float(yaw(stone_landmarks)[0]), float(pitch(stone_landmarks)[0])
    assert abs(base_yaw) < 12 and abs(base_pitch) < 25  # an aligned, roughly frontal portrait
    for angle in (-30.0, -10.0, 15.0, 30.0):
        turned = _rotate(stone_landmarks, yaw_deg=angle)
        assert float(yaw(turned)[0]) - base_yaw == pytest.approx(angle, abs=2.0)
        tilted = _rotate(stone_landmarks, pitch_deg=angle)
        assert float(pitch(tilted)[0]) - base_pitch == pytest.approx(angle, abs=2.0)


def test_measures_are_scale_invariant_and_flag_missing_faces(stone_landmarks) -> None:
    scaled = stone_landmarks.astype(np.float64) * 3.0
    for attribute in ("smile", "mouth_open", "eyes_open", "yaw", "pitch"):
        assert measure(attribute, scaled)[0] == pytest.approx(measure(attribute, stone_landmarks)[0], rel=1e-6)
    missing = np.full((1, 478, 3), np.nan)
    assert np.isnan(mouth_open(missing)).all()
    with pytest.raises(UserError):
        measure("age", stone_landmarks)


def test_logistic_fit_finds_a_separating_normal() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    truth = torch.tensor([1.0, -2.0, 0, 0, 0.5, 0, 0, 0])
    y = (x @ truth > 0).double()
    normal, bias, center, scale = fit_logistic(x, y)
    assert float(normal @ (truth / truth.norm()).double()) > 0.95


def test_learned_direction_recovers_the_true_axis() -> None:
    torch.manual_seed(0)
    anchors, axis = make_mouth_setup()
    G = mouth_warp_generator(anchors, axis)
    result = learn_direction(G, anchors, "mouth_open", n_samples=240, seed=1, batch_size=16)
    d = result.direction
    assert result.n_scored >= 200  # MediaPipe found the face in (nearly) every render
    assert result.accuracy >= 0.9, result  # held-out top/bottom labels, chance is 0.5
    cosine = float(d.vector[0] @ axis)
    assert cosine > 0.8, cosine
    assert d.meta["source"] == "learned" and d.meta["reliability"] == pytest.approx(1.0, abs=1e-4)
    # moving along the learned direction really opens the mouth
    center = anchors.mean(0, keepdim=True)
    with ImageLandmarker() as lm:
        scores = [float(mouth_open(lm(G.synthesis((center + s * d.vector).unsqueeze(1).repeat(1, 4, 1))))[0])
                  for s in (-1.5, 0.0, 1.5)]
    assert scores[0] < scores[1] < scores[2], scores


def test_age_needs_real_clip_and_attribute_must_exist() -> None:
    anchors, axis = make_mouth_setup()
    G = mouth_warp_generator(anchors, axis)
    with pytest.raises(UserError, match="CLIP"):
        learn_direction(G, anchors, "age", n_samples=40)
    with pytest.raises(UserError, match="CLIP"):
        learn_direction(G, anchors, "age", n_samples=40, clip_model=random_clip("tiny"))
    with pytest.raises(UserError, match="Unknown attribute"):
        learn_direction(G, anchors, "hair", n_samples=40)


def test_age_with_a_clip_scorer_runs_end_to_end() -> None:
    """The CLIP age path with an explicit (random, for the test) CLIP: scores exist for every sample."""
    from editing.learn_direction import clip_age_scorer

    anchors, axis = make_mouth_setup()
    G = mouth_warp_generator(anchors, axis)
    result = learn_direction(G, anchors, "age", scorer=clip_age_scorer(random_clip("tiny")), n_samples=40,
                             batch_size=20)
    assert result.n_scored == 40 and result.direction.vector.shape == (1, 16)
    _, rel = project_direction(result.direction.vector, anchors)
    assert rel == pytest.approx(1.0, abs=1e-4)


def test_clip_encoder_moves_whole_and_takes_images_from_any_device() -> None:
    """Learning 'age' on a GPU: the encoder's normalization buffers go with its network, and the
    renders (on the CPU: the landmark scorers read them there) reach it on its device. Built on
    the meta device (shapes, no data), this CPU test sees the CPU/GPU mix a CUDA run would crash on."""
    clip = random_clip(device="meta")
    assert clip.mean.device.type == clip.std.device.type == "meta"
    features = clip.encode_image(torch.zeros(2, 3, 64, 64))
    assert features.device.type == "meta" and features.shape == (2, clip.encode_text(["a face"]).shape[1])


def test_smile_and_eyes_measures_on_a_real_clip() -> None:
    """driving_man_smile_wink_3s: neutral at frame 0, smiling around frame 40, winking at frame 64."""
    from personalize.video import iter_frames
    from tests.conftest import MEDIA

    wanted = {0: None, 40: None, 64: None}
    for i, frame in enumerate(iter_frames(MEDIA / "driving_man_smile_wink_3s.mp4", start=0, stop=65)):
        if i in wanted:
            wanted[i] = frame
    images = torch.from_numpy(np.stack([wanted[0], wanted[40], wanted[64]])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with ImageLandmarker() as lm:
        landmarks = lm(images)
    smile_scores = measure("smile", landmarks)
    eyes = measure("eyes_open", landmarks)
    assert smile_scores[1] > smile_scores[0] + 0.1, smile_scores
    assert eyes[2] < eyes[0] - 0.08, eyes
    assert abs(measure("yaw", landmarks)).max() < 15  # he faces the camera throughout
