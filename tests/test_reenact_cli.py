"""End to end through studio-cli with a tiny StyleGAN2 on CPU: reenact, render, export with audio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio.cli import main
from studio.project import Project
from tests._reenact_helpers import cut_clip, stream_info
from tests.conftest import MEDIA


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """1 s of the speech clip (25 frames at 25 fps) with its audio, downscaled to keep it fast."""
    return cut_clip(MEDIA / "driving_speech_audio_8s.mp4",
                    tmp_path_factory.mktemp("clip") / "speech_1s.mp4", 1.0, size=256)


def _personalized_project(root: Path) -> Project:
    import torch

    from personalize.stylegan2 import save_generator, tiny_generator

    project = Project.create(root)
    generator = tiny_generator(seed=0)
    save_generator(generator, project.model_dir / "generator.safetensors")
    with torch.no_grad():
        anchors = generator.mapping(torch.randn(4, generator.z_dim), None)[:, 0].numpy()
    np.save(project.model_dir / "anchors.npy", anchors.astype(np.float32))
    project.mark_done("personalize", frames=4)
    return project


@pytest.mark.slow  # ~40 s: 25 frames of preparation, MediaPipe and optimization on a shared CPU
def test_reenact_and_render_through_the_cli(tmp_path, clip, capsys) -> None:
    project = _personalized_project(tmp_path / "anna.studio")
    source = stream_info(clip)
    assert source["frames"] == 25 and source["audio"]

    code = main(["reenact", str(project.root), "--driving", str(clip), "--name", "speech",
                 "--steps", "1", "--lr", "0.1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    take = project.take_dir("speech")
    recorded = json.loads((take / "track.json").read_text())["settings"]
    assert (recorded["lr"], recorded["first_lr"]) == (0.1, pytest.approx(0.4))  # the cold start keeps 4x
    with np.load(take / "latents.npz") as data:
        assert data["ws"].shape == (25, 10, 64) or data["ws"].shape[0] == 25
        assert int(data["frames_done"]) == 25 and bool(data["complete"])
        assert np.isfinite(data["ws_smooth"]).all()
        assert int(data["face_found"].sum()) > 20  # the crops hold the speaker's face
    assert Project.open(project.root).status("reenact") == "done"

    from studio.jobs.reenact import render_take_job

    preview = render_take_job(Project.open(project.root), "speech", tmp_path / "preview", mark_export=False,
                              frames=slice(0, 2))
    assert preview.frames == 2 and Project.open(project.root).status("export") != "done"
    out = tmp_path / "speech.mp4"
    assert main(["render", str(project.root), "--take", "speech", "--paste-back", "--out", str(out)]) == 0
    assert Project.open(project.root).status("export") == "done"
    small = tmp_path / "small.mp4"
    assert main(["render", str(project.root), "--take", "speech", "--paste-back", "--height", "64",
                 "--out", str(small)]) == 0
    from personalize.video import probe_video

    assert (probe_video(small).height, probe_video(small).width) == (64, 64)  # the 128 px clip, halved
    assert main(["render", str(project.root), "--take", "speech", "--height", "5", "--out", str(small)]) == 2
    info = stream_info(out)
    assert info["frames"] == 25
    assert info["fps"] == pytest.approx(25.0)
    assert info["audio"], "the driving audio must survive export"

    frames_dir = tmp_path / "frames"
    assert main(["render", str(project.root), "--take", "speech", "--side-by-side", "--out", str(frames_dir)]) == 0
    pngs = sorted(frames_dir.glob("*.png"))
    assert len(pngs) == 25
    gif = tmp_path / "speech.gif"
    assert main(["render", str(project.root), "--take", "speech", "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0

    # a semantic edit through the editing engineer's directions module changes the frames
    import torch

    from editing.directions import Direction, save_direction

    save_direction(project.directions_dir, Direction("smile", torch.ones(1, 64) * 3.0))
    edited_dir = tmp_path / "edited"
    capsys.readouterr()
    assert main(["render", str(project.root), "--take", "speech", "--edit", "smile=1.5",
                 "--out", str(edited_dir)]) == 0
    assert "edits: " in capsys.readouterr().out  # how often P_beta shortened the edit, in words
    from personalize.video import read_image

    crops_dir = tmp_path / "crops"
    assert main(["render", str(project.root), "--take", "speech", "--out", str(crops_dir)]) == 0
    assert not np.array_equal(read_image(edited_dir / "000003.png"), read_image(crops_dir / "000003.png"))
    assert main(["render", str(project.root), "--take", "speech", "--edit", "nosuch=1",
                 "--out", str(edited_dir)]) == 2
    assert "No direction named 'nosuch'" in capsys.readouterr().err

    # resuming a finished take re-optimizes nothing; a different video under the same name is refused
    assert main(["reenact", str(project.root), "--name", "speech", "--steps", "1", "--lr", "0.1",
                 "--device", "cpu"]) == 0
    assert "0 optimized this run" in capsys.readouterr().out
    other = cut_clip(MEDIA / "driving_man_smile_wink_3s.mp4", tmp_path / "other.mp4", 0.2, size=128)
    assert main(["reenact", str(project.root), "--driving", str(other), "--name", "speech", "--steps", "1"]) == 2
    assert "another driving video" in capsys.readouterr().err


def test_reenact_needs_a_personalized_project(tmp_path, clip, capsys) -> None:
    project = Project.create(tmp_path / "new.studio")
    code = main(["reenact", str(project.root), "--driving", str(clip), "--name", "t"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'personalize' stage" in err and "studio-cli personalize" in err


def test_render_reports_missing_take_style_and_edit(tmp_path, capsys) -> None:
    project = _personalized_project(tmp_path / "p.studio")
    assert main(["render", str(project.root), "--take", "nope", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "No take named 'nope'" in capsys.readouterr().err
    take = project.take_dir("t")
    take.mkdir(parents=True)
    (take / "latents.npz").write_bytes(b"garbage")
    assert main(["render", str(project.root), "--take", "t", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["render", str(project.root), "--take", "t", "--out", str(tmp_path / "x.avi3")]) == 2


def test_render_edits_and_styles_go_through_the_job(tmp_path, monkeypatch) -> None:
    """--edit/--style reach render_take_job as edits/style (the editing engineer's flags)."""
    import studio.jobs.reenact as job

    seen = {}

    def fake(project, take, out, **kwargs):
        seen.update(kwargs, take=take)

        class R:
            frames, fps, path, kind, edit_report = 1, 25.0, Path(out), "mp4", None
        return R()

    monkeypatch.setattr(job, "render_take_job", fake)
    project = _personalized_project(tmp_path / "p.studio")
    assert main(["render", str(project.root), "--take", "t", "--edit", "smile=1.5", "--edit", "age=-1",
                 "--style", "sketch", "--out", str(tmp_path / "x.mp4")]) == 0
    assert seen["edits"] == ["smile=1.5", "age=-1"] and seen["style"] == "sketch"


def test_a_driving_file_that_is_no_video_is_refused_before_any_network_loads(tmp_path, capsys, studio_cache) -> None:
    """A one-shot mode with none of its weights present: the unreadable driving video is what the
    user hears about (and fixes) first, without a traceback."""
    project = Project.create(tmp_path / "p.studio")
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert main(["reenact", str(project.root), "--backend", "directions", "--driving", str(bad), "--name", "t",
                 "--source", str(MEDIA / "aligned" / "pitt.jpg")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable video" in err and "Traceback" not in err and "directions-a" not in err
