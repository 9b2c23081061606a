"""StyleGAN-NADA with a RANDOM tiny CLIP and the tiny generator: loss, frozen layers, saving, CLIP I/O."""
from __future__ import annotations

import warnings

import pytest
import torch

from editing.clip_model import load_clip, random_clip, read_clip_state_dict
from editing.nada import (NadaConfig, check_style_target, conv_layer_names, directional_loss, read_style_meta,
                          save_style, select_layers, text_direction, train_nada)
from personalize.errors import Action, CheckpointError, MissingWeightsError, UserError
from personalize.stylegan2 import load_generator, tiny_generator


@pytest.fixture(scope="module")
def clip_tiny():
    return random_clip("tiny", seed=0)


@pytest.fixture(scope="module")
def anchors() -> torch.Tensor:
    return torch.randn(6, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(clip_tiny, anchors):
    G = tiny_generator(seed=0)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    config = NadaConfig(target_prompt="a pencil sketch", iterations=24, layers_k=3, reselect_every=0)
    result = train_nada(G, anchors, clip_tiny, config)
    return G, before, config, result


def test_layer_map_follows_the_official_ws_order() -> None:
    G = tiny_generator(seed=0)
    layers = conv_layer_names(G)
    assert layers[0] == (0, "synthesis.b4.conv1") and layers[1] == (1, "synthesis.b8.conv0")
    assert [i for i, _ in layers] == list(range(G.num_ws - 1))  # the last code feeds only toRGB
    # a change of ws[i] must first affect the named layer: perturb ws[3] -> b16.conv0 is the earliest consumer
    ws = G.mapping(torch.randn(1, 64), None)
    seen: dict[str, torch.Tensor] = {}
    hooks = [G.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach()))
             for _, n in layers]
    G.synthesis(ws, noise_mode="const")
    base = dict(seen)
    ws2 = ws.clone()
    ws2[:, 3] += 1.0
    G.synthesis(ws2, noise_mode="const")
    for h in hooks:
        h.remove()
    changed = [n for _, n in layers if not torch.equal(base[n], seen[n])]
    assert changed[0] == "synthesis.b16.conv0"


def test_loss_falls_and_only_chosen_layers_change(trained) -> None:
    G, before, config, result = trained
    losses = torch.tensor(result.losses)
    assert len(losses) == config.iterations
    assert float(losses[-6:].mean()) < float(losses[:6].mean()) - 0.05, result.losses
    # the source generator is untouched
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), k
    chosen = result.trained_layers
    assert len(chosen) == 3 and len(result.selected_ws) == 1
    after = result.generator.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed, "nothing was trained"
    assert all(any(k.startswith(name + ".") for name in chosen) for k in changed), changed
    assert not any(".torgb." in k or k.startswith("mapping.") for k in changed)
    for name in chosen:  # every chosen layer's modulated weight really moved
        assert f"{name}.weight" in changed


def test_reselection_trains_only_the_union_of_selected_layers(clip_tiny, anchors) -> None:
    G = tiny_generator(seed=1)
    before = G.state_dict()
    result = train_nada(G, anchors, clip_tiny, NadaConfig(target_prompt="the Joker", iterations=4, layers_k=2))
    union = {n for n in result.trained_layers}
    assert len(result.selected_ws) == 4
    after = result.generator.state_dict()
    for k in after:
        if not any(k.startswith(n + ".") for n in union):
            assert torch.equal(after[k], before[k]), k


def test_select_layers_prefers_layers_the_loss_needs(clip_tiny, anchors) -> None:
    """NADA ranks layers by how far a plain gradient step moves their codes, i.e. by the size of
    the global loss's gradient per layer (Adam's first step moves every code by ~lr instead)."""
    from editing.nada import global_loss

    G = tiny_generator(seed=0)
    ws = anchors[:2].unsqueeze(1).repeat(1, G.num_ws, 1)
    _, target = text_direction(clip_tiny, "photo", "a sketch")
    chosen = select_layers(G, clip_tiny, ws, target, k=4)
    assert len(chosen) == 4 and all(0 <= i < G.num_ws - 1 for i in chosen)
    assert all(not p.requires_grad for p in G.parameters())
    w_plus = ws.clone().requires_grad_(True)
    global_loss(clip_tiny, G.synthesis(w_plus, noise_mode="const"), target).backward()
    need = w_plus.grad.abs().mean(dim=(0, 2))[: G.num_ws - 1]  # candidates: every code but toRGB's last
    assert chosen == sorted(torch.topk(need, 4).indices.tolist())


