"""Pivotal tuning (MyStyle Eq. 1): the loss falls, a crashed run resumes bit-exactly, files are
written atomically; plus the P-space helpers."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from personalize.errors import Cancelled, UserError
from personalize.perceptual import build_lpips
from personalize.progress import CancelToken
from personalize.pspace import sample_convex, sample_convex_coefficients
from personalize.tuning import (TuningConfig, default_steps, load_checkpoint, prepare_targets,
                                tune_generator)
from tests._personalize_helpers import make_generator, read_face_frames


@pytest.fixture(scope="module")
def targets() -> torch.Tensor:
    frames = read_face_frames(8, size=64, step=37)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def metric() -> torch.nn.Module:
    return build_lpips(None, random_backbone=True, seed=1)


def _anchors(G, n: int, seed: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    with torch.no_grad():
        return G.mapping(z, torch.zeros(n, G.c_dim))[:, 0].clone()


def test_loss_falls_clearly(targets, metric):
    G = make_generator(seed=0)
    cfg = TuningConfig(steps=30, batch=4, checkpoint_every=1000)
    result = tune_generator(G, _anchors(G, 8), targets, metric, cfg)
    first = np.mean([r["loss"] for r in result.log[:4]])
    last = np.mean([r["loss"] for r in result.log[-4:]])
    assert last < 0.7 * first, (first, last)
    assert all(r["loss"] == pytest.approx(r["lpips"] + 10 * r["pixel"], rel=1e-5) for r in result.log)
    mapping_params = [p for p in G.mapping.parameters()]
    assert all(not p.requires_grad for p in mapping_params)


def test_only_synthesis_changes(targets, metric):
    G = make_generator(seed=0)
    before_map = {k: v.clone() for k, v in G.mapping.state_dict().items()}
    before_syn = {k: v.clone() for k, v in G.synthesis.state_dict().items()}
    tune_generator(G, _anchors(G, 8), targets, metric, TuningConfig(steps=2, batch=2))
    assert all(torch.equal(v, G.mapping.state_dict()[k]) for k, v in before_map.items())
    assert any(not torch.equal(v, G.synthesis.state_dict()[k]) for k, v in before_syn.items())


class _Crash(RuntimeError):
    pass


def test_killed_run_resumes_bit_exact(tmp_path, targets, metric):
    cfg = TuningConfig(steps=6, batch=3, checkpoint_every=3, preview_count=2)
    straight = make_generator(seed=0)
    anchors = _anchors(straight, 8)
    ref = tune_generator(straight, anchors, targets, metric, cfg, work_dir=tmp_path / "a")

    def crash_after_step_4(done: int, total: int, message: str = "") -> None:
        if done == 4:
            raise _Crash("simulated kill")

    work = tmp_path / "b"
    crashed = make_generator(seed=0)
    with pytest.raises(_Crash):
        tune_generator(crashed, anchors, targets, metric, cfg, work_dir=work, progress=crash_after_step_4)
    assert load_checkpoint(work / "checkpoints" / "last.pt")["step"] == 3
    torch.manual_seed(1234)  # a restarted process has other global RNG states
    np.random.seed(99)
    resumed_G = make_generator(seed=0)  # fresh base weights, as after a restart
    resumed = tune_generator(resumed_G, anchors, targets, metric, cfg, work_dir=work)
    assert resumed.resumed_from == 3 and resumed.steps_done == 6
    for (name, p_ref), (_, p_res) in zip(straight.named_parameters(), resumed_G.named_parameters()):
        assert torch.equal(p_ref, p_res), name
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in ref.log]
    rows = list(csv.DictReader(open(work / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert (work / "previews" / "step_00003.png").is_file() and (work / "previews" / "step_00006.png").is_file()


def test_a_short_run_shows_a_preview_at_its_start_and_end(tmp_path, targets, metric):
    """Issue 17: previews came every 100 steps only, so a short run never showed one."""
    G = make_generator(seed=0)
    cfg = TuningConfig(steps=3, batch=2, checkpoint_every=100, preview_count=2)
    tune_generator(G, _anchors(G, 8), targets, metric, cfg, work_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == ["step_00000.png", "step_00003.png"]


def test_failed_checkpoint_write_keeps_previous(tmp_path, targets, metric, monkeypatch):
    cfg = TuningConfig(steps=4, batch=2, checkpoint_every=2)
    G = make_generator(seed=0)
    anchors = _anchors(G, 8)
    tune_generator(G, anchors, targets, metric, TuningConfig(steps=2, batch=2, checkpoint_every=2),
                   work_dir=tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        tune_generator(make_generator(seed=0), anchors, targets, metric, cfg, work_dir=tmp_path)
    monkeypatch.setattr(torch, "save", real_save)
    assert ckpt.read_bytes() == good
    assert load_checkpoint(ckpt)["step"] == 2
    assert not [p for p in ckpt.parent.iterdir() if p.name != "last.pt"]  # no temp files left


def test_cancel_saves_checkpoint_then_resume(tmp_path, targets, metric):
    token = CancelToken()
    cfg = TuningConfig(steps=5, batch=2, checkpoint_every=100)

    def cancel_at_2(done: int, total: int, message: str = "") -> None:
        if done == 2:
            token.cancel()

    G = make_generator(seed=0)
    anchors = _anchors(G, 8)
    with pytest.raises(Cancelled):
        tune_generator(G, anchors, targets, metric, cfg, work_dir=tmp_path, progress=cancel_at_2, cancel=token)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    result = tune_generator(make_generator(seed=0), anchors, targets, metric, cfg, work_dir=tmp_path)
    assert result.resumed_from == 2 and result.steps_done == 5


def test_out_of_memory_advises_smaller_batch(targets, metric, monkeypatch):
    import personalize.tuning as tuning

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(tuning, "synthesize", oom)
    G = make_generator(seed=0)
    with pytest.raises(UserError, match="--batch 2"):
        tune_generator(G, _anchors(G, 8), targets, metric, TuningConfig(steps=2, batch=4))


def test_prepare_targets_resizes_with_antialias(targets):
    same, resized = prepare_targets(targets, 64)
    assert not resized and same is targets
    small, resized = prepare_targets(targets, 32)
    assert resized and small.shape == (8, 3, 32, 32) and small.dtype == torch.uint8
    ref = torch.nn.functional.avg_pool2d(targets.float(), 2)  # antialiased 2x down ~ box filter
    assert (small.float() - ref).abs().mean() < 4.0
    assert default_steps(1024) > default_steps(256) >= default_steps(64)


def test_pspace_helpers():
    anchors = torch.randn(7, 16)
    gen = torch.Generator().manual_seed(0)
    coeffs = sample_convex_coefficients(7, 500, gen, concentration=0.5)
    assert torch.all(coeffs >= 0) and torch.allclose(coeffs.sum(1), torch.ones(500), atol=1e-5)
    # Dirichlet(a) marginal mean is 1/K
    assert torch.allclose(coeffs.mean(0), torch.full((7,), 1 / 7), atol=0.03)
    pts = sample_convex(anchors.numpy(), 4, torch.Generator().manual_seed(3))
    again = sample_convex(anchors, 4, torch.Generator().manual_seed(3))
    assert pts.shape == (4, 16) and torch.equal(pts, again)
    c = sample_convex_coefficients(7, 4, torch.Generator().manual_seed(3))
    assert torch.allclose(c @ anchors, pts, atol=1e-5)
    # concentrated Dirichlet -> close to the center
    near = sample_convex(anchors, 50, torch.Generator().manual_seed(1), concentration=500.0)
    assert (near - anchors.mean(0)).norm(dim=1).max() < 0.3 * anchors.norm(dim=1).mean()


def test_checkpoint_of_other_frames_is_not_resumed(tmp_path, targets, metric):
    cfg = TuningConfig(steps=2, batch=2, checkpoint_every=2)
    G = make_generator(seed=0)
    anchors = _anchors(G, 8)
    tune_generator(G, anchors, targets, metric, cfg, work_dir=tmp_path)
    more = TuningConfig(steps=3, batch=2, checkpoint_every=2)
    same = tune_generator(make_generator(seed=0), anchors, targets, metric, more, work_dir=tmp_path)
    assert same.resumed_from == 2
    other = tune_generator(make_generator(seed=0), anchors + 0.01, targets, metric, more, work_dir=tmp_path)
    assert other.resumed_from == 0 and other.steps_done == 3
    base = tune_generator(make_generator(seed=1), anchors + 0.01, targets, metric, more, work_dir=tmp_path)
    assert base.resumed_from == 0
