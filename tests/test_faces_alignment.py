"""FFHQ alignment from MediaPipe landmarks, checked on real FFHQ-aligned portraits and frames."""
from __future__ import annotations

import numpy as np
import pytest

from personalize.faces import (align_face, detect_landmarks, face_mask, paste_back,
                               quad_from_landmarks, quad_transform, transform_points, warp_crop)
from personalize.video import iter_frames, read_image
from tests._faces_helpers import ALIGNED, DRIVING_SMILE, SELFSCAN2


@pytest.fixture(scope="module")
def portraits() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for path in ALIGNED:
        image = read_image(path)
        landmarks = detect_landmarks(image)
        assert landmarks is not None, f"no face found in {path.name}"
        out.append((path.name, image, landmarks))
    return out


def test_landmarks_on_portraits(portraits) -> None:
    assert len(portraits) == 5
    for name, image, lm in portraits:
        size = image.shape[0]
        assert lm.shape == (478, 3) and lm.dtype == np.float32
        # both irises (refine_landmarks) sit between the eye corners
        assert lm[33, 0] < lm[468, 0] < lm[133, 0], name
        assert lm[362, 0] < lm[473, 0] < lm[263, 0], name
        assert 0 < lm[:, 0].min() and lm[:, 0].max() < size, name


def test_realigning_aligned_portraits_is_identity(portraits) -> None:
    """FFHQ crops aligned again must give back (nearly) their own border square."""
    for name, image, lm in portraits:
        size = image.shape[0]
        corners = quad_from_landmarks(lm).corners() / size
        expected = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], float)
        err = np.abs(corners - expected).max()
        assert err < 0.03, (name, err, corners)


def test_crop_of_aligned_portrait_reproduces_it(portraits) -> None:
    name, image, lm = portraits[3]  # stone.jpg, 1024
    crop, transform = align_face(image, lm, size=256)
    assert crop.shape == (256, 256, 3) and transform.shape == (3, 3)
    reference = read_image(ALIGNED[3])
    import cv2
    small = cv2.resize(reference, (256, 256), interpolation=cv2.INTER_AREA).astype(float)
    centre = slice(32, 224)
    err = np.abs(crop.astype(float)[centre, centre] - small[centre, centre]).mean()
    assert err < 8.0, err  # a few percent of misalignment shows up as edge differences only


def test_transform_maps_landmarks_onto_the_crop() -> None:
    """MediaPipe run on the crop finds the face where the recorded transform says it is."""
    frame = next(iter_frames(SELFSCAN2, 40, 41))
    lm = detect_landmarks(frame)
    assert lm is not None
    for size in (256, 512):
        crop, transform = align_face(frame, lm, size)
        predicted = transform_points(transform, lm)
        found = detect_landmarks(crop)
        assert found is not None
        err = np.linalg.norm(predicted[:, :2] - found[:, :2], axis=1).mean() / size
        assert err < 0.006, (size, err)
        # z scales with the crop like x and y
        ratio = np.std(found[:, 2]) / np.std(predicted[:, 2])
        assert 0.8 < ratio < 1.25


def test_transform_points_batched_matches_single() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(4, 478, 3)) * 100
    transforms = np.stack([quad_transform(quad_from_landmarks(p + 300), 256) for p in pts])
    batched = transform_points(transforms, pts)
    for i in range(4):
        np.testing.assert_allclose(batched[i], transform_points(transforms[i], pts[i]))


def test_paste_back_of_unmodified_crop_restores_frame() -> None:
    frame = next(iter_frames(DRIVING_SMILE, 10, 11))
    lm = detect_landmarks(frame)
    assert lm is not None
    for size in (256, 1024):
        crop, transform = align_face(frame, lm, size)
        mask = face_mask(size, transform_points(transform, lm), feather=0.05)
        pasted = paste_back(frame, crop, transform, mask=mask)
        assert pasted.shape == frame.shape and pasted.dtype == np.uint8
        # where the (warped) mask is solid the frame comes back up to resampling error
        solid = paste_back(np.zeros_like(frame), np.full_like(crop, 255), transform, mask=mask)
        inside = solid[..., 0] > 250
        assert inside.sum() > 0.1 * inside.size
        err = np.abs(pasted.astype(float) - frame.astype(float))[inside].mean()
        assert err < 2.5, (size, err)
        # outside the mask nothing changes
        outside = solid[..., 0] == 0
        np.testing.assert_array_equal(pasted[outside], frame[outside])
    # a modified crop really is pasted (not a no-op)
    dark = paste_back(frame, np.zeros_like(crop), transform, mask=mask)
    assert dark[inside].mean() < 5


def test_default_mask_is_soft_and_central() -> None:
    mask = face_mask(256)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask[140, 128] > 0.99 and mask[2, 2] == 0.0
    assert 0.05 < mask[140, 128 + 90] < 0.95 or 0.05 < mask[140, 128 + 85] < 0.95  # feathered


def test_ffhq_padding_only_changes_the_outside() -> None:
    """Zoomed out so the crop leaves the frame: 'ffhq' differs from plain reflection only
    near/outside the frame border, and is smoother there (no mirrored face detail)."""
    frame = next(iter_frames(SELFSCAN2, 0, 1))
    lm = detect_landmarks(frame)
    quad = quad_from_landmarks(lm)
    from personalize.faces.alignment import Quad
    wide = Quad(quad.c, quad.x * 1.6)
    transform = quad_transform(wide, 256)
    ffhq = warp_crop(frame, transform, 256, "ffhq").astype(float)
    mirror = warp_crop(frame, transform, 256, "reflect").astype(float)
    inv = np.linalg.inv(transform)
    uv = np.stack(np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5), -1).reshape(-1, 2)
    src = uv @ inv[:2, :2].T + inv[:2, 2]
    h, w = frame.shape[:2]
    margin = np.minimum.reduce([src[:, 0], src[:, 1], w - src[:, 0], h - src[:, 1]]).reshape(256, 256)
    deep_inside = margin > 0.2 * quad.size * 1.6
    outside = margin < -0.1 * quad.size
    assert deep_inside.any() and outside.any()
    assert np.abs(ffhq - mirror)[deep_inside].max() <= 1.0
    assert np.abs(ffhq - mirror)[outside].mean() > 3.0
    import cv2
    lap_f = np.abs(cv2.Laplacian(ffhq.mean(-1), cv2.CV_64F))[outside].mean()
    lap_m = np.abs(cv2.Laplacian(mirror.mean(-1), cv2.CV_64F))[outside].mean()
    assert lap_f < 0.5 * lap_m


def test_crop_does_not_depend_on_source_resolution() -> None:
    """A 4x larger frame (box-prefiltered before the warp) gives the same crop as the original:
    checks the prefilter's coordinate bookkeeping and that shrinking does not alias."""
    import cv2
    frame = next(iter_frames(DRIVING_SMILE, 30, 31))
    lm = detect_landmarks(frame)
    big = cv2.resize(frame, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    big_lm = lm.copy()
    big_lm[:, :3] *= 4.0
    for size in (128, 200):
        small_crop, t_small = align_face(frame, lm, size, padding="reflect")
        big_crop, t_big = align_face(big, big_lm, size, padding="reflect")
        np.testing.assert_allclose(t_big[:2, :2] * 4.0, t_small[:2, :2], rtol=1e-9)
        err = np.abs(small_crop.astype(float) - big_crop.astype(float))[8:-8, 8:-8].mean()
        assert err < 1.5, (size, err)  # a 1 px shift of the crop gives ~4.6
