"""`studio-cli directions ...` and `studio-cli stylize` on small projects (tiny generator, random CLIP)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from editing.clip_model import random_clip
from editing.directions import load_direction, make_ws_edit
from personalize.stylegan2 import load_generator, save_generator, tiny_generator
from studio.cli import main
from studio.project import Project
from tests._editing_helpers import make_mouth_setup, mouth_warp_generator
from tests.conftest import MEDIA


@pytest.fixture()
def tiny_project(tmp_path) -> Project:
    project = Project.create(tmp_path / "anna.studio")
    save_generator(tiny_generator(seed=0), project.model_dir / "generator.safetensors")
    anchors = torch.randn(6, 64, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(project.model_dir / "anchors.npy", anchors)
    project.mark_done("personalize")
    return project


@pytest.fixture()
def ffhq_shaped_project(tmp_path) -> Project:
    """Only what importing needs: the generator's sidecar (w_dim 512, 18 ws) and 512-d anchors."""
    project = Project.create(tmp_path / "ffhq.studio")
    (project.model_dir / "generator.json").write_text(json.dumps(
        {"init_kwargs": {"w_dim": 512, "img_resolution": 1024}, "num_ws": 18}))
    np.save(project.model_dir / "anchors.npy", np.random.default_rng(0).normal(size=(20, 512)).astype(np.float32))
    return project


def test_import_published_directions_and_list(ffhq_shaped_project, capsys) -> None:
    """Imports are projected onto the person's space by default (MyStyle, paper Sec. 4.2), keep
    the reliability figure, and --no-project keeps the FFHQ-wide original."""
    from editing.directions import read_direction_file, reliability

    root = str(ffhq_shaped_project.root)
    anchors = np.load(ffhq_shaped_project.model_dir / "anchors.npy")
    assert main(["directions", "import", root, str(MEDIA / "directions" / "smile.pt"), "--name", "smile"]) == 0
    assert main(["directions", "import", root, str(MEDIA / "directions" / "pose.pt"), "--name", "pose",
                 "--no-project"]) == 0
    out = capsys.readouterr().out
    assert "imported direction 'smile' (1, 512)" in out and "(projected)" in out
    smile = load_direction(ffhq_shaped_project.directions_dir, "smile")
    assert smile.meta["projected"] and 0.0 < smile.meta["reliability"] < 0.5  # 19 random anchors span little of W
    assert reliability(smile.vector, anchors) == pytest.approx(1.0, abs=1e-5)  # stored inside the span
    pose = load_direction(ffhq_shaped_project.directions_dir, "pose")
    assert pose.vector.shape == (18, 512) and not pose.meta["projected"] and 0.0 < pose.meta["reliability"] < 0.5
    original = read_direction_file(MEDIA / "directions" / "pose.pt", w_dim=512, num_ws=18)
    assert torch.equal(pose.vector, original)
    assert main(["directions", "import", root, str(MEDIA / "directions" / "age.pt"), "--name", "age",
                 "--project-to-anchors"]) == 0  # the old flag still works (it is the default now)
    assert load_direction(ffhq_shaped_project.directions_dir, "age").meta["projected"]
    assert main(["directions", "list", root]) == 0
    listing = capsys.readouterr().out
    assert "smile" in listing and "pose" in listing and "styles: none" in listing


def test_import_needs_anchors_to_project_or_no_project(tmp_path, capsys) -> None:
    project = Project.create(tmp_path / "new.studio")
    np.save(tmp_path / "d.npy", np.ones(512, np.float32))
    assert main(["directions", "import", str(project.root), str(tmp_path / "d.npy"), "--name", "d"]) == 2
    assert "without projection" in capsys.readouterr().err
    assert main(["directions", "import", str(project.root), str(tmp_path / "d.npy"), "--name", "d",
                 "--no-project"]) == 0
    assert not load_direction(project.directions_dir, "d").meta["projected"]


