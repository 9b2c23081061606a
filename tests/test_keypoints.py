"""The paper's 66 keypoints and Appendix C part crops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optimize.keypoints import (CROP_PARTS, KEYPOINT_DEFINITION, KEYPOINT_ORDER, KEYPOINTS, N_KEYPOINTS,
                                definition_id, group_slices, keypoint_indices, normalized_keypoints,
                                part_boxes, part_crops)

ROOT = Path(__file__).resolve().parents[1]


def _points(connections) -> set[int]:
    return {i for edge in connections for i in edge}


def _components(connections) -> list[set[int]]:
    """Connected components of a MediaPipe connection set (edges as index pairs)."""
    adj: dict[int, set[int]] = {}
    for a, b in connections:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    seen: set[int] = set()
    comps = []
    for start in adj:
        if start in seen:
            continue
        comp, stack = set(), [start]
        while stack:
            v = stack.pop()
            if v not in comp:
                comp.add(v)
                stack.extend(adj[v] - comp)
        seen |= comp
        comps.append(comp)
    return comps


def test_tables_match_mediapipe_connection_sets():
    from mediapipe.python.solutions import face_mesh_connections as c

    assert set(KEYPOINTS["left_eye"]) == _points(c.FACEMESH_LEFT_EYE)
    assert set(KEYPOINTS["right_eye"]) == _points(c.FACEMESH_RIGHT_EYE)
    # the iris connection sets hold the 4 boundary points; the centre is the first index
    assert set(KEYPOINTS["left_iris"][1:]) == _points(c.FACEMESH_LEFT_IRIS)
    assert set(KEYPOINTS["right_iris"][1:]) == _points(c.FACEMESH_RIGHT_IRIS)
    assert KEYPOINTS["right_iris"][0] == 468 and KEYPOINTS["left_iris"][0] == 473
    lips = _components(c.FACEMESH_LIPS)
    assert len(lips) == 2
    inner = next(comp for comp in lips if 13 in comp)  # 13/14: inner lip midpoints
    outer = next(comp for comp in lips if 0 in comp)
    assert set(KEYPOINTS["mouth"]) == inner and len(inner) == 20
    assert set(CROP_PARTS["mouth"]) == outer
    frame = set(KEYPOINTS["frame"])
    assert len(frame) == 4 and frame <= _points(c.FACEMESH_FACE_OVAL)


def test_sizes_order_and_data_file():
    sizes = {g: len(KEYPOINTS[g]) for g in KEYPOINT_ORDER}
    assert sizes == {"right_eye": 16, "left_eye": 16, "right_iris": 5, "left_iris": 5,
                     "mouth": 20, "frame": 4}
    assert N_KEYPOINTS == 66 and len(keypoint_indices()) == 66
    assert len(set(keypoint_indices())) == 66
    raw = json.loads((ROOT / "assets" / "keypoints66.json").read_text())
    assert raw["groups"]["mouth"] == list(KEYPOINTS["mouth"])


def _random_landmarks(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 478, 3, generator=g) * 200


def test_normalized_keypoints_zero_mean_parts_and_absolute_frame():
    lm = _random_landmarks()
    kp = normalized_keypoints(lm)
    assert kp.shape == (2, 66, 3)
    sl = group_slices()
    for groups in (("right_eye", "right_iris"), ("left_eye", "left_iris"), ("mouth",)):
        indices = [i for g in groups for i in KEYPOINTS[g]]
        mean = lm[:, indices].mean(1, keepdim=True)  # one mean per part: an eye with its iris
        for g in groups:
            assert torch.allclose(kp[:, sl[g]], lm[:, list(KEYPOINTS[g])] - mean, atol=1e-4)
        assert torch.allclose(torch.cat([kp[:, sl[g]] for g in groups], 1).mean(1), torch.zeros(2, 3), atol=1e-4)
    assert torch.equal(kp[:, sl["frame"]], lm[:, list(KEYPOINTS["frame"])])
    assert torch.allclose(normalized_keypoints(lm, image_size=200.0), kp / 200.0, atol=1e-6)


def test_keypoints_keep_where_the_iris_sits_between_the_eyelids():
    """Gaze (Sec. 3.3.2, "looking right or down"): an iris moved between fixed eyelids must change
    the keypoints; the whole eye (lids and iris) moved together must not."""
    lm = _random_landmarks(1)
    sl = group_slices()
    for side in ("right", "left"):
        looking = lm.clone()
        looking[:, list(KEYPOINTS[f"{side}_iris"])] += torch.tensor([3.0, 2.0, 0.0])
        diff = (normalized_keypoints(looking) - normalized_keypoints(lm))[0, :, :2]
        iris_moved = diff[sl[f"{side}_iris"]] - diff[sl[f"{side}_eye"]].mean(0)
        assert torch.allclose(iris_moved, torch.tensor([3.0, 2.0]).expand(5, 2), atol=1e-4)
        whole_eye = lm.clone()
        whole_eye[:, list(KEYPOINTS[f"{side}_eye"]) + list(KEYPOINTS[f"{side}_iris"])] += torch.tensor([4.0, -1.0, 2.0])
        assert torch.allclose(normalized_keypoints(whole_eye), normalized_keypoints(lm), atol=1e-4)


def test_keypoint_definition_id_follows_the_definition_not_the_notes():
    """Caches of normalized keypoints are keyed by KEYPOINT_DEFINITION: it must follow the table."""
    table = json.loads((ROOT / "assets" / "keypoints66.json").read_text())
    assert definition_id(table) == KEYPOINT_DEFINITION
    assert definition_id({**table, "description": "reworded"}) == KEYPOINT_DEFINITION
    per_iris = [["right_eye"], ["left_eye"], ["right_iris"], ["left_iris"], ["mouth"]]  # the old definition
    assert definition_id({**table, "normalized_parts": per_iris}) != KEYPOINT_DEFINITION


def test_bad_landmarks_shape_is_refused():
    with pytest.raises(ValueError, match="478"):
        normalized_keypoints(torch.zeros(1, 468, 3))


def _landmarks_with_box(part: str, x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """Landmarks whose `part` points exactly span the box (x0,y0)-(x1,y1)."""
    lm = torch.full((1, 478, 3), 5.0)
    idx = list(CROP_PARTS[part])
    xs = torch.linspace(x0, x1, len(idx))
    ys = torch.linspace(y1, y0, len(idx))
    lm[0, idx, 0], lm[0, idx, 1] = xs, ys
    return lm


def test_part_boxes_take_larger_extent_per_axis():
    a = _landmarks_with_box("mouth", 10, 20, 30, 30)  # 20 x 10
    b = _landmarks_with_box("mouth", 40, 40, 52, 56)  # 12 x 16
    ba, bb = part_boxes(a, b, "mouth")
    assert torch.allclose(ba, torch.tensor([[10.0, 17.0, 30.0, 33.0]]))
    assert torch.allclose(bb, torch.tensor([[36.0, 40.0, 56.0, 56.0]]))
    ma, _ = part_boxes(a, b, "mouth", margin=0.5)
    assert torch.allclose(ma[0, 2] - ma[0, 0], torch.tensor(30.0))


def test_crop_of_synthetic_image_returns_the_region():
    img = -torch.ones(1, 3, 64, 64)
    img[:, 0, 20:36, 8:40] = 1.0  # red rectangle: rows 20..35, columns 8..39
    lm = _landmarks_with_box("mouth", 8, 20, 40, 36)  # continuous box covering exactly it
    ca, cb = part_crops(img, lm, img.clone(), lm, "mouth", 16)
    assert ca.shape == (1, 3, 16, 16)
    # inside: exactly the rectangle; the outermost samples may blend a quarter pixel of the
    # surroundings (bilinear sampling), never more
    assert torch.allclose(ca[0, 0, 1:-1, 1:-1], torch.ones(14, 14), atol=1e-5)
    assert float(ca[0, 0].min()) >= 0.5
    assert torch.allclose(ca[0, 1:], -torch.ones(2, 16, 16), atol=1e-5)
    assert torch.equal(ca, cb)  # identical inputs, identical crops
    # a box beside the rectangle sees none of it
    off = _landmarks_with_box("mouth", 44, 40, 60, 60)
    co, _ = part_crops(img, off, img, off, "mouth", 8)
    assert torch.allclose(co, -torch.ones_like(co), atol=1e-5)


def test_identical_real_inputs_give_identical_crops_and_gradients_flow():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(2, 3, 96, 96, generator=g) * 2 - 1
    lm = torch.rand(2, 478, 3, generator=g) * 60 + 18
    for part in ("mouth", "left_iris", "right_iris", "left_eye", "right_eye"):
        a, b = part_crops(img, lm, img, lm, part, 24)
        assert a.shape == b.shape == (2, 3, 24, 24)
        assert torch.equal(a, b)
    gen = img.clone().requires_grad_(True)
    da, dg = part_crops(img, lm, gen, lm + 2.0, "mouth", (12, 20))
    assert dg.shape == (2, 3, 12, 20)
    ((da - dg) ** 2).mean().backward()
    assert gen.grad is not None and torch.isfinite(gen.grad).all() and gen.grad.abs().sum() > 0


def test_crops_follow_real_facemesh_landmarks(media_dir):
    """On a real portrait, the mouth crop is centred on the mouth (lips darker-red than skin)."""
    import cv2

    from personalize.faces.facemesh import FaceMesh

    rgb = cv2.cvtColor(cv2.imread(str(media_dir / "aligned" / "watson.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        lm = FaceMesh.from_mediapipe()(x)
    kp = normalized_keypoints(lm, image_size=256)
    assert kp.shape == (1, 66, 3) and torch.isfinite(kp).all()
    mouth, _ = part_crops(x, lm, x, lm, "mouth", 32)
    iris, _ = part_crops(x, lm, x, lm, "left_iris", 16)
    redness = lambda c: float((c[:, 0] - c[:, 1]).mean())
    assert redness(mouth) > redness(x)  # lips are redder than the whole image on average
    assert float(iris.mean()) < float(x.mean())  # the iris is darker than the image average
    box, _ = part_boxes(lm, lm, "mouth")
    lips = lm[0, list(CROP_PARTS["mouth"]), :2]
    assert np.allclose(box[0, :2].numpy(), lips.min(0).values.numpy(), atol=1e-4)
