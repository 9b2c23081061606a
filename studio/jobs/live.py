"""Live driving sessions: frames from a camera or a video file -> the avatar, to sinks; recordings
become normal takes.

Shared by ``studio-cli live`` and the GUI's Live panel (which feeds frames from Qt's camera
session and records camera + microphone with Qt's recorder). A *sink* receives frames
(``send(rgb)``, ``close()``): the virtual camera (``VirtualCamera``, the optional ``pyvirtualcam``
package), a video file (``VideoFileSink``), or anything a test injects.

A session ends when the frames end, on cancel, or when the source fails (a camera unplugged
mid-session): it always closes its sinks, and what was recorded is kept and can be made a take
(``save_live_take``: the recording is re-enacted in the fast mode, so the take has the usual
files, the same smoothing and render as any other take, and the recording's audio).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from optimize.latent_space import PersonalizedSpace
from optimize.live import LiveDriver, LiveFrame
from personalize.errors import Cancelled, MediaError, UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.project import Project

VIRTUAL_CAMERA_HINT = ("On Linux load the v4l2loopback kernel module (package v4l2loopback-dkms; "
                       "'exclusive_caps=1' makes browsers see it); on Windows and macOS install OBS "
                       "Studio and start its virtual camera once. Then start the live session again.")


class FrameSink(Protocol):
    """Where live frames go: (H,W,3) uint8 RGB in, one call per frame."""

    def send(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- sinks
class VirtualCamera:
    """The avatar as a webcam for video calls, through ``pyvirtualcam`` (an optional extra).

    Frames of another size than the camera's are resized (the camera's size is fixed when opened).
    """

    def __init__(self, camera: Any, width: int, height: int) -> None:
        self._camera, self.width, self.height = camera, width, height
        self.device = str(getattr(camera, "device", "virtual camera"))

    @classmethod
    def open(cls, width: int, height: int, fps: float = 30.0, backend: Any = None) -> "VirtualCamera":
        """Open the system's virtual camera; UserError saying how to get one when none exists.

        ``backend``: the ``pyvirtualcam`` module (tests inject a stand-in); imported when None.
        """
        if backend is None:
            try:
                import pyvirtualcam as backend  # type: ignore[import-not-found, no-redef]
            except ImportError as exc:
                raise UserError("Virtual camera output needs the optional 'pyvirtualcam' package, which "
                                "is not installed.",
                                "Install the studio with its 'live' extra, then start the session again.") from exc
        try:
            camera = backend.Camera(width=int(width), height=int(height), fps=float(fps))
        except (RuntimeError, OSError, ValueError) as exc:
            raise UserError(f"No virtual camera device was found ({exc}).", VIRTUAL_CAMERA_HINT) from exc
        return cls(camera, int(width), int(height))

    def send(self, frame: np.ndarray) -> None:
        import cv2

        if frame.shape[:2] != (self.height, self.width):
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self._camera.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._camera.close()


class VideoFileSink:
    """Frames pushed one by one into an H.264 MP4 (``personalize.video.write_video`` on a thread,
    so the file is written atomically and the caller never waits for the encoder)."""

    _END = object()

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.frames = 0
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(float(fps),), daemon=True)
        self._thread.start()

    def _run(self, fps: float) -> None:
        from personalize.video import write_video

        ended = False

        def frames(first: np.ndarray) -> Iterator[np.ndarray]:
            nonlocal ended
            frame = first
            while frame is not self._END:
                yield frame
                frame = self._queue.get()
            ended = True

        first = self._queue.get()
        if first is self._END:
            return  # closed before any frame: nothing to write
        try:
            write_video(self.path, frames(first), fps)
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self._error = exc
            while not ended and self._queue.get() is not self._END:  # keep the producer from blocking
                pass

    def send(self, frame: np.ndarray) -> None:
        if self._error is None:
            self._queue.put(np.array(frame, copy=True))
            self.frames += 1

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise MediaError(f"Could not write {self.path} ({self._error}).",
                             "Check the disk space and the folder's permissions.") from self._error


def side_by_side_frame(camera: np.ndarray, avatar: np.ndarray | None) -> np.ndarray:
    """camera | avatar at the avatar's height (the camera alone before the first avatar)."""
    import cv2

    height = avatar.shape[0] if avatar is not None else camera.shape[0]
    width = max(1, int(round(camera.shape[1] * height / camera.shape[0])))
    left = cv2.resize(camera, (width, height), interpolation=cv2.INTER_AREA)
    right = avatar if avatar is not None else np.zeros((height, height, 3), np.uint8)
    return np.concatenate([left, right], axis=1)


