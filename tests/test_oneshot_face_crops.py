"""The official one-shot crops (256 px landmark crop, DECA 224, ArcFace 5-point) and MediaPipe -> iBUG-68."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from optimize import face_crops as fc
from tests._oneshot_helpers import TOL, golden, max_diff
from tests.conftest import MEDIA


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_landmark_crop_is_bit_identical(side: str) -> None:
    g = golden("hyperreenact")
    crop = fc.crop_using_landmarks(g[f"in_{side}_raw"], g[f"in_lm_{side}_raw"].numpy())
    assert crop.dtype == np.uint8 and crop.shape == (256, 256, 3)
    assert np.array_equal(crop, g[f"{side}_crop"])  # both boxes leave the image: the FFHQ pad path runs
    x1, y1, x2, y2 = fc.crop_box(g[f"in_lm_{side}_raw"].numpy())
    assert x1 < 0 or y1 < 0 or x2 > 256 or y2 > 256
    as_tensor = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    assert torch.equal(as_tensor, g[side])


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_crop_transform_maps_landmarks_into_the_crop(side: str) -> None:
    g = golden("hyperreenact")
    lm = g[f"in_lm_{side}_raw"].numpy().astype(np.float64)
    m = fc.crop_transform(lm)
    assert np.abs(lm @ m[:, :2].T + m[:, 2] - g[f"in_lm_{side}_crop"].numpy()).max() < 1e-4


def test_official_crop_shrinks_wide_frames_first() -> None:
    g = golden("hyperreenact")
    lm = g["in_lm_src_raw"].numpy()
    crop, lm_crop = fc.official_crop(g["in_src_raw"], lm)
    assert np.array_equal(crop, g["src_crop"]) and np.abs(lm_crop - g["in_lm_src_crop"].numpy()).max() < 1e-4
    wide = cv2.resize(g["in_src_raw"], (1250, 1250), interpolation=cv2.INTER_CUBIC)
    crop, lm_crop = fc.official_crop(wide, lm * (1250 / 256))
    shrunk = cv2.resize(wide, (1000, 1000), interpolation=cv2.INTER_AREA)
    assert np.array_equal(crop, fc.crop_using_landmarks(shrunk, (lm * (1250 / 256) * 0.8).astype(np.float32)))
    assert np.abs(lm_crop - g["in_lm_src_crop"].numpy()).max() < 1.0  # integer boxes at another scale


def test_arcface_five_point_warp_matches_the_official_one() -> None:
    """Bit-identical on the CPU that made the goldens; grid_sample's vector code on another CPU
    rounds the last bits differently (5.5e-6 on an Intel Xeon), so the warp gets 2e-5."""
    g = golden("hyperreenact")
    lm = g["in_lm_src_crop"][None]
    assert torch.equal(fc.five_point_theta(lm, 256, 256), g["arc_affine"])
    warped = fc.five_point_similarity_warp(g["src"], lm, 112)
    torch.testing.assert_close(warped, g["arc_warped112"], atol=2e-5, rtol=0)


def test_deca_crops() -> None:
    g, d = golden("hyperreenact"), golden("directions")
    assert max_diff(fc.deca_crop(g["tgt"], g["in_lm_tgt_crop"][None]), g["deca_crop224"]) < TOL["deca_crop224"]
    assert torch.equal(fc.deca_crop(d["in_src"], d["in_lm_src_crop"][None]), d["deca_crop224_src"])
    both = fc.deca_crop(torch.cat([d["in_src"], d["in_tgt"]]), torch.stack([d["in_lm_src_crop"], d["in_lm_tgt_crop"]]))
    assert max_diff(both[1:], d["deca_crop224_tgt"]) < TOL["deca_crop224"]
    assert torch.equal(both[:1], d["deca_crop224_src"])


def test_umeyama_recovers_an_exact_similarity_and_forces_a_rotation() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(6, 2)) * 30
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    a = fc.umeyama_similarity(src, src @ rot.T + shift)
    assert np.allclose(a[:, :2], rot) and np.allclose(a[:, 2], shift)
    mirrored = fc.umeyama_similarity(src, src * np.array([-1.0, 1.0]))  # a reflection is not a similarity
    assert np.linalg.det(mirrored[:, :2]) > 0


@pytest.fixture(scope="module")
def mediapipe_faces() -> dict[str, np.ndarray]:
    """478 MediaPipe landmarks (pixels) of three real aligned faces."""
    from personalize.faces.landmarks import _new_face_mesh

    mesh = _new_face_mesh(True, 1, 0.5, 0.5)
    out = {}
    for name in ("pitt", "stone", "watson"):
        image = cv2.cvtColor(cv2.imread(str(MEDIA / "aligned" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        face = mesh.process(image).multi_face_landmarks[0]
        out[name] = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32) / (w / 256)
    mesh.close()
    return out


def test_mediapipe_to_ibug68_layout_on_real_faces(mediapipe_faces: dict[str, np.ndarray]) -> None:
    """Points land where iBUG puts them, on FFHQ-aligned faces (scaled to 256 px)."""
    for name, pts in mediapipe_faces.items():
        lm = fc.mediapipe_to_ibug68(pts)
        assert lm.shape == (68, 2), name
        x, y = lm[:, 0], lm[:, 1]
        # jaw: image-left ear -> chin (lowest point) -> image-right ear: down then up, and left to
        # right along the lower jaw (near the ears the contour is vertical)
        assert np.all(np.diff(x[2:15]) > 0) and x[0] < x[8] < x[16] and np.argmax(y[:17]) in (7, 8, 9), name
        assert np.all(np.diff(y[:9]) > 0) and np.all(np.diff(y[8:17]) < 0), name
        # eye corners are MediaPipe's eye corners; right eye (36-41) is on the image left
        assert np.allclose(lm[36], pts[33, :2]) and np.allclose(lm[45], pts[263, :2])
        assert x[36] < x[39] < x[42] < x[45] and x[48] < x[54], name
        # vertical order: brows above eyes above nose tip above mouth above chin
        assert y[17:27].max() < y[36:48].min() < y[30] < y[48:68].min() <= y[48:68].max() < y[8], name
        # FFHQ-style alignment: eyes a bit above the middle, mouth in the lower third
        assert 0.3 < y[36:48].mean() / 256 < 0.52 and 0.6 < y[48:60].mean() / 256 < 0.85, name


# iBUG-68 mirror permutation: point i of a face is point MIRROR[i] of its horizontal mirror image.
MIRROR = (list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
          + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
          + [64, 63, 62, 61, 60, 67, 66, 65])


def test_mediapipe_to_ibug68_is_mirror_consistent(mediapipe_faces: dict[str, np.ndarray]) -> None:
    """Left/right pairs of the table are mirror pairs: on the flipped image, iBUG point i lands on the
    mirror of point MIRROR[i] of the original (within MediaPipe's own flip noise)."""
    from personalize.faces.landmarks import _new_face_mesh

    assert sorted(MIRROR) == list(range(68)) and all(MIRROR[MIRROR[i]] == i for i in range(68))
    mesh = _new_face_mesh(True, 1, 0.5, 0.5)
    for name in ("stone", "pitt"):
        image = cv2.cvtColor(cv2.imread(str(MEDIA / "aligned" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)[:, ::-1].copy()
        h, w = image.shape[:2]
        face = mesh.process(image).multi_face_landmarks[0]
        flipped = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32) / (w / 256)
        lm, lm_flip = fc.mediapipe_to_ibug68(mediapipe_faces[name]), fc.mediapipe_to_ibug68(flipped)
        back = np.stack([256 - lm_flip[MIRROR, 0], lm_flip[MIRROR, 1]], axis=1)
        err = np.linalg.norm(back - lm, axis=1)
        assert err.max() < 0.03 * (lm[16, 0] - lm[0, 0]), (name, int(err.argmax()), float(err.max()))
    mesh.close()


def test_mediapipe_landmarks_drive_the_official_crops(mediapipe_faces: dict[str, np.ndarray]) -> None:
    """On pitt.jpg (the golden's source image) MediaPipe-derived landmarks give a 256 crop close to
    the one from the golden's hand-made layout, and usable DECA / ArcFace warps."""
    g = golden("hyperreenact")
    lm = fc.mediapipe_to_ibug68(mediapipe_faces["pitt"])
    ours, ref = fc.crop_box(lm), fc.crop_box(g["in_lm_src_raw"].numpy())
    assert max(abs(a - b) for a, b in zip(ours, ref)) < 25
    crop = fc.crop_using_landmarks(g["in_src_raw"], lm)
    m = fc.crop_transform(lm)
    lm_crop = torch.from_numpy((lm @ m[:, :2].T + m[:, 2]).astype(np.float32))[None]
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    warped = fc.five_point_similarity_warp(image, lm_crop, 112)
    assert warped.shape == (1, 3, 112, 112) and (warped.abs().sum(1) > 0).float().mean() > 0.95  # face fills it
    assert fc.deca_crop(image, lm_crop).shape == (1, 3, 224, 224)
