"""The one-shot modes end to end through studio-cli on the CPU, with the official files.

The weights cache holds the official files in their official formats, filled with the
reference's deterministic weights (``tests/_oneshot_files.py``): full-size networks, so the
flows load exactly what a user imports; the clips are a few frames long and DiffusionAct runs 2 +
2 DDIM steps to keep the CPU cost small. Bad input: missing weights (which file, how to get it),
missing FLAME with and without ``--landmarks mediapipe``, a wrong or truncated file imported
under a name, a source image without a face.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personalize.video import probe_video, read_image, write_png
from studio.cli import main
from studio.project import Project
from studio.weights import REGISTRY
from tests._oneshot_files import write_diffusionact_files, write_voxceleb_files
from tests._reenact_helpers import cut_clip, stream_info
from tests.conftest import MEDIA

PORTRAIT = MEDIA / "aligned" / "pitt.jpg"
VOXCELEB = {"stylegan2-voxceleb", "e4e-voxceleb", "deca", "arcface-irse50", "hyperreenact-net", "directions-a"}


@pytest.fixture(scope="session")
def official_files(tmp_path_factory) -> Path:
    """One folder with every one-shot file (written once per session)."""
    folder = tmp_path_factory.mktemp("oneshot-weights")
    write_voxceleb_files(folder, VOXCELEB)
    write_diffusionact_files(folder, official_landmarks=True)
    return folder


def _cache(tmp_path: Path, monkeypatch, official_files: Path | None, names: set[str]) -> Path:
    """A weights cache with links to ``names`` of the official files (FLAME's embedding: a synthetic one)."""
    cache = tmp_path / "weights"
    cache.mkdir()
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(cache))
    entry = REGISTRY["flame-landmarks"]             # the real file's size and hash are in the registry
    monkeypatch.setitem(REGISTRY, "flame-landmarks", dataclasses.replace(entry, size=None, sha256=None))
    for name in names:
        (cache / REGISTRY[name].filename).symlink_to(official_files / REGISTRY[name].filename)
    return cache


@pytest.fixture(scope="module")
def driving_clip(tmp_path_factory) -> Path:
    """5 frames (0.2 s at 25 fps) of the speech clip, with its audio."""
    return cut_clip(MEDIA / "driving_speech_audio_8s.mp4", tmp_path_factory.mktemp("clip") / "speech.mp4", 0.2, size=256)


@pytest.fixture(scope="module")
def prepared_scan(tmp_path_factory) -> Path:
    """A project whose self-scan (half a second of a real one) is prepared, not personalized."""
    from studio.jobs.prepare import prepare_scan

    folder = tmp_path_factory.mktemp("scan")
    clip = cut_clip(MEDIA / "selfscan_woman2_12s.mp4", folder / "scan.mp4", 0.5)
    project = Project.create(folder / "anna.studio")
    prepare_scan(project, clip, size=256)
    return project.root


def _reenact(project: Path, backend: str, driving: Path | None, *extra: str, name: str = "t") -> list[str]:
    args = ["reenact", str(project), "--backend", backend, "--name", name, "--device", "cpu", *extra]
    return args + (["--driving", str(driving)] if driving else [])


