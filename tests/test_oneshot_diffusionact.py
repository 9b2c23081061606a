"""DiffusionAct: networks, DDIM, conditioning image and composition equal the official code.

The goldens (``../shared/reference/oneshot/golden_diffusionact.npz``, README section 6) were made by
the official code with the reference fill of every weight; our modules get the same fill through
their (official) state_dict names. Tolerances are ~10x the README's observed thread-to-thread
differences. The full-size DiffAE UNet costs ~20 s per call on 2 cores: the 5 calls the goldens
need are in three slow tests; composition, batching and loading are tested on a tiny DiffAE.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optimize.backends.diffusionact import (DiffusionActModel, SourceState, prepare_source_official,
                                            reenact_official)
from optimize.ddim import DDIMSchedule, linear_betas, spaced_timesteps, valid_step_counts
from optimize.face_crops import five_point_similarity_warp, five_points_from_68, umeyama_similarity
from optimize.nets.diffae import DiffAELitModel
from optimize.nets.gaze import GazeNetwork
from optimize.nets.reenactment_encoder import ReenactmentEncoder
from optimize.stickman import draw_stickman, estimate_gaze, gaze_points
from tests._diffusionact_helpers import TINY, filled, names_and_shapes
from tests._oneshot_helpers import ONESHOT

TOL = {  # README section 3, x10; gaze_warped224 see test_gaze_crop
    "gaze_pred": 6e-6, "sem_z_ema": 6e-6, "sem_z_model": 6e-6, "ctrl_z": 6e-6, "unet_eps_ema": 2.2e-5,
    "ddim_xT_T2": 2.1e-4, "ddim_render_T2": 6.5e-4,
}


@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    with np.load(ONESHOT / "golden_diffusionact.npz") as z:
        return {k: torch.from_numpy(z[k]) for k in z.files if k != "meta_json"}


@pytest.fixture(scope="session")
def gaze_net() -> GazeNetwork:
    return filled(GazeNetwork)


@pytest.fixture(scope="session")
def diffae() -> DiffAELitModel:
    return filled(DiffAELitModel)          # 337 M values: ~10 s, built once


@pytest.fixture(scope="session")
def reenactment_encoder() -> ReenactmentEncoder:
    return filled(ReenactmentEncoder)


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert ours.shape == ref.shape
    diff = (ours.float() - ref.float()).abs().max().item()
    assert diff <= tol, f"max |diff| {diff:.3g} > {tol:.3g}"


@pytest.mark.parametrize("json_name, factory", [("diffusionact_diffae_litmodel", DiffAELitModel),
                                                ("diffusionact_controlnet", ReenactmentEncoder),
                                                ("diffusionact_gaze", GazeNetwork)])
def test_state_dict_names_and_shapes_are_official(json_name: str, factory: type) -> None:
    keys = json.loads((ONESHOT / "keys" / f"{json_name}.json").read_text())["modules"][0]["keys"]
    assert {k: list(v) for k, v in names_and_shapes(factory).items()} == keys


# ----------------------------------------------------------------------------- conditioning image
def test_gaze_crop(golden: dict, gaze_net: GazeNetwork) -> None:
    """Five-point crop and gaze. The crop's theta comes from a float32 SVD (as scikit-image's):
    against the golden it differs by one float32 ulp (LAPACK build), 1.7e-5 in the crop."""
    pred, warped = estimate_gaze(gaze_net, golden["in_tgt"], golden["in_lm_tgt"])
    close(warped, golden["gaze_warped224"], 5e-5)
    close(pred, golden["gaze_pred"], TOL["gaze_pred"])


def test_gaze_points_and_stickman_are_bit_identical(golden: dict) -> None:
    right, left = gaze_points(golden["gaze_pred"], golden["in_lm3dmm_tgt"])
    close(torch.from_numpy(right), golden["gaze_right_eye"], 0)
    close(torch.from_numpy(left), golden["gaze_left_eye"], 0)
    close(draw_stickman(golden["in_lm3dmm_tgt"], right, left), golden["stickman"], 0)
    close(draw_stickman(golden["in_lm3dmm_tgt"]), golden["stickman_nogaze"], 0)


def test_stickman_from_our_gaze_matches(golden: dict, gaze_net: GazeNetwork) -> None:
    pred, _ = estimate_gaze(gaze_net, golden["in_tgt"], golden["in_lm_tgt"])
    right, left = gaze_points(pred, golden["in_lm3dmm_tgt"])
    close(draw_stickman(golden["in_lm3dmm_tgt"], right, left), golden["stickman"], 0)


def test_stickman_canvas_parts_and_range() -> None:
    lm = torch.full((2, 68, 2), 100.0)
    lm[:, :17, 0] = torch.linspace(20, 200, 17)         # the jaw: a white horizontal line at y=100
    img = draw_stickman(lm)
    assert img.shape == (2, 3, 256, 256) and img.dtype == torch.float32
    background = (1 / 255 - 0.5) * 2                      # canvas of ones, not zeros
    assert torch.allclose(img[0, :, 10, 10], torch.full((3,), background))
    assert torch.allclose(img[0, :, 100, 150], torch.ones(3))   # white jaw line


def test_similarity_umeyama_recovers_a_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 30
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = umeyama_similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:2, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:2, 2], shift, atol=1e-9)


def test_five_point_warp_lands_points_on_the_template() -> None:
    """Landmarks placed on the 112 template (scaled to a 256 image) come out at the template's spots."""
    from optimize.face_crops import ARCFACE_TEMPLATE_112 as TEMPLATE_112

    lm = torch.zeros(1, 68, 2)
    pts = torch.from_numpy(TEMPLATE_112 * 2.0)
    lm[0, 36:42], lm[0, 42:48], lm[0, 30], lm[0, 48], lm[0, 54] = pts[0], pts[1], pts[2], pts[3], pts[4]
    np.testing.assert_allclose(five_points_from_68(lm)[0].numpy(), pts.numpy(), rtol=1e-6)
    img = torch.zeros(1, 1, 256, 256)
    x, y = int(pts[2, 0]), int(pts[2, 1])
    img[0, 0, y - 3:y + 4, x - 3:x + 4] = 1.0            # a blob on the nose point
    out = five_point_similarity_warp(img.expand(1, 3, -1, -1), lm, 112)[0, 0]
    yy, xx = np.unravel_index(out.argmax().item(), out.shape)
    assert abs(xx - TEMPLATE_112[2, 0]) <= 2 and abs(yy - TEMPLATE_112[2, 1]) <= 2


