"""The motion-model stage, the fast modes and live driving through studio-cli and the jobs, on a
project whose generator is the known-answer stand-in; bad input: no motion model, a stale one, no
camera, a camera lost mid-session, no virtual camera."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from optimize.fast_reenact import FAST_FEEDBACK, REFINE_FEEDBACK
from optimize.track import load_track
from personalize.errors import MediaError, UserError
from studio.cli import main
from studio.project import Project
from tests._fast_helpers import SELFSCAN, standin_project
from tests._reenact_helpers import cut_clip, stream_info

FAST_TRAINING = ["--steps", "2", "--samples", "24", "--batch", "2", "--fit-steps", "50", "--device", "cpu"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """0.5 s (15 frames) of the self-scan at 256 px, with its audio: a driving video of her."""
    return cut_clip(SELFSCAN, tmp_path_factory.mktemp("clip") / "selfscan_05s.mp4", 0.5, size=256)


@pytest.fixture()
def project(tmp_path, monkeypatch):
    return standin_project(tmp_path / "anna.studio", monkeypatch)[0]


class FakeVirtualCameras:
    """A stand-in for the pyvirtualcam module: records what a Camera receives, or has no device."""

    def __init__(self, device_exists: bool = True) -> None:
        self.device_exists = device_exists
        self.frames: list[np.ndarray] = []
        self.closed = False
        outer = self

        class Camera:
            device = "/dev/video-fake"

            def __init__(self, width: int, height: int, fps: float) -> None:
                if not outer.device_exists:
                    raise RuntimeError("'v4l2loopback' module not loaded or no free device")
                self.width, self.height = width, height

            def send(self, frame: np.ndarray) -> None:
                assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8
                outer.frames.append(frame)

            def close(self) -> None:
                outer.closed = True

        self.Camera = Camera

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pyvirtualcam")
        module.Camera = self.Camera
        return module


def test_fast_mode_needs_the_motion_model_and_says_which_stage(project, clip, capsys) -> None:
    code = main(["reenact", str(project.root), "--driving", str(clip), "--name", "t", "--mode", "fast"])
    assert code == 2
    err = capsys.readouterr().err
    assert "need the person's motion model, which has not been trained yet" in err
    assert f"studio-cli motion-model {project.root}" in err
    assert not project.track_path("t").exists()            # said before any preparation
    assert main(["live", str(project.root), "--video", str(clip)]) == 2
    assert "motion model" in capsys.readouterr().err
    assert main(["reenact", str(project.root), "--driving", str(clip), "--name", "t", "--mode", "refine",
                 "--refine-steps", "0"]) == 2
    assert "Refine steps must be at least 1" in capsys.readouterr().err


@pytest.mark.slow  # ~60 s idle: 2 training steps, 15 driving frames prepared twice, renders
def test_motion_model_fast_take_live_session_and_stale_model(project, clip, tmp_path, capsys,
                                                            monkeypatch) -> None:
    assert main(["motion-model", str(project.root), *FAST_TRAINING]) == 0
    assert "held-out keypoint error" in capsys.readouterr().out
    project = Project.open(project.root)
    assert project.status("motion") == "done" and project.has_motion_model()
    assert project.read_motion_info()["steps"] == 2
    assert main(["info", str(project.root)]) == 0
    assert "motion" in capsys.readouterr().out

    # a fast take: the usual take files, rendered with the driving audio
    assert main(["reenact", str(project.root), "--driving", str(clip), "--name", "fast", "--mode", "fast",
                 "--device", "cpu"]) == 0
    record = json.loads(project.track_info_path("fast").read_text())
    # fast's feedback renders each frame FAST_FEEDBACK times while tracking (every frame of this clip has a face)
    assert record["mode"] == "fast" and record["n_frames"] == 15
    assert record["generator_passes_this_run"] == FAST_FEEDBACK * 15
    out = tmp_path / "fast.mp4"
    assert main(["render", str(project.root), "--take", "fast", "--paste-back", "--out", str(out)]) == 0
    info = stream_info(out)
    assert info["frames"] == 15 and info["audio"]

    # refine: the exact mode's first frame, then the closed loop and one optimizer step a frame (3 frames)
    short = cut_clip(SELFSCAN, tmp_path / "short.mp4", 0.1, size=256)
    assert main(["reenact", str(project.root), "--driving", str(short), "--name", "refined", "--mode", "refine",
                 "--refine-steps", "1", "--device", "cpu"]) == 0
    refined = json.loads(project.track_info_path("refined").read_text())
    assert refined["mode"] == "refine" and refined["n_frames"] == 3
    first = int(load_track(project.track_path("refined")).steps[0])
    assert first >= 15 and refined["generator_passes_this_run"] == first + (REFINE_FEEDBACK + 1) * 2

    # live from the video file: camera | avatar to a file, the avatar to a virtual camera, a take
    cameras = FakeVirtualCameras()
    monkeypatch.setitem(sys.modules, "pyvirtualcam", cameras.module())
    live_out = tmp_path / "live.mp4"
    assert main(["live", str(project.root), "--video", str(clip), "--out", str(live_out), "--virtual-camera",
                 "--record", "live1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "15 frames (15 with a face)" in printed and "fps" in printed
    assert stream_info(live_out)["frames"] == 15 and len(cameras.frames) == 15 and cameras.closed
    assert Project.open(project.root).take_is_complete("live1")
    assert main(["render", str(project.root), "--take", "live1", "--out", str(tmp_path / "live1.mp4")]) == 0

    # personalizing again makes the motion model stale: the fast modes refuse it until retrained
    project.mark_done("personalize")
    assert main(["reenact", str(project.root), "--driving", str(clip), "--name", "again", "--mode", "fast"]) == 2
    assert "is out of date" in capsys.readouterr().err


def test_virtual_camera_without_the_package_or_a_device(monkeypatch) -> None:
    from studio.jobs.live import VirtualCamera

    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)   # the optional extra is not installed
    with pytest.raises(UserError, match="optional 'pyvirtualcam' package") as missing:
        VirtualCamera.open(64, 64)
    assert "'live' extra" in str(missing.value)
    with pytest.raises(UserError, match="No virtual camera device was found") as none:
        VirtualCamera.open(64, 64, backend=FakeVirtualCameras(device_exists=False).module())
    assert "v4l2loopback" in str(none.value) and "OBS" in str(none.value)
    cameras = FakeVirtualCameras()
    camera = VirtualCamera.open(32, 32, backend=cameras.module())
    camera.send(np.zeros((64, 64, 3), np.uint8))                # resized to the camera's size
    camera.close()
    assert cameras.frames[0].shape == (32, 32, 3) and cameras.closed


def test_no_camera_and_a_camera_lost_mid_session_keep_what_was_recorded(tmp_path) -> None:
    """The session stops cleanly when its source fails: sinks closed, the recording kept."""
    from personalize.video import iter_frames, probe_video
    from studio.jobs.live import VideoFileSink, camera_frames, run_live

    with pytest.raises(MediaError, match="No camera found at index 97"):
        next(camera_frames(97))

    class EchoDriver:
        """The live driver's interface; the avatar is the frame's centre (no model needed here)."""

        def process(self, frame):
            from optimize.live import LiveFrame

            return LiveFrame(frame[8:40, 8:40].copy(), True, None, {"render": 0.001})

    def unplugged_after(n: int):
        for i, frame in enumerate(iter_frames(SELFSCAN)):
            if i == n:
                raise MediaError("The camera stopped delivering frames.", "Check its cable.")
            yield frame[::8, ::8].copy()

    recording = tmp_path / "live_rec.mp4"
    received: list[np.ndarray] = []

    class ListSink:
        closed = False

        def send(self, frame):
            received.append(frame)

        def close(self):
            ListSink.closed = True

    report = run_live(EchoDriver(), unplugged_after(7), sinks=[ListSink()],
                      recorder=VideoFileSink(recording, 30.0))
    assert report.stopped_by == "source" and "stopped delivering" in report.source_error
    assert report.frames == 7 and len(received) == 7 and ListSink.closed and report.fps > 0
    assert probe_video(recording).n_frames == 7                # what was recorded is kept