# ------------------------------------------------------------------------------------ flows
@pytest.mark.slow  # ~1-2 min: full-size networks on a 2-core CPU (+ the session's files, once: ~1 min)
def test_hyperreenact_take_right_after_prepare(official_files, prepared_scan, driving_clip, tmp_path, monkeypatch,
                                               capsys):
    _cache(tmp_path, monkeypatch, official_files, VOXCELEB)
    project = Project.open(prepared_scan)
    assert project.status("personalize") == "not done"
    assert main(_reenact(project.root, "hyperreenact", driving_clip)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "take 't' (hyperreenact, source: self-scan frame" in out and "5 rendered this run" in out
    take = Project.open(project.root)
    info = json.loads(take.track_info_path("t").read_text())
    assert (info["backend"], info["output"], info["n_frames"], info["fps"]) == ("hyperreenact", "images", 5, 25.0)
    assert take.take_backend("t") == "hyperreenact" and take.take_is_complete("t")
    assert take.status("reenact") == "done"
    frames = sorted(take.image_take("t").frames_dir.glob("*.png"))
    assert len(frames) == 5 and read_image(frames[0]).shape == (256, 256, 3)

    out_mp4 = tmp_path / "t.mp4"
    assert main(["render", str(project.root), "--take", "t", "--paste-back", "--out", str(out_mp4)]) == 0
    video = stream_info(out_mp4)
    assert (video["frames"], video["fps"], video["audio"]) == (5, pytest.approx(25.0), True)
    assert (probe_video(out_mp4).width, probe_video(out_mp4).height) == (256, 256)   # the driving video's size
    sbs = tmp_path / "sbs"
    assert main(["render", str(project.root), "--take", "t", "--side-by-side", "--out", str(sbs)]) == 0
    pair = read_image(sbs / "000002.png")
    assert pair.shape == (256, 512, 3) and np.array_equal(pair[:, 256:], read_image(frames[2]))
    assert main(["render", str(project.root), "--take", "t", "--edit", "smile=1", "--out", str(tmp_path / "e")]) == 2
    assert "semantic edits and styles cannot apply" in capsys.readouterr().err

    # resume (no --backend: the take's own mode): the missing frame is rendered from the cached
    # source state, the others are kept. (Other inputs under the same name: tests/test_oneshot_takes.py.)
    kept = read_image(frames[1])
    frames[4].unlink()
    assert main(["reenact", str(project.root), "--name", "t", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 rendered this run" in out and "cached source was reused" in out
    assert np.array_equal(read_image(frames[1]), kept) and frames[4].is_file()


@pytest.mark.slow  # ~30-50 s
def test_directions_take_from_a_photo_without_preparing(official_files, driving_clip, tmp_path, monkeypatch, capsys):
    _cache(tmp_path, monkeypatch, official_files, VOXCELEB - {"hyperreenact-net", "arcface-irse50"})
    project = Project.create(tmp_path / "new.studio")
    assert main(_reenact(project.root, "directions", driving_clip, "--source", str(PORTRAIT))) == 0, \
        capsys.readouterr().err
    take = Project.open(project.root)
    assert take.take_backend("t") == "directions" and take.take_is_complete("t")
    assert np.array_equal(read_image(take.image_take("t").source_crop_path).shape, (256, 256, 3))
    out = tmp_path / "t.mp4"
    assert main(["render", str(project.root), "--take", "t", "--paste-back", "--height", "128", "--out", str(out)]) == 0
    video = stream_info(out)
    assert (video["frames"], video["fps"], video["audio"]) == (5, pytest.approx(25.0), True)
    gif = tmp_path / "t.gif"
    assert main(["render", str(project.root), "--take", "t", "--out", str(gif)]) == 0 and gif.stat().st_size > 0


@pytest.mark.slow  # ~2-3 min: 6 calls (2 + 2x2 steps) of the full-size 256-px UNet on a 2-core CPU
def test_diffusionact_take_with_mediapipe_landmarks(official_files, tmp_path, monkeypatch, capsys):
    _cache(tmp_path, monkeypatch, official_files, {"diffusionact-net"})
    clip = cut_clip(MEDIA / "driving_speech_audio_8s.mp4", tmp_path / "two.mp4", 0.08, size=256)
    project = Project.create(tmp_path / "p.studio")
    # without FLAME: a clear message naming both ways out
    assert main(_reenact(project.root, "diffusionact", clip, "--source", str(PORTRAIT))) == 2
    err = capsys.readouterr().err
    assert "flame.is.tue.mpg.de" in err and "--landmarks mediapipe" in err and "studio-cli models fetch" in err
    args = _reenact(project.root, "diffusionact", clip, "--source", str(PORTRAIT), "--landmarks", "mediapipe",
                    "--steps", "2", "--inversion-steps", "2")
    assert main(args) == 0, capsys.readouterr().err
    take = Project.open(project.root)
    info = json.loads(take.track_info_path("t").read_text())
    assert info["settings"] == {"landmarks": "mediapipe", "steps": 2, "inversion_steps": 2, "unet_precision": "fp32"}
    assert info["n_frames"] == 2 and not info["source_reused"]
    from safetensors.torch import load_file

    state = load_file(str(take.image_take("t").source_state_path))
    assert state["x_T"].shape == (1, 3, 256, 256) and state["mesh"].shape == (1, 478, 3)   # the cached inversion
    out = tmp_path / "t.mp4"
    assert main(["render", str(project.root), "--take", "t", "--paste-back", "--out", str(out)]) == 0
    video = stream_info(out)
    assert (video["frames"], video["fps"], video["audio"]) == (2, pytest.approx(25.0), True)

    # the official landmark path's networks load from the official files (EMOCA's Lightning
    # checkpoint, FLAME's chumpy pickle, the gaze network) and draw a source's conditioning image
    from optimize.backends.diffusionact import EmocaConditioner
    from optimize.nets.diffusionact_checkpoints import load_emoca_encoders, load_gaze_network
    from optimize.nets.flame import FlameLandmarks, read_flame_model, read_landmark_embedding
    from optimize.oneshot_frames import source_face
    from personalize.faces import detect_landmarks

    file = lambda name: official_files / REGISTRY[name].filename  # noqa: E731
    conditioner = EmocaConditioner(load_emoca_encoders(file("emoca-v2"))[0],
                                   FlameLandmarks(read_flame_model(file("flame")),
                                                  read_landmark_embedding(file("flame-landmarks"))),
                                   load_gaze_network(file("gaze-xgaze")))
    image = read_image(PORTRAIT)
    source = source_face(image, detect_landmarks(image), "ffhq").batch()
    stickman, codes = conditioner(source.images, source.lm68)
    assert stickman.shape == (1, 3, 256, 256) and codes["shape"].shape == (1, 100)


# ------------------------------------------------------------------------------------ bad input
def test_missing_weights_say_which_file_and_how_to_get_it(driving_clip, studio_cache, capsys):
    project = Project.create(studio_cache.parent / "p.studio")
    assert main(_reenact(project.root, "hyperreenact", driving_clip, "--source", str(PORTRAIT))) == 2
    err = capsys.readouterr().err
    assert "missing pretrained weights 'stylegan2-voxceleb'" in err and "studio-cli models fetch stylegan2-voxceleb" in err
    assert not (project.take_dir("t") / "frames").exists()


def test_missing_flame_with_and_without_mediapipe_landmarks(driving_clip, studio_cache, capsys):
    project = Project.create(studio_cache.parent / "p.studio")
    studio_cache.mkdir()
    (studio_cache / REGISTRY["diffusionact-net"].filename).write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert main(_reenact(project.root, "diffusionact", driving_clip, "--source", str(PORTRAIT))) == 2
    err = capsys.readouterr().err
    assert "needs gaze-xgaze, emoca-v2, flame, flame-landmarks" in err
    assert "flame.is.tue.mpg.de" in err and "--landmarks mediapipe" in err
    # with MediaPipe landmarks FLAME is not needed: the next problem is the (bad) model file itself
    assert main(_reenact(project.root, "diffusionact", driving_clip, "--source", str(PORTRAIT),
                         "--landmarks", "mediapipe")) == 2
    err = capsys.readouterr().err
    assert "diffusionact_model.pt" in err and "flame" not in err.lower()
    assert "studio-cli models fetch diffusionact-net" in err       # the next step names the file's entry


def _placeholders(cache: Path, names: set[str]) -> None:
    """Files that are present for the weights manager (unhashed entries: any file) but never loaded."""
    cache.mkdir(exist_ok=True)
    for name in names:
        (cache / REGISTRY[name].filename).write_bytes(b"never loaded")


def test_wrong_and_truncated_files_imported_under_a_name(driving_clip, studio_cache, tmp_path, capsys):
    from studio.weights import read_pins

    _placeholders(studio_cache, {"stylegan2-voxceleb", "e4e-voxceleb", "deca"})
    wrong = tmp_path / "downloads" / "A_matrix.pt"
    wrong.parent.mkdir()
    torch.save({"e": {"styles.0.linear.weight": torch.zeros(2, 2)}}, wrong)   # another network's file
    assert main(["models", "import", "directions-a", str(wrong)]) == 0
    assert "directions-a" in read_pins()
    project = Project.create(tmp_path / "p.studio")
    assert main(_reenact(project.root, "directions", driving_clip, "--source", str(PORTRAIT))) == 2
    err = capsys.readouterr().err
    assert "A_matrix.pt has no 'A_matrix' entry" in err
    assert "studio-cli models fetch directions-a" in err                # which file, how to get it
    assert "directions-a" not in read_pins()                              # the bad copy no longer blocks the good one
    truncated = tmp_path / "downloads" / "cut.pt"
    data = wrong.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["models", "import", "directions-a", str(truncated)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_a_source_image_without_a_face(driving_clip, studio_cache, tmp_path, capsys):
    _placeholders(studio_cache, VOXCELEB)
    blank = tmp_path / "wall.png"
    write_png(blank, np.full((256, 256, 3), 180, np.uint8))
    project = Project.create(tmp_path / "p.studio")
    assert main(_reenact(project.root, "hyperreenact", driving_clip, "--source", str(blank))) == 2
    assert "No face was found in the source image wall.png" in capsys.readouterr().err
    assert main(_reenact(project.root, "hyperreenact", driving_clip)) == 2     # no prepared scan, no source
    err = capsys.readouterr().err
    assert "self-scan is not prepared" in err and "studio-cli prepare" in err


def test_options_of_another_mode_are_refused(tmp_path, capsys):
    project = Project.create(tmp_path / "p.studio")
    assert main(["reenact", str(project.root), "--name", "t", "--source", "1"]) == 2
    assert "apply to the one-shot modes" in capsys.readouterr().err
    assert main(["reenact", str(project.root), "--name", "t", "--backend", "directions", "--lr", "0.1"]) == 2
    assert "personal generator only" in capsys.readouterr().err
