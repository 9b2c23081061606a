"""The official one-shot checkpoint files load safely, by name, with clear errors for bad files.

Files are written here in the official layouts (``torch.save`` of the official dicts). Values are
distinct per tensor but stored as expanded scalars (a 1-element storage), so even the 1 GB
hypernetwork layout is a few kB on disk; where the numbers matter (A matrix) real filled weights
are used and the golden output is reproduced through the loader.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from optimize.nets import official_checkpoints as oc
from optimize.nets.arcface import ArcFaceEncoder
from optimize.nets.deca import E_DETAIL_SIZE, DecaResnetEncoder
from optimize.nets.hypernet import HyperNetwork
from optimize.nets.stylegan2_rosinality import RosinalityGenerator
from personalize.encoders.e4e import Encoder4Editing, load_e4e
from personalize.errors import Action, CheckpointError
from personalize.torch_files import InertNamespace
from tests._oneshot_helpers import filled_state_dict, golden, max_diff


def layout(factory, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every state_dict name of factory() with a distinct constant value, shaped right, tiny on disk."""
    with torch.device("meta"):
        names = factory().state_dict()
    out = {}
    for i, (name, t) in enumerate(names.items()):
        value = torch.tensor(i if t.dtype == torch.int64 else (i + 1) / 1000.0, dtype=t.dtype)
        out[prefix + name] = value.expand(t.shape)
    return out


def same_values(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "") -> bool:
    """Every module tensor has the file tensor's shape and its (per-tensor distinct) constant."""
    sd = module.state_dict()
    return all(sd[k].shape == tensors[prefix + k].shape
               and sd[k].reshape(-1)[[0, -1]].tolist() == tensors[prefix + k].reshape(-1)[[0, -1]].tolist()
               for k in sd if sd[k].numel())


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_generator_file_with_training_args(tmp_path: Path) -> None:
    tensors = layout(RosinalityGenerator)
    args = argparse.Namespace(size=256, channel_multiplier=1, iter=800000)
    path = save({"g_ema": tensors, "latent_avg": torch.zeros(512), "args": args}, tmp_path / "stylegan-voxceleb.pt")
    result = oc.load_generator(path)
    assert same_values(result.generator, tensors) and result.filled_in == [] and result.ignored == []
    assert result.latent_avg is not None and result.latent_avg.shape == (512,)
    assert not result.generator.training and not any(p.requires_grad for p in result.generator.parameters())


def test_generator_file_without_noise_buffers_loads_like_strict_false(tmp_path: Path) -> None:
    """Old rosinality checkpoints lack noises.noise_i: the official strict=False load keeps random
    noise; ours fills seeded noise (the same on every load) and says so."""
    tensors = {k: v for k, v in layout(RosinalityGenerator).items() if not k.startswith("noises.")}
    tensors["g_ema_extra.running_stat"] = torch.zeros(3)
    path = save({"g_ema": tensors}, tmp_path / "old.pt")
    first, second = oc.load_generator(path), oc.load_generator(path)
    assert first.filled_in == [f"noises.noise_{i}" for i in range(13)]
    assert first.ignored == ["g_ema_extra.running_stat"]
    assert torch.equal(first.generator.noises.noise_12, second.generator.noises.noise_12)
    assert first.generator.noises.noise_12.std() > 0.5


def hypernet_layout() -> dict[str, torch.Tensor]:
    """As ``layout``; the real file repeats the shared hypernet under each shared layer, same values."""
    tensors = layout(HyperNetwork, prefix="hypernet.")
    for k in list(tensors):
        if ".hypernet." in k and k.startswith("hypernet.refinement_blocks."):
            tensors[k] = tensors["hypernet.shared_weight_hypernet." + k.rsplit(".", 1)[1]]
    return tensors