def test_import_bad_input_gives_clear_errors_and_keeps_files(tiny_project, tmp_path, capsys) -> None:
    root = str(tiny_project.root)
    assert main(["directions", "import", root, str(MEDIA / "directions" / "smile.pt"), "--name", "smile"]) == 2
    assert "dimension 512" in capsys.readouterr().err
    bad = np.ones(64, np.float32)
    bad[0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["directions", "import", root, str(tmp_path / "nan.npy"), "--name", "x"]) == 2
    assert "NaN" in capsys.readouterr().err
    np.save(tmp_path / "good.npy", np.ones(64, np.float32))
    assert main(["directions", "import", root, str(tmp_path / "good.npy"), "--name", "good", "--no-project"]) == 0
    before = (tiny_project.directions_dir / "good.npy").read_bytes()
    np.save(tmp_path / "other.npy", -np.ones(64, np.float32))
    assert main(["directions", "import", root, str(tmp_path / "other.npy"), "--name", "good", "--no-project"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tiny_project.directions_dir / "good.npy").read_bytes() == before
    assert main(["directions", "import", root, str(tmp_path / "other.npy"), "--name", "good", "--force",
                 "--no-project"]) == 0
    assert torch.equal(load_direction(tiny_project.directions_dir, "good").vector, -torch.ones(1, 64))


def test_stylize_missing_clip_and_empty_prompt(tiny_project, studio_cache, capsys) -> None:
    root = str(tiny_project.root)
    assert main(["stylize", root, "--prompt", "", "--name", "x"]) == 2
    assert "prompt is empty" in capsys.readouterr().err
    assert main(["stylize", root, "--prompt", "a sketch", "--name", "sketch", "--device", "cpu"]) == 2
    assert "clip-vit-b32" in capsys.readouterr().err
    assert not (tiny_project.styles_dir / "sketch" / "style.json").exists()


def test_stylize_then_render_a_stylized_edited_take(tiny_project, monkeypatch, tmp_path, capsys) -> None:
    import studio.jobs.editing as jobs
    from editing.render import render_take

    monkeypatch.setattr(jobs, "build_clip", lambda device="cpu": random_clip("tiny", seed=0))  # explicit: random CLIP
    root = str(tiny_project.root)
    args = ["stylize", root, "--prompt", "a sketch", "--name", "sketch", "--iters", "3", "--layers", "2",
            "--device", "cpu"]
    assert main(args) == 0
    path = tiny_project.style_generator_path("sketch")
    meta = json.loads((path.parent / "style.json").read_text())
    assert meta["prompt"] == "a sketch" and meta["clip_random_weights"] is True and len(meta["trained_layers"]) >= 2
    stamp = path.stat().st_mtime_ns
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.stat().st_mtime_ns == stamp

    # a take's latent track renders through the style, with an edit applied on the way
    np.save(tmp_path / "d.npy", np.ones(64, np.float32))
    assert main(["directions", "import", root, str(tmp_path / "d.npy"), "--name", "d"]) == 0
    styled = load_generator(path)
    personal = load_generator(tiny_project.model_dir / "generator.safetensors")
    track = torch.from_numpy(np.load(tiny_project.model_dir / "anchors.npy")[:3]).unsqueeze(1).repeat(1, styled.num_ws, 1)
    edit = make_ws_edit([(load_direction(tiny_project.directions_dir, "d"), 0.5)])
    result = render_take(styled, track, tmp_path / "frames", fps=25.0, edit_ws=edit)
    from studio.jobs.editing import edits_to_ws_edit

    job_edit = edits_to_ws_edit(tiny_project, {"d": 0.5}, 64, styled.num_ws)  # what 'render --edit' uses
    assert job_edit.anchors is not None  # renders keep edited codes inside the person's space
    assert result.frames == 3
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 3
    with torch.no_grad():
        assert not torch.equal(styled.synthesis(track, noise_mode="const"), personal.synthesis(track, noise_mode="const"))


def test_learn_direction_cli(tiny_project, monkeypatch, capsys) -> None:
    import studio.jobs.editing as jobs

    anchors, axis = make_mouth_setup()
    monkeypatch.setattr(jobs, "load_personalized",
                        lambda project, device="cpu": (mouth_warp_generator(anchors, axis), anchors.numpy()))
    root = str(tiny_project.root)
    assert main(["directions", "learn", root, "--attribute", "mouth_open", "--samples", "120",
                 "--batch", "20", "--device", "cpu"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    d = load_direction(tiny_project.directions_dir, "mouth_open")
    assert d.meta["source"] == "learned" and d.meta["accuracy"] >= 0.8
    assert float(d.vector[0] @ axis) > 0.7
    assert not (tiny_project.directions_dir / ".learn_mouth_open.npz").exists()
    assert main(["directions", "learn", root, "--attribute", "mouth_open", "--samples", "120"]) == 2


def test_learn_errors(tiny_project, studio_cache, capsys) -> None:
    root = str(tiny_project.root)
    assert main(["directions", "learn", root, "--attribute", "age", "--samples", "40", "--device", "cpu"]) == 2
    assert "clip-vit-b32" in capsys.readouterr().err
    # the tiny random generator draws no face: a clear message instead of a bogus direction
    assert main(["directions", "learn", root, "--attribute", "smile", "--samples", "24", "--device", "cpu"]) == 2
    assert "no face found" in capsys.readouterr().err
    assert not (tiny_project.directions_dir / "smile.npy").exists()


def test_preview_frame_applies_edits_and_style(tiny_project, tmp_path) -> None:
    from editing.nada import NadaConfig, save_style, train_nada
    from optimize.track import LatentTrack
    from studio.jobs.editing import preview_frame

    G = load_generator(tiny_project.model_dir / "generator.safetensors")
    anchors = np.load(tiny_project.model_dir / "anchors.npy")
    track = LatentTrack.empty("test", 3, len(anchors), G.num_ws, 64, 1)
    track.ws[:] = anchors[:3, None, :]
    tiny_project.take_dir("t1").mkdir(parents=True)
    track.save(tiny_project.take_dir("t1") / "latents.npz")
    np.save(tmp_path / "d.npy", np.ones(64, np.float32))
    assert main(["directions", "import", str(tiny_project.root), str(tmp_path / "d.npy"), "--name", "d"]) == 0

    plain = preview_frame(tiny_project, "t1", frame=1)
    with torch.no_grad():
        expected = G.synthesis(torch.from_numpy(track.ws[1:2]), noise_mode="const")
    assert plain.shape == (64, 64, 3) and plain.dtype == np.uint8
    assert np.array_equal(plain, ((expected[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    assert np.array_equal(preview_frame(tiny_project, "t1", frame=1, edits={"d": 0.0}), plain)
    assert not np.array_equal(preview_frame(tiny_project, "t1", frame=1, edits={"d": 2.0}), plain)
    config = NadaConfig(target_prompt="a sketch", iterations=2, layers_k=2)
    save_style(train_nada(G, anchors, random_clip("tiny"), config), tiny_project.style_dir("s"), config)
    assert not np.array_equal(preview_frame(tiny_project, "t1", frame=1, style="s"), plain)
    with pytest.raises(Exception, match="No direction named"):
        preview_frame(tiny_project, "t1", frame=1, edits={"nope": 1.0})
