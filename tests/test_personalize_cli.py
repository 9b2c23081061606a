"""``studio-cli select`` / ``personalize`` end to end on a small real scan with a tiny generator."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import studio.jobs.personalize as job
from personalize.perceptual import build_lpips
from studio.cli import main
from studio.project import Project
from tests._personalize_helpers import read_face_frames, write_scan


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return read_face_frames(16, size=64, step=20)


@pytest.fixture()
def random_lpips(monkeypatch):
    """Tests only: an explicitly random AlexNet backbone instead of the cached real one."""
    metric = build_lpips(None, random_backbone=True, seed=0)
    monkeypatch.setattr(job, "build_project_lpips", lambda device="cpu": metric)
    return metric


def _project(tmp_path, frames, invalid=(3, 7)) -> Project:
    project = Project.create(tmp_path / "anna.studio")
    write_scan(project.scan_dir, frames, invalid=invalid)
    project.mark_done("prepare")
    return project


def _tiny_base(tmp_path, size: int = 64):
    from personalize.stylegan2 import save_generator, tiny_generator

    G = tiny_generator(seed=0)
    path = tmp_path / "tiny_base.safetensors"
    save_generator(G, path)
    return path


def test_select_then_personalize_end_to_end(tmp_path, frames, random_lpips, studio_cache, capsys):
    project = _project(tmp_path, frames)
    assert main(["select", str(project.root), "--count", "10", "--device", "cpu"]) == 0
    sel = json.loads((project.dataset_dir / "selection.json").read_text())
    assert sel["count"] == 10 and sel["usable_frames"] == 14
    assert not {3, 7} & set(sel["frame_ids"])
    assert set(sel["coverage"]) == {"yaw", "pitch", "mouth_open", "eye_open"}

    base = _tiny_base(tmp_path)
    argv = ["personalize", str(project.root), "--base", str(base), "--frames", "10", "--steps", "4",
            "--batch", "2", "--inversion-steps", "6", "--checkpoint-every", "2", "--device", "cpu"]
    assert main(argv) == 0
    model = project.model_dir
    for name in ("generator.safetensors", "generator.json", "anchors.npy", "config.json", "log.csv",
                 "previews/step_00002.png", "previews/step_00004.png", "checkpoints/last.pt"):
        assert (model / name).is_file(), name
    anchors = np.load(project.dataset_dir / "anchors.npy")
    assert anchors.shape == (10, 64) and anchors.dtype == np.float32
    assert np.array_equal(np.load(model / "anchors.npy"), anchors)
    inv = json.loads((project.dataset_dir / "inversion.json").read_text())
    assert len(inv["lpips"]) == 10 and inv["frame_ids"] == sel["frame_ids"]
    project.reload()
    assert project.status("personalize") == "done" and project.status("select") == "done"

    from personalize.stylegan2 import load_generator

    tuned = load_generator(model / "generator.safetensors")
    original = load_generator(base)
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert changed and all(k.startswith("synthesis.") for k in changed)

    # resume: more steps continue the same run instead of starting over
    argv[argv.index("--steps") + 1] = "6"
    capsys.readouterr()
    assert main(argv) == 0
    assert "resumed tuning from step 4" in capsys.readouterr().err
    assert len(open(model / "log.csv").read().strip().splitlines()) == 1 + 6


def test_crops_resized_to_base_resolution(tmp_path, random_lpips, studio_cache, capsys):
    frames = read_face_frames(12, size=96, step=25)
    project = _project(tmp_path, frames, invalid=())
    base = _tiny_base(tmp_path)
    argv = ["personalize", str(project.root), "--base", str(base), "--frames", "10", "--steps", "2",
            "--batch", "2", "--inversion-steps", "3", "--device", "cpu"]
    assert main(argv) == 0
    assert "resizing the crops to 64 px" in capsys.readouterr().err


def test_bad_input_messages(tmp_path, frames, random_lpips, studio_cache, capsys):
    project = _project(tmp_path, frames[:9], invalid=())
    assert main(["select", str(project.root)]) == 2
    assert "at least 10" in capsys.readouterr().err
    assert main(["personalize", str(project.root), "--base", str(tmp_path / "nope.pkl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "no_project")]) == 2


def test_missing_lpips_weights_point_to_fetch(tmp_path, frames, studio_cache, capsys, monkeypatch):
    import studio.weights.store as store

    monkeypatch.setattr(store, "_OTHER_TOOLS", {})  # ignore a torch-hub AlexNet on this machine
    project = _project(tmp_path, frames)
    assert main(["select", str(project.root), "--count", "10"]) == 2
    assert "models fetch lpips-alex" in capsys.readouterr().err


def test_personalize_without_a_frame_count_keeps_the_selection(tmp_path, frames, random_lpips, studio_cache):
    """The GUI's "all selected" passes frames=None: train on the finished selection as it is
    (it used to be dropped, and the default 250 re-selected)."""
    project = _project(tmp_path, frames, invalid=())
    chosen = job.select_frames(project, 8, device="cpu")["frame_ids"]
    selected_at = project.fingerprint("select")
    config = job.personalize_project(project, str(_tiny_base(tmp_path)), frames=None, steps=2, batch=2,
                                     inversion_steps=2, checkpoint_every=2)
    assert config["frame_ids"] == chosen and config["frames"] == 8
    assert project.fingerprint("select") == selected_at
