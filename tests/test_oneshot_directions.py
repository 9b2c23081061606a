"""Latent-directions re-enactment reproduced module by module and end to end (golden_directions.npz).

The generator, DECA and e4e are the same filled networks as HyperReenact's (the goldens check the
key listings are identical); e4e itself is covered in test_oneshot_hyperreenact (``in_codes`` is
its output), so the source codes here are the stored ``in_codes``.
"""
from __future__ import annotations

import json
from importlib import resources

import pytest
import torch

from optimize.backends.directions import DirectionsSource
from optimize.nets.deca import axis_angle_to_euler_degrees
from optimize.nets.direction_matrix import add_layer_shift, shift_vector, voxceleb_coefficients
from tests._oneshot_helpers import TOL, directions_model, golden, max_diff

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def d() -> dict:
    return golden("directions")


@pytest.fixture(scope="module")
def model():
    return directions_model()


@pytest.fixture(scope="module")
def source(model, d) -> DirectionsSource:
    params = model.face_parameters(d["in_src"], d["in_lm_src_crop"][None])
    return DirectionsSource(d["in_codes"], params)


def test_in_codes_are_the_hyperreenact_e4e_codes(d: dict) -> None:
    assert torch.equal(d["in_codes"], golden("hyperreenact")["e4e_codes"])


@pytest.mark.parametrize("side", ["src", "tgt"])
def test_deca_parameters(model, source: DirectionsSource, d: dict, side: str) -> None:
    with torch.no_grad():
        params, _ = model.deca(d[f"deca_crop224_{side}"])
    assert max_diff(params, d[f"deca_params_{side}"]) < TOL["dir_deca"]
    face = source.parameters if side == "src" else model.face_parameters(d["in_tgt"], d["in_lm_tgt_crop"][None])
    assert max_diff(face.pose, d[f"pose_{side}"]) < TOL["dir_deca"]
    assert max_diff(face.exp, d[f"exp_{side}"]) < TOL["dir_deca"]
    assert max_diff(face.angles, d[f"angles_{side}"]) < TOL["angles"]
    # the angle conversion alone: exact on the CPU that made the goldens, last bits elsewhere
    # (1.1e-5 degrees at 50 on an Intel Xeon; README: 2.3e-5 between thread counts)
    torch.testing.assert_close(axis_angle_to_euler_degrees(d[f"pose_{side}"][:, :3]), d[f"angles_{side}"],
                               atol=1e-4, rtol=0)


def test_euler_angles_cover_the_gimbal_branches_and_batches() -> None:
    aa = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.5707, 0.0], [0.0, -1.5707, 0.0], [0.2, -0.3, 0.1]])
    angles = axis_angle_to_euler_degrees(aa)
    assert torch.allclose(angles[0], torch.zeros(3))
    assert torch.isfinite(angles).all()
    assert angles[1, 0] < -89 and angles[2, 0] > 89          # |R20| > 0.998: yaw -+90, roll 0
    assert angles[1, 2] == 0 and angles[2, 2] == 0
    one = axis_angle_to_euler_degrees(aa[3:])
    assert torch.equal(one[0], angles[3])


def test_coefficients_are_the_recorded_line_fits(d: dict) -> None:
    c = voxceleb_coefficients()
    meta = d["meta"]["coefficients"]
    assert (c.a_jaw, c.b_jaw) == (meta["a_jaw"], meta["b_jaw"]) and list(c.angle_scales) == meta["angle_scales"]
    assert list(c.a_exp) == [e["a"] for e in meta["exp"]] and list(c.b_exp) == [e["b"] for e in meta["exp"]]
    table = json.loads(resources.files("assets").joinpath("directions_voxceleb.json").read_text())
    for e in table["expressions"] + [table["jaw"]]:   # a, b are the line through (min, -6), (max, 6)
        lo, hi = e["range"]
        assert abs(e["a"] * lo + e["b"] + 6) < 1e-9 and abs(e["a"] * hi + e["b"] - 6) < 1e-9


def test_shift_vector_and_matrix(model, source: DirectionsSource, d: dict) -> None:
    exact = shift_vector(d["angles_src"], d["angles_tgt"], d["pose_src"][:, 3], d["pose_tgt"][:, 3],
                         d["exp_src"], d["exp_tgt"])
    assert torch.equal(exact, d["shift_vec"])            # the official arithmetic, from its inputs
    vec, shift = model.shift(source, model.face_parameters(d["in_tgt"], d["in_lm_tgt_crop"][None]))
    assert max_diff(vec, d["shift_vec"]) < TOL["shift_vec"]
    with torch.no_grad():
        assert max_diff(model.a_matrix(d["shift_vec"]), d["A_shift"]) < TOL["A_shift"]
    assert max_diff(shift, d["A_shift"]) < TOL["A_shift"]


def test_shift_goes_to_layers_0_to_7_before_truncation(d: dict) -> None:
    shifted = add_layer_shift(d["in_codes"], d["A_shift"])
    t = d["in_trunc"]
    assert max_diff(t + 0.7 * (shifted - t), d["latent_shifted_truncated"]) < TOL["latents"]
    assert max_diff(t + 0.7 * (d["in_codes"] - t), d["latent_src_truncated"]) < TOL["latents"]
    assert torch.equal(shifted[:, 8:], d["in_codes"][:, 8:])


def test_images(model, source: DirectionsSource, d: dict) -> None:
    with torch.no_grad():
        image = model.reenact(source, d["in_tgt"], d["in_lm_tgt_crop"][None])
        src_image, latent = model.generator(d["in_codes"], None, 0.7, model.truncation_target)
    assert max_diff(image, d["img_shifted"]) < TOL["img_shifted"]
    assert max_diff(src_image, d["img_src"]) < TOL["img_src"]
    assert max_diff(latent, d["latent_src_truncated"]) < TOL["latents"]


def test_batched_frames_equal_single_frames(model, source: DirectionsSource, d: dict) -> None:
    frames = torch.cat([d["in_tgt"], d["in_src"]])
    lms = torch.stack([d["in_lm_tgt_crop"], d["in_lm_src_crop"]])
    both = model.reenact_latents(source, frames, lms)
    assert max_diff(both[:1], model.reenact_latents(source, frames[:1], lms[:1])) < 1e-5  # batch-size float noise
    # driving with the source itself: a zero shift vector, so only A's bias moves layers 0..7
    vec, _ = model.shift(source, model.face_parameters(frames[1:], lms[1:]))
    assert float(vec.abs().max()) < 1e-5
    bias = model.a_matrix.linear.bias.view(1, 8, 512)
    assert max_diff(both[1:], add_layer_shift(d["in_codes"], bias)) < 1e-4
