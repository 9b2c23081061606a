"""One Qt capture session: a camera or a frame input -> a video sink (frames) and a recorder (file).

Shared by the Capture page's webcam panel and the Re-enact page's Live panel, so a
``QVideoFrameInput`` (tests, virtual sources) and a ``QCamera`` feed exactly the same code after
the source.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class CaptureParts:
    """The session's objects; keep a reference to all of them while it runs."""

    session: Any
    sink: Any
    recorder: Any
    audio: Any = None


def open_capture_session(attach_source: Callable[[Any], None], on_frame: Callable[[Any], None], *,
                         with_audio: bool = False) -> CaptureParts:
    """A ``QMediaCaptureSession`` whose source ``attach_source(session)`` sets, whose video sink
    calls ``on_frame(QVideoFrame)`` on the UI thread, and whose ``QMediaRecorder`` writes the file
    (with the default microphone when ``with_audio`` and one exists)."""
    from PySide6.QtMultimedia import (QAudioInput, QMediaCaptureSession, QMediaDevices, QMediaRecorder,
                                      QVideoSink)

    session = QMediaCaptureSession()
    attach_source(session)
    sink = QVideoSink()
    sink.videoFrameChanged.connect(on_frame)
    session.setVideoSink(sink)
    recorder = QMediaRecorder()
    recorder.setQuality(QMediaRecorder.Quality.HighQuality)
    session.setRecorder(recorder)
    audio = None
    if with_audio and not QMediaDevices.defaultAudioInput().isNull():
        audio = QAudioInput()
        session.setAudioInput(audio)
    return CaptureParts(session, sink, recorder, audio)


def list_cameras(box: Any) -> tuple[list, str | None]:
    """The cameras Qt sees, each added to the combo ``box`` by its description.

    Returns (cameras, None), or ([], why) when there is no multimedia backend at all.
    """
    try:
        from PySide6.QtMultimedia import QMediaDevices
        cameras = list(QMediaDevices.videoInputs())
    except Exception as exc:  # noqa: BLE001 - no multimedia backend: the caller says so
        return [], str(exc)
    for camera in cameras:
        box.addItem(camera.description())
    return cameras, None