# ----------------------------------------------------------------------------- encoders and UNet
@pytest.mark.slow
def test_semantic_and_reenactment_codes(golden: dict, diffae: DiffAELitModel,
                                        reenactment_encoder: ReenactmentEncoder) -> None:
    with torch.no_grad():
        close(diffae.encode(golden["in_src"]), golden["sem_z_ema"], TOL["sem_z_ema"])
        close(diffae.model.encoder(golden["in_src"]), golden["sem_z_model"], TOL["sem_z_model"])
        close(reenactment_encoder(golden["in_src"], golden["stickman"]), golden["ctrl_z"], TOL["ctrl_z"])


@pytest.mark.slow
def test_unet_noise_prediction(golden: dict, diffae: DiffAELitModel) -> None:
    with torch.no_grad():
        eps = diffae.ema_model(golden["in_unet_x_t"], golden["in_unet_t"], golden["ctrl_z"])
    close(eps, golden["unet_eps_ema"], TOL["unet_eps_ema"])


@pytest.fixture(scope="session")
def golden_model(diffae: DiffAELitModel, reenactment_encoder: ReenactmentEncoder) -> DiffusionActModel:
    return DiffusionActModel(diffae, reenactment_encoder, precision="fp32")


@pytest.mark.slow
def test_source_inversion_T2(golden: dict, golden_model: DiffusionActModel) -> None:
    """``encode_stochastic(src, ctrl_z, T=2, model=ema_model)`` through our composition."""
    state = golden_model.prepare_source(golden["in_src"], golden["stickman"], steps=2)
    close(state.z, golden["ctrl_z"], TOL["ctrl_z"])
    close(state.x_T, golden["ddim_xT_T2"], TOL["ddim_xT_T2"])


