"""The Re-enact page's Live panel: webcam -> the avatar at an interactive rate, a virtual camera,
and recordings that become takes.

Threads: Qt's capture session delivers frames on the UI thread (``camera_session``); the panel
converts each to RGB and hands the newest to a ``LiveWorker`` (a QThread) that runs the
``optimize.live.LiveDriver`` (MediaPipe, motion model, one generator pass) and the virtual camera,
and emits the result; only the UI thread touches widgets. Frames that arrive while the worker is
busy replace the waiting one (never a growing queue: the preview shows the present, not a backlog).

Recording uses Qt's recorder on the same session (camera video and the microphone when one
exists); when it stops, ``recorded(path)`` is emitted and the owner turns the file into a take with
the fast mode. A camera that fails mid-session stops the session cleanly; a recording in progress
is finished and kept.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QThread, QTimer, QUrl, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

from studio.gui.pages.capture import qimage_to_rgb
from studio.gui.widgets.camera_session import list_cameras, open_capture_session


def rgb_to_pixmap(rgb: np.ndarray) -> QPixmap:
    """(H,W,3) uint8 RGB -> QPixmap (copied: the array may be reused)."""
    rgb = np.ascontiguousarray(rgb)
    image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class LiveWorker(QThread):
    """Runs the live driver on the newest camera frame; emits ``rendered(camera, avatar, fps, face)``.

    ``make_driver()`` is called on this thread (loading the generator takes seconds); ``sinks``
    (virtual cameras) are fed here too. ``failed(exception)`` ends the worker.
    """

    rendered = Signal(object, object, float, bool)
    failed = Signal(object)
    ready = Signal(int)
    """The driver is loaded; the avatar's side in pixels."""

    def __init__(self, make_driver: Callable[[], Any], sinks: list[Any] | None = None) -> None:
        super().__init__()
        self.make_driver = make_driver
        self.sinks: list[Any] = list(sinks or [])
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._wake = threading.Event()
        self._stop = False
        self.frames_done = 0

    def offer(self, rgb: np.ndarray) -> None:
        """Hand over the newest frame (UI thread); an older one still waiting is dropped."""
        with self._lock:
            self._frame = rgb
        self._wake.set()

    def add_sink(self, sink: Any) -> None:
        with self._lock:
            self.sinks.append(sink)

    def remove_sinks(self) -> list[Any]:
        with self._lock:
            sinks, self.sinks = self.sinks, []
        return sinks

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def run(self) -> None:  # worker thread
        from studio.jobs.live import FpsMeter

        driver = None
        try:
            driver = self.make_driver()
            self.ready.emit(int(getattr(driver, "size", 0)))
            meter = FpsMeter()
            while not self._stop:
                self._wake.wait(0.5)
                self._wake.clear()
                with self._lock:
                    frame, self._frame = self._frame, None
                    sinks = list(self.sinks)
                if frame is None or self._stop:
                    continue
                live = driver.process(frame)
                if live.avatar is not None:
                    for sink in sinks:
                        sink.send(live.avatar)
                self.frames_done += 1
                self.rendered.emit(frame, live.avatar, meter.tick(), live.face_found)
        except BaseException as exc:  # noqa: BLE001 - shown by the panel as a dialog
            self.failed.emit(exc)
        finally:
            for sink in self.remove_sinks():
                try:
                    sink.close()
                except Exception:  # noqa: BLE001 - closing at the end is best effort
                    pass
            if driver is not None:
                driver.close()