def test_hypernetwork_file_both_layouts(tmp_path: Path) -> None:
    tensors = hypernet_layout()
    decoder = {"decoder.style.1.weight": torch.zeros(1).expand(512, 512)}
    opts = argparse.Namespace(layers_to_tune="0,2,3,5,6,8,9,11,12,14,15,17,18", mode="delta_per_channel")
    nested = save({"state_dict": {**tensors, **decoder}, "opts": opts}, tmp_path / "hypernetwork.pt")
    top = save(tensors, tmp_path / "hypernetwork_top.pt")
    for path in (nested, top):
        net = oc.load_hypernetwork(path)
        assert same_values(net, tensors, prefix="hypernet.")
        assert net.refinement_blocks[3].hypernet.w2 is net.shared_weight_hypernet.w2


def test_e4e_arcface_deca_files(tmp_path: Path) -> None:
    e4e = layout(lambda: Encoder4Editing(256))
    assert same_values(oc.load_e4e_voxceleb(save({"e": e4e}, tmp_path / "e4e-voxceleb.pt")), e4e)
    flat = layout(ArcFaceEncoder)
    flat = {k.removeprefix("facenet."): v for k, v in flat.items()}       # insight_face.pth has no prefix
    arc = oc.load_arcface(save(flat, tmp_path / "insight_face.pth"))
    assert same_values(arc.facenet, flat)
    flame, detail = layout(DecaResnetEncoder), layout(lambda: DecaResnetEncoder(E_DETAIL_SIZE))
    path = save({"E_flame": flame, "E_detail": detail, "D_detail": {"x": torch.zeros(1)}}, tmp_path / "deca_model.tar")
    assert same_values(oc.load_deca(path), flame)
    assert same_values(oc.load_deca(path, "E_detail"), detail)


def test_ffhq_e4e_file_gives_18_styles_and_latent_avg(tmp_path: Path) -> None:
    enc = layout(lambda: Encoder4Editing(1024), prefix="encoder.")
    opts = {"stylegan_size": 1024, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True}
    path = save({"state_dict": {**enc, "decoder.style.1.weight": torch.zeros(2)}, "latent_avg": torch.ones(18, 512),
                 "opts": opts}, tmp_path / "e4e_ffhq_encode.pt")
    encoder, latent_avg = load_e4e(path)
    assert encoder.style_count == 18 and same_values(encoder, enc, prefix="encoder.")
    assert latent_avg.shape == (18, 512)
    with pytest.raises(CheckpointError, match="256 px VoxCeleb"):
        oc.load_e4e_voxceleb(path)


def test_a_matrix_file_reproduces_the_golden_shift(tmp_path: Path) -> None:
    sd = filled_state_dict("directions", "A_matrix")
    record = {"A_matrix": sd, "learned_directions": 15, "shift_scale": 6.0, "w_plus": True,
              "num_layers_shift": 8, "shift_dim": 512}
    net, settings = oc.load_direction_matrix(save(record, tmp_path / "A_matrix.pt"))
    d = golden("directions")
    with torch.no_grad():
        assert max_diff(net(d["shift_vec"]), d["A_shift"]) < 1.5e-5
    assert settings["learned_directions"] == 15
    with pytest.raises(CheckpointError, match="'num_layers_shift' is 14"):
        oc.load_direction_matrix(save({**record, "num_layers_shift": 14}, tmp_path / "A14.pt"))


def test_build_both_compositions_from_official_files(tmp_path: Path) -> None:
    from optimize.nets.direction_matrix import DirectionMatrix

    files = {
        "generator": save({"g_ema": layout(RosinalityGenerator)}, tmp_path / "stylegan-voxceleb.pt"),
        "e4e": save({"e": layout(lambda: Encoder4Editing(256))}, tmp_path / "e4e-voxceleb.pt"),
        "deca": save({"E_flame": layout(DecaResnetEncoder)}, tmp_path / "deca_model.tar"),
        "arcface": save({k.removeprefix("facenet."): v for k, v in layout(ArcFaceEncoder).items()},
                        tmp_path / "insight_face.pth"),
        "hypernetwork": save({"state_dict": hypernet_layout()}, tmp_path / "hypernetwork.pt"),
        "a_matrix": save({"A_matrix": layout(DirectionMatrix), "learned_directions": 15, "shift_scale": 6.0,
                          "w_plus": True, "num_layers_shift": 8, "shift_dim": 512}, tmp_path / "A_matrix.pt"),
    }
    weights = oc.OneShotWeights(**files)
    hr, dr = oc.build_hyperreenact(weights), oc.build_directions(weights)
    assert same_values(hr.hypernet, hypernet_layout(), prefix="hypernet.")
    assert same_values(dr.a_matrix, layout(DirectionMatrix))
    target = hr.generator.mean_latent(4096, seed=2000)
    for model in (hr, dr):
        assert same_values(model.generator, layout(RosinalityGenerator))
        assert torch.equal(model.truncation_target, target)
        assert not model.training
    with pytest.raises(CheckpointError, match="needs insight_face.pth"):
        oc.build_hyperreenact(oc.OneShotWeights(files["generator"], files["e4e"], files["deca"]))


