"""Personalization with several processes (torchrun, gloo on the CPU) on the tiny StyleGAN2.

Stated tolerance (also in ``personalize.tuning``'s docstring): the anchors of a 2-process run equal
the single-process anchors within 1e-5 (each batch is projected the same way whichever rank runs
it); the tuned generator's images of the anchors within 2e-3 max-abs on the [-1, 1] range (a
quarter of one 8-bit level) and the logged losses within 1e-4 relative. Measured: 1e-4 max-abs
image difference after 20 steps; the weights differ only by float summation order, which Adam
can amplify for weights whose gradient is ~0.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import studio.jobs.personalize as job
from personalize.distributed import SINGLE, DistContext
from personalize.errors import UserError
from personalize.fileio import atomic_write_json
from personalize.perceptual import build_lpips
from personalize.stylegan2 import load_generator, save_generator, tiny_generator
from personalize.tuning import synthesize
from studio.cli.launch import MAX_ATTEMPTS, launch
from studio.project import Project
from tests._personalize_helpers import read_face_frames, write_scan

ROOT = Path(__file__).resolve().parents[1]
FRAMES, STEPS, INVERSION_STEPS = 8, 8, 4
ANCHOR_TOL, IMAGE_TOL, LOSS_RTOL = 1e-5, 2e-3, 1e-4


def test_shares_make_the_global_mean_gradient() -> None:
    items = list(range(7))
    shares = [DistContext(rank, 3).share(items) for rank in range(3)]
    assert [s[0] for s in shares] == [[0, 1, 2], [3, 4], [5, 6]]
    # DDP averages over ranks: sum_r scale_r * mean_r / world == mean over all items
    values = torch.arange(7.0) ** 2
    averaged = sum(scale * values[idx].mean() for idx, scale in shares) / 3
    assert float(averaged) == pytest.approx(float(values.mean()))
    with pytest.raises(ValueError):
        DistContext(0, 8).share(items)
    assert SINGLE.share(items) == (items, 1.0) and SINGLE.gather(5) == [5] and SINGLE.broadcast(3) == 3
    assert SINGLE.any(True) and not SINGLE.any(False) and SINGLE.sum([1.5, 2]) == [1.5, 2.0]


def _project(root: Path) -> tuple[Project, Path]:
    project = Project.create(root / "anna.studio")
    write_scan(project.scan_dir, read_face_frames(12, size=64, step=25))
    project.mark_done("prepare")
    atomic_write_json(project.selection_path, {"requested": FRAMES, "count": FRAMES,
                                               "frame_ids": list(range(FRAMES)), "usable_frames": 12})
    project.mark_done("select")
    base = root / "tiny_base.safetensors"
    save_generator(tiny_generator(seed=0), base)
    return project, base


def _argv(project: Project, base: Path, steps: int = STEPS) -> list[str]:
    return ["personalize", str(project.root), "--base", str(base), "--frames", str(FRAMES),
            "--steps", str(steps), "--batch", "4", "--inversion-steps", str(INVERSION_STEPS),
            "--checkpoint-every", "2", "--device", "cpu", "--gpus", "2"]


def _rows(project: Project) -> list[dict[str, str]]:
    return list(csv.DictReader(open(project.tuning_log_path)))


def _images(generator_file: Path, anchors: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return synthesize(load_generator(generator_file), torch.from_numpy(anchors))


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> tuple[np.ndarray, torch.Tensor, list[float]]:
    """The reference: the same run in this process (SINGLE), same seeds, same metric."""
    project, base = _project(tmp_path_factory.mktemp("single"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs (2 cores, 2 processes): several times faster here
    try:
        job.personalize_project(project, str(base), frames=FRAMES, steps=STEPS, batch=4,
                                inversion_steps=INVERSION_STEPS, checkpoint_every=2,
                                lpips_model=build_lpips(None, random_backbone=True, seed=0))
    finally:
        torch.set_num_threads(threads)
    anchors = np.load(project.anchors_path)
    return anchors, _images(project.generator_path, anchors), [float(r["loss"]) for r in _rows(project)]


@pytest.mark.slow  # ~60 s: two torchrun attempts of 2 processes each on 2 cores
def test_two_processes_match_one_and_a_killed_rank_resumes(tmp_path, single_process, studio_cache,
                                                           monkeypatch, capfd) -> None:
    """Rank 1 is SIGKILLed at tuning step 4 (nothing saved by it); the launcher starts both
    processes again, they resume from rank 0's step-2 checkpoint, and the finished generator
    matches the uninterrupted single-process run."""
    project, base = _project(tmp_path)
    monkeypatch.setenv("STUDIO_TEST_KILL", "1:3")
    monkeypatch.setenv("STUDIO_TEST_KILL_MARKER", str(tmp_path / "killed-once"))
    argv = _argv(project, base)
    code = launch(argv, 2, "cpu", module_argv=["tests._ddp_worker", *argv])
    err = capfd.readouterr().err
    assert code == 0, err[-3000:]
    assert (tmp_path / "killed-once").exists() and f"attempt 2 of {MAX_ATTEMPTS}" in err
    assert "resumed tuning from step 2" in err
    rows = _rows(project)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))

    ref_anchors, ref_images, ref_losses = single_process
    anchors = np.load(project.anchors_path)
    np.testing.assert_allclose(anchors, ref_anchors, atol=ANCHOR_TOL)
    images = _images(project.generator_path, anchors)
    assert float((images - ref_images).abs().max()) < IMAGE_TOL
    np.testing.assert_allclose([float(r["loss"]) for r in rows], ref_losses, rtol=LOSS_RTOL)
    project.reload()
    assert project.status("personalize") == "done"
    assert project.stage_info("personalize")["processes"] == 2
    assert not project.inversion_progress_path.exists()  # anchors.npy holds the finished inversion


@pytest.mark.slow  # ~35 s: one torchrun run of 2 processes, stopped with Ctrl-C, then resumed
def test_ctrl_c_stops_every_process_saves_and_resumes(tmp_path, studio_cache) -> None:
    project, base = _project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = _argv(project, base, steps=400)
    proc = subprocess.Popen([sys.executable, "-m", "tests._ddp_worker", "--launch", "2", *argv], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (project.tuning_log_path.is_file() and len(_rows(project)) >= 2):  # tuning is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Stopped while tuning: the anchors and tuning up to step" in err
    assert "Traceback" not in err
    from personalize.tuning import load_checkpoint

    stopped_at = int(load_checkpoint(project.model_dir / "checkpoints" / "last.pt")["step"])
    assert 2 <= stopped_at < 400 and int(_rows(project)[-1]["step"]) == stopped_at
    project.reload()
    assert project.status("personalize") == "not done"
    # the same command resumes (fewer steps: end right after the checkpoint)
    argv = _argv(project, base, steps=stopped_at + 2)
    assert launch(argv, 2, "cpu", module_argv=["tests._ddp_worker", *argv]) == 0
    assert [int(r["step"]) for r in _rows(project)] == list(range(1, stopped_at + 3))


def test_gpus_needs_gpus_or_the_cpu(tmp_path, capsys, monkeypatch) -> None:
    from studio.cli import main

    project, base = _project(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = _argv(project, base)
    argv[argv.index("--device") + 1] = "auto"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs 2 CUDA GPUs; this machine has 0" in err and "--device cpu" in err
    # every process checks the batch before any work (rank 0 of 2 here; no process group needed)
    with pytest.raises(UserError, match="cannot be shared by 2 processes"):
        job.personalize_project(project, str(base), batch=1, dist=DistContext(0, 2))