@pytest.mark.slow
def test_render_T2_with_the_finetuned_unet(golden: dict, golden_model: DiffusionActModel) -> None:
    """``render(xT, ctrl_z, T=2, train_diff=True)`` (non-EMA UNet) from the golden x_T."""
    state = SourceState(image=golden["in_src"], x_T=golden["ddim_xT_T2"], z=golden["ctrl_z"])
    out = golden_model.reenact(state, golden["stickman"], steps=2)
    close(out, golden["ddim_render_T2"], TOL["ddim_render_T2"])
    assert out.min() >= -1 and out.max() <= 1           # the last step returns the clipped x0


# ----------------------------------------------------------------------------- DDIM
def test_spaced_timesteps_are_the_official_ddim_strides() -> None:
    assert spaced_timesteps(20) == list(range(0, 1000, 50))
    assert spaced_timesteps(50) == list(range(0, 1000, 20))
    assert spaced_timesteps(2) == [0, 500]
    assert spaced_timesteps(3) == [0, 334, 668]
    with pytest.raises(ValueError, match="37 DDIM steps"):
        spaced_timesteps(37)
    assert 37 not in valid_step_counts() and {2, 3, 5, 10, 20, 50} <= set(valid_step_counts())


def _alpha_bar(t: int) -> float:
    return float(np.prod(1.0 - linear_betas()[: t + 1]))


@pytest.mark.parametrize("steps", [2, 5, 20])
def test_ddim_steps_follow_the_update_rule(steps: int) -> None:
    """Each sampling and inversion step equals a direct float64 evaluation of eq. 12 with clipping."""
    sched = DDIMSchedule(steps)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(2, 3, 8, 8, generator=g) * 2
    eps = torch.randn(2, 3, 8, 8, generator=g)
    ts = sched.timesteps
    for i, t in enumerate(ts):
        a = _alpha_bar(t)
        a_prev = _alpha_bar(ts[i - 1]) if i else 1.0
        a_next = _alpha_bar(ts[i + 1]) if i + 1 < len(ts) else 0.0
        xd, ed = x.double(), eps.double()
        x0 = ((xd - np.sqrt(1 - a) * ed) / np.sqrt(a)).clamp(-1, 1)
        e = (xd - np.sqrt(a) * x0) / np.sqrt(1 - a)
        want_prev = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * e
        want_next = np.sqrt(a_next) * x0 + np.sqrt(1 - a_next) * e
        torch.testing.assert_close(sched.step(x, i, eps).double(), want_prev, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(sched.reverse_step(x, i, eps).double(), want_next, atol=2e-5, rtol=1e-5)
    assert torch.equal(sched.step(x, 0, eps), sched.predict_x0(x, 0, eps))   # last step: clipped x0


def test_ddim_loops_call_the_network_with_original_timesteps() -> None:
    sched = DDIMSchedule(5)
    seen: list[list[int]] = []

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.tolist())
        return torch.tanh(x) * 0.5

    x0 = torch.rand(3, 3, 4, 4) * 1.6 - 0.8
    x_t = sched.invert(eps_fn, x0)
    assert seen == [[t] * 3 for t in [0, 200, 400, 600, 800]]
    seen.clear()
    out = sched.sample(eps_fn, x_t)
    assert seen == [[t] * 3 for t in [800, 600, 400, 200, 0]]
    manual = x_t
    for i in reversed(range(5)):
        manual = sched.step(manual, i, torch.tanh(manual) * 0.5)
    assert torch.equal(out, manual)


# ----------------------------------------------------------------------------- composition (tiny DiffAE)
@pytest.fixture(scope="session")
def tiny_model() -> DiffusionActModel:
    return DiffusionActModel(filled(lambda: DiffAELitModel(TINY), seed=3),
                             filled(lambda: ReenactmentEncoder(TINY), seed=4), precision="fp32")


