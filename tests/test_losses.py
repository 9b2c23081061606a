"""The re-enactment loss (Eq. 10): zero for identical inputs, gradients through G and the FaceMesh."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optimize.latent_space import PersonalizedSpace, PPlusCode
from optimize.losses import (IdentityReference, LossWeights, MeshLandmarks, ReenactLoss, crop_distance,
                             crop_l2, crop_mse, keypoint_loss, keypoints_from_landmarks)
from tests._reenact_helpers import keypoint_gradient_cosine, load_aligned, warp_anchors, warp_face_generator


@pytest.fixture(scope="module")
def face_mesh():
    from personalize.faces.facemesh import FaceMesh

    return FaceMesh.from_mediapipe()


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    return load_aligned("watson.jpg", 256)


def _code(space: PersonalizedSpace, seed: int = 0) -> PPlusCode:
    start = space.center_code()
    gen = torch.Generator().manual_seed(seed)
    alpha = start.alpha + 0.3 * torch.randn(start.alpha.shape, generator=gen)
    delta = 0.1 * torch.randn(start.delta.shape, generator=gen)
    return PPlusCode(alpha.requires_grad_(True), delta.requires_grad_(True))


def test_keypoint_loss_is_eq2() -> None:
    a = torch.zeros(2, 66, 3)
    b = a.clone()
    b[0, 3] = torch.tensor([3.0, 4.0, 0.0])
    b[1, :, 2] = 1.0
    assert torch.allclose(keypoint_loss(a, b), torch.tensor([5.0, 66.0]), atol=1e-4)
    assert torch.allclose(keypoint_loss(a, b, use_z=False), torch.tensor([5.0, 0.0]), atol=1e-4)



def test_crop_terms_are_the_l2_norm_of_eq3_or_the_per_pixel_mean() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(crop_l2(x, x), torch.zeros(2))
    assert torch.allclose(crop_l2(x, x + 0.5), torch.full((2,), 0.5 * (3 * 8 * 8) ** 0.5))  # Eq. 3: ||d||_2
    assert torch.allclose(crop_mse(x, x + 0.5), torch.full((2,), 0.25))
    assert torch.equal(crop_distance(x, x + 0.5, "l2"), crop_l2(x, x + 0.5))
    assert torch.equal(crop_distance(x, x + 0.5, "mse"), crop_mse(x, x + 0.5))
    with pytest.raises(ValueError, match="crop_norm"):
        crop_distance(x, x, "l1")
    leaf = x.clone().requires_grad_(True)
    crop_l2(leaf, x).sum().backward()  # identical crops: a zero norm must not give NaN gradients
    assert torch.equal(leaf.grad, torch.zeros_like(x))


def test_loss_uses_the_chosen_crop_norm(face_mesh, face) -> None:
    """The setting reaches L_mouth and L_eyes: l2 = sqrt(pixels x mse) for the same crops."""
    mesh = MeshLandmarks(face_mesh, input_size=256)
    moved = torch.roll(face, shifts=(3, 2), dims=(2, 3))
    with torch.no_grad():
        lm = mesh(face)
        terms = {}
        for norm in ("mse", "l2"):
            loss = ReenactLoss(mesh, LossWeights(crop_norm=norm))
            terms[norm] = loss(moved, loss.driving_target(face, lm), IdentityReference(face, lm))
    pixels = 3 * LossWeights().crop_size ** 2
    assert float(terms["mse"].mouth) > 0
    assert float(terms["l2"].mouth) == pytest.approx((float(terms["mse"].mouth) * pixels) ** 0.5, rel=1e-4)
    assert float(terms["l2"].eyes) > float(terms["mse"].eyes)
    assert LossWeights().crop_norm == "mse"  # the default, with the figures in docs/ARCHITECTURE.md


def test_all_terms_zero_for_identical_images(face_mesh, face) -> None:
    mesh = MeshLandmarks(face_mesh, input_size=256)
    loss = ReenactLoss(mesh, LossWeights())
    with torch.no_grad():
        lm = mesh(face)
        target = loss.driving_target(face, lm)
        terms = loss(face, target, IdentityReference(face, lm))
    assert float(terms.key) < 1e-4
    assert float(terms.mouth) == 0.0 and float(terms.eyes) == 0.0
    assert float(terms.total) < 1e-4


def test_facemesh_keypoints_agree_with_mediapipe_on_a_real_face(face_mesh, face) -> None:
    """L_key compares MediaPipe (driving) with the FaceMesh (generated): they must agree on a face."""
    from personalize.faces import detect_landmarks
    from editing.render import tensor_to_uint8

    detected = detect_landmarks(tensor_to_uint8(face)[0])
    assert detected is not None
    with torch.no_grad():
        mesh_lm = MeshLandmarks(face_mesh, 256)(face)
    kp_mp = keypoints_from_landmarks(torch.from_numpy(detected)[None], 256)
    kp_fm = keypoints_from_landmarks(mesh_lm, 256)
    per_point = float(keypoint_loss(kp_mp, kp_fm)) / 66
    assert per_point < 2e-3  # < 0.5 px at 256


def test_terms_grow_with_the_difference(face_mesh, face) -> None:
    generator = warp_face_generator(256)
    mesh = MeshLandmarks(face_mesh, 256)
    loss = ReenactLoss(mesh, LossWeights())
    ws_neutral = torch.zeros(1, generator.num_ws, generator.w_dim)
    stretched = (torch.tensor([[0.0, 0.0, 0.0, 3.0, 0.0]]) @ generator.mix.T)[:, None].expand(1, generator.num_ws, -1)
    with torch.no_grad():
        base = generator.synthesis(ws_neutral)
        moved = generator.synthesis(stretched)
        target = loss.driving_target(base, mesh(base))
        same = loss(base, target, None)
        diff = loss(moved, target, None)
    assert float(diff.key) > 10 * float(same.key) + 1e-3
    assert float(diff.mouth) > 10 * float(same.mouth) + 1e-4


@pytest.mark.parametrize("which", ["tiny_stylegan2", "warp_face"])
def test_gradients_reach_alpha_and_delta_through_generator_and_facemesh(face_mesh, face, which) -> None:
    if which == "tiny_stylegan2":
        from personalize.stylegan2 import tiny_generator

        generator = tiny_generator(seed=0)
        with torch.no_grad():
            anchors = generator.mapping(torch.randn(5, generator.z_dim), None)[:, 0]
        size = generator.img_resolution
    else:
        generator = warp_face_generator(128)
        anchors = torch.from_numpy(warp_anchors(generator))
        size = 128
    space = PersonalizedSpace(anchors, generator.num_ws)
    mesh = MeshLandmarks(face_mesh, input_size=size)
    loss = ReenactLoss(mesh, LossWeights())
    target_image = torch.nn.functional.interpolate(face, size=(size, size), mode="area")
    with torch.no_grad():
        target_lm = mesh(target_image)
        reference = IdentityReference(generator.synthesis(space.center_ws(), noise_mode="const"), target_lm)
    target = loss.driving_target(target_image, target_lm)
    for term in ("key", "mouth", "eyes", "delta", "sum"):
        code = _code(space)
        image = generator.synthesis(space.to_ws(code), noise_mode="const")
        terms = loss(image, target, reference, space, code)
        value = getattr(terms, term).sum()
        assert torch.isfinite(value)
        value.backward()
        grad_a, grad_d = code.alpha.grad, code.delta.grad
        if term != "delta":  # L_delta depends on the offsets only
            assert grad_a is not None and torch.isfinite(grad_a).all(), term
            assert float(grad_a.abs().sum()) > 0, f"{term}: no gradient to alpha"
        if term != "sum":  # L_sum depends on alpha only
            assert grad_d is not None and torch.isfinite(grad_d).all(), term
            assert float(grad_d.abs().sum()) > 0, f"{term}: no gradient to delta"


@pytest.mark.slow  # ~15 s: 13 FaceMesh passes at 256
def test_keypoint_gradient_matches_finite_differences_near_the_answer(face_mesh) -> None:
    """The optimizer follows autograd; near the answer that gradient must be the loss's slope.

    With the FaceMesh region found afresh for every image, the measured slope (finite
    differences) pointed against autograd's, and Adam climbed away from an exact start.
    """
    from personalize.faces import detect_landmarks
    from editing.render import tensor_to_uint8
    from optimize.driving import image_to_tensor

    generator = warp_face_generator(256)
    space = PersonalizedSpace(warp_anchors(generator), generator.num_ws)
    true = torch.tensor([[0.6, 0.1, 0.0, 0.3, 0.0, 0.0]])
    with torch.no_grad():
        driving = tensor_to_uint8(generator.synthesis(space.coefficients_to_ws(true)))[0]
    loss = ReenactLoss(MeshLandmarks(face_mesh, 256), LossWeights(mouth=0, eyes=0, delta=0, sum=0))
    target = loss.driving_target(image_to_tensor(driving, 256, "cpu"),
                                 torch.from_numpy(detect_landmarks(driving))[None])
    assert target.placement is not None and target.placement.shape == (1, 4)
    cosine = keypoint_gradient_cosine(generator, space, loss.landmarks, target, space.code_from_coefficients(true))
    assert cosine > 0.95, cosine


def test_no_face_input_gives_finite_loss(face_mesh) -> None:
    """FaceMesh on garbage (a random generator's output) still returns points: the loss stays finite."""
    mesh = MeshLandmarks(face_mesh, 64)
    loss = ReenactLoss(mesh)
    noise = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        target = loss.driving_target(noise, mesh(noise))
        terms = loss(torch.zeros(1, 3, 64, 64), target, IdentityReference(noise, target.landmarks))
    assert all(np.isfinite(v) for v in terms.scalars().values())