class LivePanel(QGroupBox):
    """Camera chooser, Start/Stop, camera | avatar previews with the measured fps, a virtual
    camera switch and Record. Signals: ``recorded(path)`` when a recording is closed,
    ``failed(exception)`` for the owner's error dialog."""

    recorded = Signal(str)
    failed = Signal(object)

    def __init__(self, make_driver: Callable[[], Any], recording_path: Callable[[], Path],
                 parent: QWidget | None = None) -> None:
        super().__init__("Live (drive the avatar with your webcam)", parent)
        from studio.jobs.live import VirtualCamera

        self.make_driver = make_driver          # () -> LiveDriver, called on the worker thread
        self.recording_path = recording_path    # () -> Path of the next recording
        self.open_virtual_camera: Callable[[int, int], Any] = VirtualCamera.open  # tests inject one
        self.camera_box = QComboBox()
        self.start_button = QPushButton("Start live")
        self.start_button.setToolTip("Drive your avatar with the camera (needs the motion model).")
        self.record_button = QPushButton("● Record")
        self.record_button.setToolTip("Record the camera (and microphone) while driving; the recording "
                                      "becomes a normal take (fast mode).")
        self.virtual_box = QCheckBox("Virtual camera")
        self.virtual_box.setToolTip("Send the avatar to a virtual camera, to use it in video calls "
                                    "(needs v4l2loopback on Linux or OBS's virtual camera).")
        self.camera_view = self._screen("Camera")
        self.avatar_view = self._screen("Avatar")
        self.fps_label = QLabel("")
        self.state_label = QLabel("")
        self.state_label.setWordWrap(True)
        self.camera = self.frame_input = self.parts = self.worker = None
        self.fps = 0.0
        self.virtual_camera: Any = None
        self._size = 0
        self._finishing: list = []

        top = QHBoxLayout()
        top.addWidget(QLabel("Camera:"))
        top.addWidget(self.camera_box, 1)
        top.addWidget(self.start_button)
        top.addWidget(self.record_button)
        top.addWidget(self.virtual_box)
        screens = QHBoxLayout()
        screens.addWidget(self.camera_view, 1)
        screens.addWidget(self.avatar_view, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(screens, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.state_label, 1)
        bottom.addWidget(self.fps_label)
        layout.addLayout(bottom)
        self.start_button.clicked.connect(self.toggle)
        self.record_button.clicked.connect(self.toggle_recording)
        self.virtual_box.toggled.connect(self._virtual_toggled)
        self.cameras = self._list_cameras()
        self._update_enabled()

    @staticmethod
    def _screen(text: str) -> QLabel:
        label = QLabel(text)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setMinimumSize(200, 160)
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        label.setStyleSheet("background: #202020; color: #bbb;")
        return label

    def _list_cameras(self) -> list:
        cameras, problem = list_cameras(self.camera_box)
        if problem:
            self.state_label.setText(f"Live driving is unavailable here ({problem}).")
            return []
        if not cameras:
            self.state_label.setText("No camera found. Plug one in and reopen the project to drive "
                                     "the avatar live; takes from video files work without one.")
        return cameras

    @property
    def running(self) -> bool:
        return self.parts is not None

    def recording(self) -> bool:
        from PySide6.QtMultimedia import QMediaRecorder
        return (self.parts is not None
                and self.parts.recorder.recorderState() == QMediaRecorder.RecorderState.RecordingState)

    def _update_enabled(self) -> None:
        self.camera_box.setEnabled(bool(self.cameras) and not self.running)
        self.start_button.setEnabled(bool(self.cameras) or self.running)
        self.start_button.setText("■ Stop live" if self.running else "Start live")
        self.record_button.setEnabled(self.running)
        self.record_button.setText("■ Stop recording" if self.recording() else "● Record")

    # ------------------------------------------------------------------ sessions
    def toggle(self) -> None:
        if self.running:
            self.stop()
        elif self.cameras:
            self.start_camera()

    def start_camera(self) -> None:
        from PySide6.QtMultimedia import QCamera
        self.stop()
        self.camera = QCamera(self.cameras[self.camera_box.currentIndex()])
        self.camera.errorOccurred.connect(lambda _e, text: self.source_lost(f"Camera: {text}"))
        self._start(lambda session: session.setCamera(self.camera))
        self.camera.start()

    def start_frame_source(self, frame_input) -> None:
        """Drive from a ``QVideoFrameInput`` instead of a camera (tests, virtual sources)."""
        self.stop()
        self.frame_input = frame_input
        self._start(lambda session: session.setVideoFrameInput(frame_input))

    def _start(self, attach_source) -> None:
        # the session must end before the window goes (a running QThread must not be destroyed)
        self.window().installEventFilter(self)
        self.parts = open_capture_session(attach_source, self._on_frame, with_audio=True)
        recorder = self.parts.recorder
        recorder.recorderStateChanged.connect(lambda state, r=recorder: self._on_recorder_state(state, r))
        self.parts.recorder.errorOccurred.connect(lambda _e, text: self.state_label.setText(f"Recorder: {text}"))
        self.worker = LiveWorker(self.make_driver)
        self.worker.rendered.connect(self._on_rendered)
        self.worker.failed.connect(self._on_failed)
        self.worker.ready.connect(self._on_ready)
        self.worker.start()
        self.state_label.setText("Loading your generator and motion model…")
        self._update_enabled()

    def _on_ready(self, size: int) -> None:
        self._size = size
        self.state_label.setText("Live: move your head, talk, smile.")
        if self.virtual_box.isChecked():
            self._virtual_toggled(True)

    def stop(self) -> None:
        """End the session: a recording in progress is finished (and kept) first."""
        if self.parts is not None and self.recording():
            self._finishing.append(self.parts)  # alive until the recorder has closed the file
            self.parts.recorder.stop()
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
            worker.wait(10000)
        if self.camera is not None:
            self.camera.stop()
        self.camera = self.frame_input = self.parts = None
        self.virtual_camera = None
        self.fps = 0.0
        self._size = 0
        self._update_enabled()

    def source_lost(self, why: str) -> None:
        """The camera failed mid-session: stop cleanly; a recording so far is kept."""
        was_recording = self.recording()
        self.stop()
        self.state_label.setText(f"{why}. Live driving stopped"
                                 + ("; the recording so far is kept." if was_recording else "."))

    # ------------------------------------------------------------------ frames
    def _on_frame(self, frame) -> None:
        if self.worker is None:
            return
        image = frame.toImage()
        if not image.isNull():
            self.worker.offer(qimage_to_rgb(image))

    def _on_rendered(self, camera: np.ndarray, avatar: np.ndarray | None, fps: float, face: bool) -> None:
        self.fps = fps
        self.camera_view.setPixmap(rgb_to_pixmap(camera).scaled(
            self.camera_view.size(), Qt.AspectRatioMode.KeepAspectRatio))
        if avatar is not None:
            self._size = avatar.shape[0]
            self.avatar_view.setPixmap(rgb_to_pixmap(avatar).scaled(
                self.avatar_view.size(), Qt.AspectRatioMode.KeepAspectRatio))
        self.fps_label.setText(f"{fps:.1f} fps" + ("" if face else " — no face"))

    def _on_failed(self, exc: BaseException) -> None:
        self.stop()
        self.state_label.setText("Live driving stopped.")
        self.failed.emit(exc)

    # ------------------------------------------------------------------ virtual camera
    def _virtual_toggled(self, on: bool) -> None:
        """Open or close the virtual camera (at the avatar's size, once the driver is loaded)."""
        if self.worker is None or not self._size:
            return
        for sink in self.worker.remove_sinks():
            sink.close()
        self.virtual_camera = None
        if not on:
            return
        from personalize.errors import UserError
        try:
            self.virtual_camera = self.open_virtual_camera(self._size, self._size)
        except UserError as exc:
            self.virtual_box.setChecked(False)
            self.state_label.setText(str(exc))
            return
        self.worker.add_sink(self.virtual_camera)

    # ------------------------------------------------------------------ recording
    def toggle_recording(self) -> None:
        if self.parts is None:
            return
        if self.recording():
            self.state_label.setText("Finishing the recording…")
            self.parts.recorder.stop()  # asynchronous: _on_recorder_state emits the file
        else:
            self._target = self.recording_path()
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self.parts.recorder.setOutputLocation(QUrl.fromLocalFile(str(self._target)))
            self.parts.recorder.record()
            self._record_start = time.monotonic()
            self.state_label.setText("Recording… press again to stop; it becomes a take.")
        QTimer.singleShot(0, self._update_enabled)

    def _on_recorder_state(self, state, recorder) -> None:
        from PySide6.QtMultimedia import QMediaRecorder
        self._update_enabled()
        if state != QMediaRecorder.RecorderState.StoppedState:
            return
        self._finishing = [parts for parts in self._finishing if parts.recorder is not recorder]
        location = recorder.actualLocation().toLocalFile() or str(getattr(self, "_target", ""))
        if location and Path(location).is_file():
            self.state_label.setText(f"Saved {Path(location).name}; making it a take…")
            self.recorded.emit(location)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802
        from PySide6.QtCore import QEvent
        if event.type() == QEvent.Type.Close and watched is self.window():
            self.stop()
        return False

    def closeEvent(self, event) -> None:  # noqa: N802
        self.stop()
        super().closeEvent(event)
