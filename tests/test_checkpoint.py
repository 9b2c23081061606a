"""Checkpoint I/O: studio safetensors round trip, official pickles read safely, clear errors."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from personalize.errors import CheckpointError
from personalize.stylegan2 import Generator, load_generator, save_generator, tiny_generator
from tests._stylegan2_helpers import (FAKE_MODULE_SRC, Persistent, ShellCommand, WriteFile,
                                      official_pickle_bytes)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _perturbed_tiny(seed: int = 3) -> Generator:
    """A tiny generator whose noise strengths/w_avg are non-zero, so every tensor is checked."""
    G = tiny_generator(seed=seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.mapping.w_avg.normal_()
    return G


# --- studio format -------------------------------------------------------------------------------

def test_safetensors_round_trip_is_exact(tmp_path: Path) -> None:
    G = _perturbed_tiny()
    out = save_generator(G, tmp_path / "model" / "generator.safetensors", extra={"step": 7})
    assert out.exists() and out.with_suffix(".json").exists()
    header = json.loads(out.with_suffix(".json").read_text())
    assert header["init_kwargs"] == G.init_kwargs and header["extra"] == {"step": 7}
    H = load_generator(out)
    assert _same_weights(G, H) and H.init_kwargs == G.init_kwargs and not H.training
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), H(z, None, noise_mode="const"))


def test_safetensors_loads_without_sidecar_and_via_json(tmp_path: Path) -> None:
    G = _perturbed_tiny()
    out = save_generator(G, tmp_path / "g")  # suffix added
    assert out.name == "g.safetensors"
    assert _same_weights(G, load_generator(out.with_suffix(".json")))
    out.with_suffix(".json").unlink()
    assert _same_weights(G, load_generator(out))


def test_conditional_and_resnet_round_trip(tmp_path: Path) -> None:
    G = tiny_generator(seed=1, c_dim=4, img_resolution=32, synthesis_kwargs={"architecture": "resnet"})
    assert any(k.endswith("skip.weight") for k in G.state_dict()) and "mapping.embed.weight" in G.state_dict()
    assert _same_weights(G, load_generator(save_generator(G, tmp_path / "c.safetensors")))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="folder"):
        load_generator(tmp_path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "photo.pkl"
    junk.write_bytes(b"\xff\xd8\xff\xe0 this is a jpeg, not a network" * 10)
    with pytest.raises(CheckpointError, match="not a generator checkpoint"):
        load_generator(junk)
    wrong = tmp_path / "list.pkl"
    wrong.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="not a StyleGAN2-ADA checkpoint"):
        load_generator(wrong)


def test_truncated_safetensors_and_pickle(tmp_path: Path) -> None:
    G = tiny_generator()
    st = save_generator(G, tmp_path / "g.safetensors")
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated|damaged"):
        load_generator(st)
    pkl = tmp_path / "network-snapshot.pkl"
    blob = official_pickle_bytes(G)
    pkl.write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_generator(pkl)


def test_nan_weights_rejected(tmp_path: Path) -> None:
    G = tiny_generator()
    with torch.no_grad():
        G.synthesis.b16.conv0.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        load_generator(save_generator(G, tmp_path / "g.safetensors"))
    with pytest.raises(CheckpointError, match="NaN"):
        (tmp_path / "g.pkl").write_bytes(official_pickle_bytes(G))
        load_generator(tmp_path / "g.pkl")


def test_shape_mismatch_rejected(tmp_path: Path) -> None:
    out = save_generator(tiny_generator(), tmp_path / "g.safetensors")
    header = json.loads(out.with_suffix(".json").read_text())
    header["init_kwargs"]["synthesis_kwargs"]["channel_max"] = 16  # settings no longer match tensors
    out.with_suffix(".json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_generator(out)


# --- official pickles ----------------------------------------------------------------------------

def test_official_pickle_loads_g_ema(tmp_path: Path) -> None:
    G_ema = _perturbed_tiny(seed=5)
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(official_pickle_bytes(G_ema))
    H = load_generator(path)
    assert _same_weights(G_ema, H) and H.init_kwargs == G_ema.init_kwargs
    z = torch.randn(2, G_ema.z_dim)
    with torch.no_grad():
        assert torch.equal(G_ema(z, None, truncation_psi=0.7, noise_mode="const"),
                           H(z, None, truncation_psi=0.7, noise_mode="const"))


def test_official_pickle_falls_back_to_g_and_keeps_conditioning(tmp_path: Path) -> None:
    G = tiny_generator(seed=2, c_dim=3, img_resolution=32)
    path = tmp_path / "g_only.pkl"
    path.write_bytes(official_pickle_bytes(G, keys=("G", "D")))
    H = load_generator(path)
    assert H.c_dim == 3 and _same_weights(G, H)


def test_pickle_without_generator(tmp_path: Path) -> None:
    path = tmp_path / "d_only.pkl"
    path.write_bytes(official_pickle_bytes(tiny_generator(), keys=("D",)))
    with pytest.raises(CheckpointError, match="no generator"):
        load_generator(path)


def test_stylegan3_pickle_rejected(tmp_path: Path) -> None:
    G = tiny_generator()

    def to_sg3(tree: Persistent) -> None:
        synth = tree.meta["state"]["_modules"]["synthesis"].meta["state"]
        synth["_modules"] = {"input": synth["_modules"]["b4"], "L0_36_512": synth["_modules"]["b8"]}

    path = tmp_path / "stylegan3-t-ffhq.pkl"
    path.write_bytes(official_pickle_bytes(G, mutate=to_sg3,
                                           module_src=FAKE_MODULE_SRC + "class SynthesisInput: sampling_rate = 16\n"))
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_generator(path)


def test_wrong_class_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.pkl"
    path.write_bytes(official_pickle_bytes(tiny_generator(), class_name="Encoder"))
    with pytest.raises(CheckpointError, match="Encoder"):
        load_generator(path)


def test_pickle_shape_mismatch(tmp_path: Path) -> None:
    def shrink(tree: Persistent) -> None:
        fc0 = tree.meta["state"]["_modules"]["mapping"].meta["state"]["_modules"]["fc0"].meta["state"]
        fc0["_parameters"]["weight"] = torch.nn.Parameter(torch.zeros(64, 32))

    path = tmp_path / "bad.pkl"
    path.write_bytes(official_pickle_bytes(tiny_generator(), mutate=shrink))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_generator(path)


def _stock_unpickle(path: Path) -> None:
    """Show the hostile file is real: Python's own pickle runs its payload (our payloads only
    create a marker file in tmp_path; the fake persistence module execs ``module_src`` as the
    official one does)."""
    from tests._stylegan2_helpers import official_modules

    with official_modules():
        pickle.loads(path.read_bytes())


@pytest.mark.parametrize("payload", ["shell", "exec"])
def test_hostile_reduce_is_never_run(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned.txt"
    evil = ShellCommand(f"touch {marker}") if payload == "shell" else WriteFile(marker)
    path = tmp_path / "ffhq.pkl"
    path.write_bytes(official_pickle_bytes(tiny_generator(), extra={"augment_pipe": evil}))
    _stock_unpickle(path)
    assert marker.exists(), "the hostile pickle should be effective with the stock unpickler"
    marker.unlink()
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_generator(path)
    assert not marker.exists()


def test_hostile_module_src_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    src = f"open({str(marker)!r}, 'w').write('pwned')\n"
    G = tiny_generator()
    # 1) Valid tensors: loads, because the studio never needs the source; the file stays absent.
    good = tmp_path / "good.pkl"
    good.write_bytes(official_pickle_bytes(G, module_src=src))
    _stock_unpickle(good)
    assert marker.exists(), "the stock machinery executes module_src"
    marker.unlink()
    assert _same_weights(G, load_generator(good))
    assert not marker.exists()

    # 2) Broken generator state: a clean CheckpointError, still nothing executed.
    def break_state(tree: Persistent) -> None:
        tree.meta["state"]["_modules"]["mapping"] = "not a module"

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(official_pickle_bytes(G, module_src=src, mutate=break_state))
    with pytest.raises(CheckpointError):
        load_generator(bad)
    assert not marker.exists()


def test_ffhq_layout_from_official_init_kwargs(shared_dir: Path) -> None:
    """A pickle carrying the real FFHQ 1024 init_kwargs would build exactly the official layout."""
    from personalize.stylegan2.configs import generator_from_kwargs

    layout = json.loads((shared_dir / "reference" / "stylegan2" / "ffhq1024_layout.json").read_text())
    G = generator_from_kwargs(layout["init_kwargs"])  # 30 M parameters: ~1 s on CPU
    assert G.num_ws == layout["num_ws"]
    assert {k: list(v.shape) for k, v in G.state_dict().items()} == layout["params"]


def test_stylegan3_repo_style_kwargs_are_accepted() -> None:
    """StyleGAN2 pickles from NVIDIA's stylegan3 repo keep synthesis kwargs at the top level."""
    from personalize.stylegan2.checkpoint_pkl import _init_kwargs

    meta_state = {"_init_args": (), "_init_kwargs": {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8,
                                                     "img_channels": 3, "mapping_kwargs": {"num_layers": 2},
                                                     "channel_base": 64, "channel_max": 8,
                                                     "fused_modconv_default": "inference_only"}}
    from personalize.stylegan2.checkpoint_pkl import PersistentObject
    kw = _init_kwargs(PersistentObject({"class_name": "Generator", "state": meta_state}))
    assert kw["synthesis_kwargs"] == {"channel_base": 64, "channel_max": 8}
    assert Generator(**kw).num_ws == 4  # b4: conv1; b8: conv0, conv1, torgb