def _frames(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_composition_is_the_official_recipe(tiny_model: DiffusionActModel) -> None:
    """Source: z_s = E_r(src, cond_s), x_T = invert(EMA UNet, z_s); frame: render(x_T, E_r(src, cond_t), model)."""
    src, cond_s, cond_t = _frames(1, 0), _frames(1, 1), _frames(1, 2)
    state = tiny_model.prepare_source(src, cond_s, steps=3)
    with torch.no_grad():
        z_s = tiny_model.encoder(src, cond_s)
        x_t = DDIMSchedule(3).invert(lambda x, t: tiny_model.diffae.ema_model(x, t, z_s), src)
        z_t = tiny_model.encoder(src, cond_t)
        want = DDIMSchedule(2).sample(lambda x, t: tiny_model.diffae.model(x, t, z_t), x_t)
    assert torch.equal(state.x_T, x_t) and torch.equal(state.z, z_s)
    assert torch.equal(tiny_model.reenact(state, cond_t, steps=2), want)


def test_official_recipe_source_shape_reaches_every_frame(tiny_model: DiffusionActModel) -> None:
    calls: list[tuple] = []

    def conditioner(images: torch.Tensor, lm68: torch.Tensor, shape: torch.Tensor | None = None):
        calls.append((images.shape[0], None if shape is None else shape.clone()))
        return images.flip(-1), {"shape": torch.full((images.shape[0], 100), 7.0)}

    src, frames, lm = _frames(1, 0), _frames(2, 1), torch.zeros(2, 68, 2)
    state = prepare_source_official(tiny_model, conditioner, src, lm[:1], steps=2)
    out = reenact_official(tiny_model, conditioner, state, frames, lm, steps=2)
    assert calls[0] == (1, None) and calls[1][0] == 2 and torch.equal(calls[1][1], torch.full((1, 100), 7.0))
    want = tiny_model.reenact(tiny_model.prepare_source(src, src.flip(-1), steps=2), frames.flip(-1), steps=2)
    assert torch.equal(out, want)


def test_batched_frames_equal_per_frame(tiny_model: DiffusionActModel) -> None:
    """Equal up to float rounding: CPU convolutions block their sums differently per batch size."""
    state = tiny_model.prepare_source(_frames(1, 0), _frames(1, 1), steps=2)
    conds = _frames(3, 5)
    batch = tiny_model.reenact(state, conds, steps=3)
    single = torch.cat([tiny_model.reenact(state, conds[i:i + 1], steps=3) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-4, rtol=0)
    assert not torch.allclose(batch[0], batch[1], atol=1e-2)      # the frames really differ


def test_cached_source_state_round_trips(tiny_model: DiffusionActModel) -> None:
    state = tiny_model.prepare_source(_frames(1, 0), _frames(1, 1), steps=3, shape=torch.ones(1, 100))
    again = SourceState.from_tensors(state.to_tensors())
    assert again.inversion_steps == 3 and torch.equal(again.shape, state.shape)
    cond = _frames(2, 7)
    assert torch.equal(tiny_model.reenact(again, cond, steps=2), tiny_model.reenact(state, cond, steps=2))


def test_fp16_needs_cuda(tiny_model: DiffusionActModel) -> None:
    model = DiffusionActModel(tiny_model.diffae, tiny_model.encoder, precision="fp16")
    with pytest.raises(ValueError, match="CUDA"):
        model.reenact(SourceState(_frames(1, 0), _frames(1, 1), torch.zeros(1, 64)), _frames(1, 2), steps=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_autocast_close_to_fp32_on_cuda(tiny_model: DiffusionActModel) -> None:
    diffae, enc = tiny_model.diffae.cuda(), tiny_model.encoder.cuda()
    try:
        src, cond = _frames(1, 0).cuda(), _frames(2, 1).cuda()
        fp32 = DiffusionActModel(diffae, enc, precision="fp32")
        state = fp32.prepare_source(src, cond[:1], steps=5)
        ref = fp32.reenact(state, cond, steps=5)
        out = DiffusionActModel(diffae, enc, precision="auto").reenact(state, cond, steps=5)
        assert (out - ref).abs().mean().item() < 5e-3
    finally:
        tiny_model.diffae.cpu(), tiny_model.encoder.cpu()