@pytest.mark.parametrize("layer", [2, 5])
def test_a_loss_that_needs_one_layer_selects_that_layer(layer) -> None:
    """The loss pulls hard on one layer's code and only faintly on every other one (as a CLIP loss
    does on layers that barely matter): that layer must rank first, whatever its index. (An Adam
    probe moves every coordinate by ~lr, so float rounding ranks the layers: it picks 3 for 2.)"""
    from editing.nada import layers_moved_most

    g = torch.Generator().manual_seed(3)
    ws = 10 * torch.randn(2, 8, 16, generator=g)
    goal = torch.randn(16, generator=g)
    faint = 1e-2 * torch.randn(8, 16, generator=g)

    def loss(w_plus: torch.Tensor) -> torch.Tensor:
        return ((w_plus[:, layer] - goal) ** 2).sum() + (w_plus * faint).sum()

    assert layers_moved_most(loss, ws, list(range(7)), k=1) == [layer]
    assert layer in layers_moved_most(loss, ws, list(range(7)), k=2)
    strict = lambda w_plus: ((w_plus[:, layer] - goal) ** 2).sum()  # depends on that layer only
    assert layers_moved_most(strict, ws, list(range(7)), k=1) == [layer]


def test_directional_loss_values(clip_tiny) -> None:
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    text_dir, _ = text_direction(clip_tiny, "photo", "a sketch")
    assert float(directional_loss(clip_tiny, images, images, text_dir)) == pytest.approx(1.0)


def test_stylized_generator_saves_and_reloads(trained, tmp_path) -> None:
    _, _, config, result = trained
    style = tmp_path / "styles" / "sketch"
    save_style(result, style, config)
    G2 = load_generator(style / "generator.safetensors")
    ws = torch.randn(2, 64).unsqueeze(1).repeat(1, result.generator.num_ws, 1)
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws, noise_mode="const"), result.generator.synthesis(ws, noise_mode="const"))
    meta = read_style_meta(style)
    assert meta["prompt"] == "a pencil sketch" and meta["trained_layers"] == result.trained_layers
    stamp = (style / "generator.safetensors").stat().st_mtime_ns
    with pytest.raises(UserError, match="already exists"):
        save_style(result, style, config)
    with pytest.raises(UserError, match="already exists"):
        check_style_target(style, force=False)
    assert (style / "generator.safetensors").stat().st_mtime_ns == stamp
    save_style(result, style, config, force=True)


@pytest.mark.parametrize("target, source, match", [("", "photo", "empty"), ("   ", "photo", "empty"),
                                                   ("photo", "photo", "equals")])
def test_bad_prompts(clip_tiny, anchors, target, source, match) -> None:
    with pytest.raises(UserError, match=match):
        train_nada(tiny_generator(), anchors, clip_tiny, NadaConfig(target_prompt=target, source_prompt=source))


def test_resume_from_checkpoint_matches_an_uninterrupted_run(clip_tiny, anchors, tmp_path) -> None:
    from personalize.errors import Cancelled
    from personalize.progress import CancelToken

    config = NadaConfig(target_prompt="a sketch", iterations=4, layers_k=2, reselect_every=0)
    full = train_nada(tiny_generator(seed=2), anchors, clip_tiny, config)
    token = CancelToken()

    def stop_after_two(done: int, total: int, message: str = "") -> None:
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        train_nada(tiny_generator(seed=2), anchors, clip_tiny, config, checkpoint_dir=tmp_path,
                   progress=stop_after_two, cancel=token)
    assert (tmp_path / "nada_checkpoint.pt").is_file()
    resumed = train_nada(tiny_generator(seed=2), anchors, clip_tiny, config, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 2 and len(resumed.losses) == 4
    assert resumed.losses[:2] == pytest.approx(full.losses[:2])
    assert not (tmp_path / "nada_checkpoint.pt").exists()


def test_clip_loads_from_a_torchscript_archive_without_running_it(clip_tiny, tmp_path) -> None:
    import clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(clip_tiny.model, (torch.randn(1, 3, 32, 32), clip.tokenize(["a photo"])),
                                 check_trace=False)
        torch.jit.save(traced, tmp_path / "ViT-tiny.pt")
    state = read_clip_state_dict(tmp_path / "ViT-tiny.pt")
    reference = clip_tiny.model.state_dict()
    assert set(state) == set(reference)
    assert all(torch.equal(state[k].float(), reference[k].float()) for k in reference)
    loaded = load_clip(tmp_path / "ViT-tiny.pt")
    assert not loaded.random_weights
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    assert torch.allclose(loaded.encode_image(x), clip_tiny.encode_image(x), atol=2e-3)  # fp16 round trip
    torch.save(clip_tiny.model.state_dict(), tmp_path / "state.pt")
    assert set(read_clip_state_dict(tmp_path / "state.pt")) == set(reference)


def test_clip_missing_or_unsafe_weights(tmp_path) -> None:
    with pytest.raises(MissingWeightsError, match="clip-vit-b32") as err:
        load_clip(tmp_path / "ViT-B-32.pt")
    assert err.value.action == Action("models", "clip-vit-b32")
    torch.save({"evil": print}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_clip(tmp_path / "evil.pt")


def test_clip_preprocessing_matches_clip_normalization(clip_tiny) -> None:
    images = torch.zeros(1, 3, 64, 64)  # mid grey in [-1, 1] -> 0.5 before normalization
    x = clip_tiny.preprocess(images)
    assert x.shape == (1, 3, 32, 32)
    expected = (0.5 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-5)