# --- bad files ------------------------------------------------------------------------------------

@pytest.fixture()
def deca_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    flame = layout(DecaResnetEncoder)
    return save({"E_flame": flame}, tmp_path / "deca_model.tar"), flame


def test_missing_tensor_is_named(tmp_path: Path, deca_file) -> None:
    _, flame = deca_file
    del flame["layers.2.bias"]
    with pytest.raises(CheckpointError, match=r"deca_model\.tar: tensor 'layers\.2\.bias' is missing"):
        oc.load_deca(save({"E_flame": flame}, tmp_path / "deca_model.tar"))


def test_wrong_shape_is_named_with_expected_and_found(tmp_path: Path, deca_file) -> None:
    _, flame = deca_file
    flame["layers.2.weight"] = torch.zeros(100, 1024)
    with pytest.raises(CheckpointError, match=r"'layers\.2\.weight' has shape \(100, 1024\).*expects \(236, 1024\)"):
        oc.load_deca(save({"E_flame": flame}, tmp_path / "deca_model.tar"))


def test_nan_values_are_reported(tmp_path: Path, deca_file) -> None:
    _, flame = deca_file
    flame["layers.0.bias"] = torch.full((1024,), float("nan"))
    with pytest.raises(CheckpointError, match="'layers.0.bias' contains NaN"):
        oc.load_deca(save({"E_flame": flame}, tmp_path / "deca_model.tar"))


def test_truncated_file(tmp_path: Path, deca_file) -> None:
    path, _ = deca_file
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged") as caught:
        oc.load_deca(cut)
    assert caught.value.action == Action("models", "deca")     # the step that fixes it: get the file again
    assert "studio-cli" not in str(caught.value)                 # hints are words; the CLI phrases the action


def test_wrong_file_and_missing_file(tmp_path: Path, deca_file) -> None:
    path, _ = deca_file
    with pytest.raises(CheckpointError, match="has no 'g_ema' entry"):
        oc.load_generator(path)
    with pytest.raises(CheckpointError, match="holds no tensors for the HyperReenact hypernetwork"):
        oc.load_hypernetwork(path)
    resnet = save(layout(DecaResnetEncoder), tmp_path / "insight_face.pth")  # a flat dict of another network
    with pytest.raises(CheckpointError, match="does not look like the ArcFace"):
        oc.load_arcface(resnet)
    with pytest.raises(CheckpointError, match="was not found"):
        oc.load_arcface(tmp_path / "nope.pth")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        oc.load_arcface(text)


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = save({"E_flame": layout(DecaResnetEncoder), "payload": _Hostile(marker)}, tmp_path / "deca_model.tar")
    with pytest.raises(CheckpointError, match="Refusing to load deca_model.tar"):
        oc.load_deca(path)
    assert not marker.exists()


def test_namespace_options_become_inert_data(tmp_path: Path) -> None:
    from personalize.torch_files import load_torch_file, plain_options

    path = save({"opts": argparse.Namespace(lr=0.1, name="x")}, tmp_path / "o.pt")
    loaded = load_torch_file(path, "options", "hint")
    assert isinstance(loaded["opts"], InertNamespace) and plain_options(loaded["opts"]) == {"lr": 0.1, "name": "x"}