# ----------------------------------------------------------------------------- sources
def camera_frames(index: int = 0, cancel: CancelToken = NEVER_CANCELLED) -> Iterator[np.ndarray]:
    """RGB frames of an OpenCV camera (headless sessions); MediaError when there is none.

    A camera that stops delivering mid-session (unplugged) raises MediaError after the frames it gave.
    """
    import cv2

    capture = cv2.VideoCapture(int(index))
    if not capture.isOpened():
        capture.release()
        raise MediaError(f"No camera found at index {index}.",
                         "Plug a camera in (or close the program using it), or drive from a video file.")
    try:
        while not cancel.cancelled:
            ok, bgr = capture.read()
            if not ok:
                raise MediaError("The camera stopped delivering frames.",
                                 "Check its cable; what was recorded so far is kept.")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


# ----------------------------------------------------------------------------- sessions
def open_live_driver(project: Project, device: torch.device | str = "cpu") -> LiveDriver:
    """The project's generator and motion model as a ``LiveDriver`` (ProjectError when missing)."""
    from studio.jobs.motion import motion_predictor
    from studio.jobs.reenact import enable_fast_math, load_personalized_generator

    project.require("personalize", "Live driving")
    device = torch.device(device)
    generator = load_personalized_generator(project, device)
    space = PersonalizedSpace(project.load_anchors(), generator.num_ws, device=device)
    predictor = motion_predictor(project, space, device)
    enable_fast_math(device)
    return LiveDriver(generator, predictor, device=device)


@dataclass
class LiveReport:
    """How a session went: frames in, frames with a face, wall time and frames per second."""

    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    stopped_by: str = "end"
    """'end' (frames ended), 'cancel', or 'source' (the source failed; see ``source_error``)."""
    source_error: str = ""
    part_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class FpsMeter:
    """Frames per second over a sliding window of the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self.window = int(window)
        self._times: list[float] = []

    def tick(self, now: float | None = None) -> float:
        self._times.append(time.perf_counter() if now is None else now)
        self._times = self._times[-self.window:]
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(1e-9, self._times[-1] - self._times[0])


def run_live(driver: LiveDriver, frames: Iterable[np.ndarray], *, sinks: Iterable[FrameSink] = (),
             recorder: FrameSink | None = None,
             on_frame: Callable[[np.ndarray, LiveFrame, float], None] | None = None,
             total: int = 0, progress: ProgressFn = no_progress,
             cancel: CancelToken = NEVER_CANCELLED) -> LiveReport:
    """Drive the avatar from ``frames`` until they end, ``cancel`` is set or the source fails.

    sinks get every avatar frame (from the first face on); recorder gets every camera frame;
    on_frame(camera, live_frame, fps) is called per frame (the GUI's preview). Sinks and the
    recorder are closed in every case; a source that fails ends the session (``stopped_by``
    'source') instead of raising, so what was recorded is kept.
    """
    sinks = list(sinks)
    report = LiveReport()
    meter = FpsMeter()
    started = time.perf_counter()
    iterator = iter(frames)
    try:
        while True:
            if cancel.cancelled:
                report.stopped_by = "cancel"
                break
            try:
                camera = next(iterator)
            except StopIteration:
                break
            except (MediaError, OSError, RuntimeError) as exc:
                report.stopped_by, report.source_error = "source", str(exc)
                break
            if recorder is not None:
                recorder.send(camera)
            live = driver.process(camera)
            report.frames += 1
            report.faces += int(live.face_found)
            for part, seconds in live.seconds.items():
                report.part_seconds[part] = report.part_seconds.get(part, 0.0) + seconds
            if live.avatar is not None:
                for sink in sinks:
                    sink.send(live.avatar)
            fps = meter.tick()
            if on_frame is not None:
                on_frame(camera, live, fps)
            progress(report.frames, total, f"live: {fps:.1f} fps")
    finally:
        report.seconds = time.perf_counter() - started
        errors = []
        for sink in [*sinks, *([recorder] if recorder is not None else [])]:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close every sink, report the first problem
                errors.append(exc)
        if errors and not isinstance(errors[0], Cancelled):
            raise errors[0]
    report.part_seconds = {k: v / max(1, report.frames) for k, v in report.part_seconds.items()}
    return report


def save_live_take(project: Project, recording: str | Path, name: str, device: torch.device | str = "cpu",
                   progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> dict[str, Any]:
    """Make a live recording (camera video, with the microphone's audio when it has some) a take:
    the fast mode on it, like ``studio-cli reenact --mode fast``; returns track.json's dict."""
    from studio.jobs.reenact import reenact_take

    recording = Path(recording)
    if not recording.is_file():
        raise MediaError(f"The live recording {recording} was not saved.", "Record again.")
    return reenact_take(project, recording, name, device=device, mode="fast", progress=progress, cancel=cancel)


__all__ = ["FrameSink", "VirtualCamera", "VideoFileSink", "LiveReport", "FpsMeter", "run_live",
           "open_live_driver", "save_live_take", "camera_frames", "side_by_side_frame", "VIRTUAL_CAMERA_HINT"]
