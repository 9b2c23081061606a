"""``studio-cli generate`` through ``studio.cli.main`` on tiny saved checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from personalize.errors import UserError
from personalize.stylegan2 import save_generator, tiny_generator
from studio.cli import main
from studio.cli.generate_cmd import parse_seeds, to_uint8
from tests._stylegan2_helpers import official_pickle_bytes


def test_parse_seeds() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,9") == [1, 5, 9]
    assert parse_seeds("0-1, 10") == [0, 1, 10]
    for bad in ["a-b", "5-2", "", "1;2"]:
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_generate_writes_official_seed_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    G = tiny_generator(seed=7)
    ckpt = save_generator(G, tmp_path / "g.safetensors")
    out = tmp_path / "out"
    rc = main(["generate", "--checkpoint", str(ckpt), "--seeds", "0-2,5", "--trunc", "0.7",
               "--out", str(out), "--device", "cpu"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0005.png"]
    assert "device: CPU" in capsys.readouterr().err
    # Seed 5 must be the official generate.py latent: RandomState(5).randn(1, z_dim), const noise.
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    with torch.no_grad():
        expected = to_uint8(G(z, None, truncation_psi=0.7, noise_mode="const"))[0]
    got = np.asarray(Image.open(out / "seed0005.png"))
    assert got.shape == (64, 64, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(got, np.asarray(Image.open(out / "seed0000.png")))


def test_generate_from_official_pickle_conditional(tmp_path: Path) -> None:
    G = tiny_generator(seed=8, c_dim=2, img_resolution=16)
    pkl = tmp_path / "cond.pkl"
    pkl.write_bytes(official_pickle_bytes(G))
    out = tmp_path / "o"
    assert main(["generate", "--checkpoint", str(pkl), "--seeds", "3", "--class-idx", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert (out / "seed0003.png").exists()
    # Missing class index: a clear message, exit code 2, no traceback.
    assert main(["generate", "--checkpoint", str(pkl), "--seeds", "3", "--out", str(out), "--device", "cpu"]) == 2


def test_generate_reports_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    assert main(["generate", "--checkpoint", str(bad), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_generate_weights_name_without_weights(tmp_path: Path, studio_cache: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """'ffhq' resolves through the weights manager; absent weights give its fetch advice."""
    pytest.importorskip("studio.weights")
    rc = main(["generate", "--checkpoint", "ffhq", "--seeds", "0", "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 2
    assert "ffhq" in capsys.readouterr().err
