"""The generator reproduces NVIDIA's official StyleGAN2-ADA outputs and behaves like it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from personalize.stylegan2 import Generator, tiny_generator
from personalize.stylegan2.reference import use_reference_ops

GOLDEN = ["sg2_tiny64", "sg2_ffhqlike256", "sg2_cond32"]
TOL = 1e-4  # max abs error relative to the reference's max abs value


def _rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(ref)
    return float((ours.detach().float() - ref_t).abs().max() / ref_t.abs().max())


def _load_golden(shared_dir: Path, name: str) -> tuple[Generator, dict]:
    folder = shared_dir / "reference" / "stylegan2"
    init_kwargs = json.loads((folder / f"{name}.json").read_text())["init_kwargs"]
    data = dict(np.load(folder / f"{name}.npz"))
    G = Generator(**init_kwargs).eval()
    params = {k[len("param/"):]: torch.from_numpy(v) for k, v in data.items() if k.startswith("param/")}
    G.load_state_dict(params, strict=True)
    return G, data


@pytest.mark.parametrize("name", GOLDEN)
def test_matches_official_outputs(shared_dir: Path, name: str) -> None:
    G, d = _load_golden(shared_dir, name)
    z, c = torch.from_numpy(d["in/z"]), torch.from_numpy(d["in/c"])
    with torch.no_grad():
        ws1 = G.mapping(z, c)
        ws7 = G.mapping(z, c, truncation_psi=0.7)
        ws7c = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=4)
        errors = {
            "ws_psi1": _rel_err(ws1, d["out/ws_psi1"]),
            "ws_psi0.7": _rel_err(ws7, d["out/ws_psi0.7"]),
            "ws_psi0.7_cutoff4": _rel_err(ws7c, d["out/ws_psi0.7_cutoff4"]),
            "img_psi1_const": _rel_err(G.synthesis(ws1, noise_mode="const"), d["out/img_psi1_const"]),
            "img_psi0.7_none": _rel_err(G.synthesis(ws7, noise_mode="none"), d["out/img_psi0.7_none"]),
            "img_wplus_const": _rel_err(G.synthesis(torch.from_numpy(d["in/wplus"]), noise_mode="const"),
                                        d["out/img_wplus_const"]),
            "forward": _rel_err(G(z, c, truncation_psi=0.7, noise_mode="none"), d["out/img_psi0.7_none"]),
        }
    assert max(errors.values()) < TOL, errors
    # The check can fail: the truncation must matter and const noise must differ from none.
    assert _rel_err(ws1, d["out/ws_psi0.7"]) > 100 * TOL
    assert not torch.allclose(G.synthesis(ws1, noise_mode="const"), G.synthesis(ws1, noise_mode="none"))


@pytest.mark.parametrize("fused", [True, False])
def test_both_execution_plans_match_official(shared_dir: Path, fused: bool) -> None:
    G, d = _load_golden(shared_dir, "sg2_tiny64")
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(d["in/wplus"]), noise_mode="const", fused_modconv=fused)
    assert _rel_err(img, d["out/img_wplus_const"]) < TOL


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_one_with_kept_weights_matches_official(shared_dir: Path, channels_last: bool) -> None:
    """One sample at a time without gradients: the layers keep their FrozenWeight (the scaled plan
    where weights outweigh activations), in either memory layout; same images as the official."""
    G, d = _load_golden(shared_dir, "sg2_ffhqlike256")
    ws = torch.from_numpy(d["in/wplus"])
    with torch.no_grad():
        img = torch.cat([G.synthesis(w[None], noise_mode="const", channels_last=channels_last) for w in ws])
    assert img.is_contiguous()
    assert _rel_err(img, d["out/img_wplus_const"]) < TOL
    assert all(layer._frozen is not None for layer in G.synthesis.modules() if hasattr(layer, "frozen_weight"))


def test_kept_weights_follow_every_change_of_the_weights() -> None:
    """A layer's FrozenWeight is rebuilt after an in-place change (an optimizer step), a
    load_state_dict and a dtype or layout change; with a weight gradient none is kept."""
    G = tiny_generator(seed=9, img_resolution=32)
    ws = torch.randn(1, G.num_ws, G.w_dim)
    layer = G.synthesis.b16.conv0

    def reference() -> torch.Tensor:
        with torch.no_grad(), use_reference_ops():
            return G.synthesis(ws, noise_mode="const")

    original = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        first = G.synthesis(ws, noise_mode="const")
        kept = layer._frozen
        torch.testing.assert_close(first, reference(), atol=1e-5, rtol=1e-4)
        G.synthesis(ws, noise_mode="const")
        assert layer._frozen is kept                                      # reused while unchanged
        for p in G.synthesis.parameters():
            p.mul_(1.1).add_(0.01)                                        # a step, in place
        stepped = G.synthesis(ws, noise_mode="const")
        assert layer._frozen is not kept
        torch.testing.assert_close(stepped, reference(), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(stepped, first, atol=1e-3)
        G.load_state_dict(original)
        torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), first, atol=1e-6, rtol=1e-5)
        low = G.synthesis(ws, noise_mode="const", bf16=True, channels_last=True)
        assert layer._frozen[1].conv_weight.dtype == torch.bfloat16
        assert layer._frozen[1].conv_weight.is_contiguous(memory_format=torch.channels_last)
        assert float((low - first).abs().max()) < 0.1 * float(first.abs().max())
    G.requires_grad_(True)
    layer._frozen = None
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert layer._frozen is None and layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_reference_path_matches_official(shared_dir: Path) -> None:
    """The plain baseline used by the benchmark is itself the official algorithm."""
    G, d = _load_golden(shared_dir, "sg2_cond32")
    with torch.no_grad(), use_reference_ops():
        img = G.synthesis(torch.from_numpy(d["in/wplus"]), noise_mode="const")
    assert _rel_err(img, d["out/img_wplus_const"]) < TOL


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
def test_other_architectures_match_reference_path(architecture: str) -> None:
    G = tiny_generator(seed=4, img_resolution=32, synthesis_kwargs={"architecture": architecture, "conv_clamp": 256})
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))  # non-zero noise strengths and biases
        ws = torch.randn(3, G.num_ws, G.w_dim)
        ours = G.synthesis(ws, noise_mode="const")
        with use_reference_ops():
            ref = G.synthesis(ws, noise_mode="const")
    assert ours.shape == (3, 3, 32, 32)
    assert float((ours - ref).abs().max() / ref.abs().max()) < TOL


def test_ffhq1024_layout(shared_dir: Path) -> None:
    layout = json.loads((shared_dir / "reference" / "stylegan2" / "ffhq1024_layout.json").read_text())
    G = Generator(**layout["init_kwargs"])
    shapes = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert list(shapes) == list(layout["params"]) and shapes == layout["params"]
    assert G.num_ws == layout["num_ws"] == 18
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sorted(n for n, _ in G.named_parameters()) == sorted(layout["trainable"])


@torch.no_grad()
def test_init_follows_official_distributions() -> None:
    G = Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 4096, "channel_max": 128})
    fc0 = G.mapping.fc0
    assert abs(float(fc0.weight.std()) * 0.01 - 1) < 0.05  # randn / lr_multiplier(0.01)
    assert torch.all(G.mapping.w_avg == 0) and torch.all(fc0.bias == 0)
    conv = G.synthesis.b16.conv0
    assert torch.all(conv.affine.bias == 1) and float(conv.noise_strength) == 0 and torch.all(conv.bias == 0)
    assert abs(float(conv.weight.std()) - 1) < 0.05 and abs(float(conv.noise_const.std()) - 1) < 0.1
    assert abs(float(G.synthesis.b4.const.std()) - 1) < 0.1
    assert torch.allclose(conv.resample_filter, torch.tensor([1., 3, 3, 1]).outer(torch.tensor([1., 3, 3, 1])) / 64)
    assert math.isclose(conv.affine.weight_gain, 1 / math.sqrt(64))


def test_tiny_generator_is_deterministic_and_random_like_official() -> None:
    a, b, c = tiny_generator(seed=0), tiny_generator(seed=0), tiny_generator(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.synthesis.b4.const, c.synthesis.b4.const)
    assert (a.z_dim, a.w_dim, a.num_ws, a.img_resolution) == (64, 64, 10, 64) and not a.training
    with torch.no_grad():
        img = a(torch.randn(2, 64), None, noise_mode="const")
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()
    assert 0.05 < float(img.std()) < 20  # equalized lr keeps a fresh network's output at unit-ish scale


def test_noise_modes_and_batch_consistency() -> None:
    G = tiny_generator(seed=2)
    with torch.no_grad():
        for p in G.parameters():
            if p.ndim == 0:
                p.fill_(0.5)  # noise strengths
        ws = G.mapping(torch.randn(3, 64), None)
        r1, r2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
        const = G.synthesis(ws, noise_mode="const")
        single = torch.cat([G.synthesis(ws[i:i + 1], noise_mode="const") for i in range(3)])
    assert not torch.allclose(r1, r2)
    assert torch.allclose(const, single, atol=1e-5)
    with pytest.raises(ValueError):
        G.synthesis(ws, noise_mode="bogus")


def test_w_avg_tracks_in_training_mode_only() -> None:
    G = tiny_generator(seed=3)
    z = torch.randn(8, 64)
    G.mapping(z, None)
    assert torch.all(G.mapping.w_avg == 0)  # eval mode: untouched
    G.train()
    w = G.mapping(z, None)[:, 0]
    assert torch.allclose(G.mapping.w_avg, (1 - 0.995) * w.detach().mean(0), atol=1e-6)


def test_gradients_wrt_ws_and_weights() -> None:
    G = tiny_generator(seed=5, img_resolution=32, synthesis_kwargs={"channel_max": 16})
    ws = G.mapping(torch.randn(2, 64), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    img.square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    conv_w = G.synthesis.b16.conv0.weight
    assert conv_w.grad is not None and conv_w.grad.abs().sum() > 0
    # Finite-difference check of d loss / d ws in float64.
    Gd = G.double()
    ws64 = ws.detach().double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: Gd.synthesis(w, noise_mode="const").sum(),
                                    (ws64,), eps=1e-6, atol=1e-4, nondet_tol=0.0, fast_mode=True)


def test_bad_ws_shape_is_clear() -> None:
    G = tiny_generator()
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(1, 3, 64))


def test_kept_weights_are_the_layers_current_caches() -> None:
    """``SynthesisLayer.kept_weights``: what a CUDA graph holds on to (optimize.live) is each
    synthesis layer's cache of the last no-grad pass, for that pass's dtype."""
    from personalize.stylegan2.networks import SynthesisLayer

    G = tiny_generator(seed=2, img_resolution=16).requires_grad_(False)
    layers = [m for m in G.modules() if isinstance(m, SynthesisLayer)]
    assert SynthesisLayer.kept_weights(G) == []
    ws = torch.randn(1, G.num_ws, G.w_dim)
    with torch.no_grad():
        G.synthesis(ws, noise_mode="const")
        fp32 = SynthesisLayer.kept_weights(G)
        G.synthesis(ws, noise_mode="const", bf16=True)
        bf16 = SynthesisLayer.kept_weights(G)
    assert len(fp32) == len(bf16) == len(layers) > 0
    assert all(k.conv_weight.dtype == torch.float32 for k in fp32)
    assert all(k.conv_weight.dtype == torch.bfloat16 for k in bf16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 runs only on CUDA")
def test_fp16_blocks_match_fp32_on_cuda(shared_dir: Path) -> None:
    """fp32 on CUDA reproduces NVIDIA's outputs with TF32 off (as their own training and tests run
    it; cuDNN's convolutions default to TF32 on Ampere and later, 6e-4 from the golden on an H200),
    and the fp16 blocks stay close to it."""
    G, d = _load_golden(shared_dir, "sg2_ffhqlike256")
    G = G.cuda()
    ws = torch.from_numpy(d["in/wplus"]).cuda()
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        full = G.synthesis(ws, noise_mode="const")
        half = G.synthesis(ws, noise_mode="const", fp16=True)
    assert half.dtype == torch.float32
    assert _rel_err(full.cpu(), d["out/img_wplus_const"]) < TOL
    assert float((half - full).abs().max() / full.abs().max()) < 2e-2


@pytest.mark.slow
def test_torch_compile_captures_one_graph() -> None:
    """fullgraph=True fails on any graph break; aot_eager also traces autograd (inductor's C++
    compile takes minutes on a 2-core CPU, so it is exercised by bench/generator.py --compile)."""
    G = tiny_generator(seed=6, img_resolution=16)
    ws = torch.randn(2, G.num_ws, G.w_dim)
    compiled = torch.compile(G.synthesis, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        eager = G.synthesis(ws, noise_mode="const")
        out = compiled(ws, noise_mode="const")
    assert torch.allclose(out, eager, atol=1e-5, rtol=1e-4)
