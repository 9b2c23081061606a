"""Capture: bring the self-scan — a video file (dropped or picked, trimmed) or a webcam recording.

"Use this video" runs the capture job (``studio.jobs.capture``), the one writer of the project's
capture record, which re-uses everything when the same video and part are chosen again.
The webcam part uses QtMultimedia. On a machine without a camera (or without a multimedia
backend) it says so and the file route keeps working.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QThreadPool, QRunnable, QObject, Signal, QTimer, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from personalize.errors import UserError
from personalize.video import probe_video
from studio.gui.context import StudioContext
from studio.gui.live_coverage import read_landmarks
from studio.gui.pages.base import StagePage, hint
from studio.gui.scan_files import first_frame
from studio.gui.widgets.camera_session import list_cameras, open_capture_session
from studio.gui.widgets.coverage_meter import CoverageMeter
from studio.gui.widgets.drop_zone import DropZone
from studio.gui.widgets.image_view import ImageView
from studio.jobs.capture import MIN_SECONDS, chosen_part

TARGET_SECONDS = 30
COUNTDOWN_SECONDS = 3
NO_VIDEO = "No video chosen yet."


class _DetectSignals(QObject):
    done = Signal(object)  # landmarks (478,3) or None


class _DetectTask(QRunnable):
    """Run MediaPipe on one webcam frame off the UI thread."""

    def __init__(self, rgb: np.ndarray, signals: _DetectSignals) -> None:
        super().__init__()
        self.rgb, self.signals = rgb, signals

    def run(self) -> None:
        try:
            from personalize.faces import detect_landmarks
            self.signals.done.emit(detect_landmarks(self.rgb))
        except Exception:  # noqa: BLE001 - live overlay is best effort
            self.signals.done.emit(None)


def qimage_to_rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


class WebcamPanel(QGroupBox):
    """Camera chooser, live preview with landmarks, countdown, recording to a target length.

    The source is a ``QCamera`` or a ``QVideoFrameInput`` (``start_frame_source``); either feeds
    one ``QMediaCaptureSession`` whose sink shows the preview and whose ``QMediaRecorder`` writes
    the file, so everything after the source is the same code.
    """

    recorded = Signal(str)

    def __init__(self, output_dir, parent: QWidget | None = None) -> None:
        super().__init__("Record with a webcam", parent)
        self.output_dir = output_dir  # callable -> Path
        self.camera_box = QComboBox()
        self.camera_box.setToolTip("Which camera to record with")
        self.preview = QLabel("Camera preview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(320, 240)
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.preview.setStyleSheet("background: #202020; color: #bbb;")
        self.start_button = QPushButton("Start camera")
        self.record_button = QPushButton("● Record (3 s countdown)")
        self.record_button.setToolTip("Counts down 3 seconds, then records about 30 seconds. "
                                      "Turn your head slowly left, right, up and down, smile, "
                                      "open your mouth, close your eyes, raise your brows.")
        self.length_bar = QProgressBar()
        self.length_bar.setRange(0, TARGET_SECONDS)
        self.length_bar.setFormat(f"%v s of about {TARGET_SECONDS} s")
        self.coverage = CoverageMeter()
        self.state_label = hint("")
        self.camera = self.frame_input = self.session = self.recorder = self.sink = None
        self.target_seconds: float = TARGET_SECONDS
        self.countdown_seconds: float = COUNTDOWN_SECONDS
        self._lm: np.ndarray | None = None
        self._detecting = False
        self._last_detect = 0.0
        self._countdown = 0
        self._record_start = 0.0
        self._pool = QThreadPool.globalInstance()
        self._signals = _DetectSignals()
        self._signals.done.connect(self._on_landmarks)
        self._tick = QTimer(self)
        self._tick.setInterval(250)
        self._tick.timeout.connect(self._on_tick)

        top = QHBoxLayout()
        top.addWidget(QLabel("Camera:"))
        top.addWidget(self.camera_box, 1)
        top.addWidget(self.start_button)
        top.addWidget(self.record_button)
        left = QVBoxLayout()
        left.addWidget(self.preview, 1)
        left.addWidget(self.length_bar)
        row = QHBoxLayout()
        row.addLayout(left, 3)
        row.addWidget(self.coverage, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(row, 1)
        layout.addWidget(self.state_label)
        self.start_button.clicked.connect(self.start_camera)
        self.record_button.clicked.connect(self.toggle_recording)
        self.cameras = self._list_cameras()
        self._update_enabled()

    def _list_cameras(self) -> list:
        cameras, problem = list_cameras(self.camera_box)
        if problem:
            self.state_label.setText(f"Webcam recording is unavailable here ({problem}). "
                                     "Use a video file instead.")
            return []
        if not cameras:
            self.state_label.setText("No camera found. Plug one in and reopen the project, or "
                                     "use a video file recorded with your phone.")
            self.preview.setText("No camera found")
        return cameras

    def _update_enabled(self) -> None:
        has = bool(self.cameras)
        self.camera_box.setEnabled(has)
        self.start_button.setEnabled(has)
        self.record_button.setEnabled(self.session is not None)

    def start_camera(self) -> None:
        from PySide6.QtMultimedia import QCamera
        self.stop_camera()
        self.camera = QCamera(self.cameras[self.camera_box.currentIndex()])
        self._start_session(lambda session: session.setCamera(self.camera))
        self.camera.errorOccurred.connect(lambda _e, text: self.state_label.setText(f"Camera: {text}"))
        self.camera.start()
        self.state_label.setText("Camera on. Sit in good, even light, face the camera, then Record.")
        self._update_enabled()

    def start_frame_source(self, frame_input) -> None:
        """Use a ``QVideoFrameInput`` instead of a camera: frames pushed into it are previewed,
        measured and recorded exactly like a camera's (tests, or a virtual source)."""
        self.stop_camera()
        self.frame_input = frame_input
        self._start_session(lambda session: session.setVideoFrameInput(frame_input))
        self.state_label.setText("Video source on. Press Record.")
        self._update_enabled()

    def _start_session(self, attach_source) -> None:
        """One capture session: the source -> a sink (live preview, landmarks) and a recorder."""
        parts = open_capture_session(attach_source, self._on_frame)
        self.session, self.sink, self.recorder = parts.session, parts.sink, parts.recorder
        self.recorder.recorderStateChanged.connect(self._on_recorder_state)
        self.recorder.errorOccurred.connect(lambda _e, text: self.state_label.setText(f"Recorder: {text}"))

    def stop_camera(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.camera is not None:
            self.camera.stop()
        self.camera = self.frame_input = self.session = self.recorder = self.sink = None
        self._tick.stop()
        self._update_enabled()

    def toggle_recording(self) -> None:
        from PySide6.QtMultimedia import QMediaRecorder
        if self.recorder is None:
            return
        if self.recorder.recorderState() == QMediaRecorder.RecorderState.RecordingState or self._countdown:
            self._finish_recording()
            return
        self.coverage.reset()
        self._countdown = max(1, int(round(self.countdown_seconds * 4)))  # ticks of 250 ms
        self._tick.start()
        self.record_button.setText("■ Stop")

    def _on_tick(self) -> None:
        from PySide6.QtMultimedia import QMediaRecorder
        if self._countdown:
            self._countdown -= 1
            self.state_label.setText(f"Recording starts in {self._countdown // 4 + 1}…")
            if self._countdown == 0:
                folder = Path(self.output_dir())
                folder.mkdir(parents=True, exist_ok=True)
                self._target = folder / f"webcam_{time.strftime('%Y%m%d_%H%M%S')}.mp4"
                self.recorder.setOutputLocation(QUrl.fromLocalFile(str(self._target)))
                self.recorder.record()
                self._record_start = time.monotonic()
            return
        if self.recorder and self.recorder.recorderState() == QMediaRecorder.RecorderState.RecordingState:
            seconds = time.monotonic() - self._record_start
            self.length_bar.setValue(int(min(self.target_seconds, seconds)))
            self.state_label.setText("Recording… turn slowly, smile, open your mouth, close your "
                                     "eyes, raise your brows.")
            if seconds >= self.target_seconds:
                self._finish_recording()

    def _finish_recording(self) -> None:
        self._countdown = 0
        self._tick.stop()
        self.record_button.setText("● Record (3 s countdown)")
        if self.recorder is not None:
            self.state_label.setText("Finishing the recording…")
            self.recorder.stop()  # asynchronous: _on_recorder_state emits the file when it is closed

    def _on_recorder_state(self, state) -> None:
        from PySide6.QtMultimedia import QMediaRecorder
        if state != QMediaRecorder.RecorderState.StoppedState or self.recorder is None:
            return
        location = self.recorder.actualLocation().toLocalFile() or str(getattr(self, "_target", ""))
        if location and Path(location).is_file():
            self.state_label.setText(f"Saved {location}. Check it below, trim it, then 'Use this video'.")
            self.recorded.emit(location)

    def _on_frame(self, frame) -> None:
        image = frame.toImage()
        if image.isNull():
            return
        now = time.monotonic()
        if not self._detecting and now - self._last_detect > 0.2:
            self._detecting, self._last_detect = True, now
            self._pool.start(_DetectTask(qimage_to_rgb(image), self._signals))
        pix = QPixmap.fromImage(image)
        if self._lm is not None:
            painter = QPainter(pix)
            painter.setPen(QColor("#00ff88"))
            for x, y in self._lm[:, :2]:
                painter.drawPoint(int(x), int(y))
            painter.end()
        self.preview.setPixmap(pix.scaled(self.preview.size(), Qt.AspectRatioMode.KeepAspectRatio))

    def _on_landmarks(self, lm) -> None:
        self._detecting = False
        self._lm = None if lm is None else np.asarray(lm)
        if self._lm is None:
            return
        reading = read_landmarks(self._lm)
        from PySide6.QtMultimedia import QMediaRecorder
        if self.recorder and self.recorder.recorderState() == QMediaRecorder.RecorderState.RecordingState:
            self.coverage.add_pose(reading.yaw, reading.pitch)
            for name, value in (("smile", reading.smile), ("mouth open", reading.mouth_open),
                                ("eyes closed", reading.eyes_closed), ("brows up", reading.brows_up)):
                self.coverage.set_expression(name, max(self.coverage.expressions[name], value))


class CapturePage(StagePage):
    stage = "capture"
    needs = ()
    shows = ("capture",)
    description = ("Bring about 30 seconds of video of your face: turn your head slowly in every "
                   "direction and make many expressions. Drop a video file here or record one.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.video_path: str | None = None
        self.info = None
        self.drop = DropZone("Drop a video file here, or click to choose one (Ctrl+I)",
                             start_dir=ctx.settings.last_folder)
        self.drop.file_chosen.connect(self.load_video)
        self.file_label = QLabel(NO_VIDEO)
        self.file_label.setWordWrap(True)
        self.pending_label = QLabel("")
        self.pending_label.setWordWrap(True)
        self.pending_label.setStyleSheet("color: #b35900;")
        self.pending_label.setVisible(False)
        self.trim_in = QDoubleSpinBox()
        self.trim_out = QDoubleSpinBox()
        for spin in (self.trim_in, self.trim_out):
            spin.setSuffix(" s")
            spin.setDecimals(1)
            spin.setSingleStep(0.5)
            spin.setEnabled(False)
            spin.setMaximumWidth(120)
            spin.valueChanged.connect(lambda _v: self._show_pending())
        self.trim_in.setToolTip("Skip the start of the video up to this time (e.g. while you "
                                "were pressing record).")
        self.trim_out.setToolTip("Ignore the video after this time.")
        self.trim_in.valueChanged.connect(lambda v: self.trim_out.setMinimum(v + MIN_SECONDS))
        self.use_button = QPushButton("Use this video")
        self.use_button.setToolTip("Make this video (the trimmed part) the self-scan of this "
                                   "project, then continue with Prepare.")
        self.use_button.clicked.connect(self.use_video)
        self.in_use_image = ImageView("No self-scan yet")
        self.in_use_image.setMinimumSize(120, 90)
        self.in_use_image.setMaximumSize(200, 150)
        self.in_use_image.setToolTip("The first frame of the video the later steps use.")
        self.in_use_label = QLabel("")
        self.in_use_label.setWordWrap(True)

        file_box = QGroupBox("Use a video file")
        form = QFormLayout()
        form.addRow("Trim start:", self.trim_in)
        form.addRow("Trim end:", self.trim_out)
        file_layout = QVBoxLayout(file_box)
        file_layout.addWidget(self.drop)
        file_layout.addWidget(self.file_label)
        file_layout.addWidget(self.pending_label)
        file_layout.addLayout(form)
        file_layout.addWidget(self.use_button, 0, Qt.AlignmentFlag.AlignRight)
        in_use_box = QGroupBox("The self-scan in use")
        in_use_layout = QVBoxLayout(in_use_box)
        in_use_layout.addWidget(self.in_use_image, 0, Qt.AlignmentFlag.AlignHCenter)
        in_use_layout.addWidget(self.in_use_label)
        in_use_layout.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(file_box, 3)
        top.addWidget(in_use_box, 1)

        self.webcam = WebcamPanel(lambda: self.project.capture_dir if self.project else Path.home())
        self.webcam.recorded.connect(self.load_video)
        self.body.addLayout(top)
        self.body.addWidget(self.webcam, 1)
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.drop.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop.dropEvent(event)

    def reset(self) -> None:
        self.webcam.stop_camera()
        self.webcam.coverage.reset()
        self.video_path, self.info = None, None
        self.file_label.setText(NO_VIDEO)
        for spin in (self.trim_in, self.trim_out):
            spin.blockSignals(True)
            spin.setRange(0.0, 0.0)
            spin.setValue(0.0)
            spin.setEnabled(False)
            spin.blockSignals(False)
        self.in_use_image.set_image(None)
        self.in_use_label.setText("")
        self._show_pending()

    def reload(self) -> None:
        """Show the self-scan in use; a page without a chosen file offers it again (the chosen
        file with its part, else the project's copy)."""
        self._show_in_use()
        if self.video_path is not None:
            self._show_pending()
            return
        record = self.project.scan_record
        original = record.get("original")
        if original and Path(original).is_file():
            self.load_video(original, trim=record.get("trim"))
        elif self.project.scan_source() is not None:
            self.load_video(str(self.project.scan_source()))

    def _show_in_use(self) -> None:
        copy = self.project.scan_source() if self.project is not None else None
        self.in_use_image.set_image(first_frame(copy))
        if copy is None:
            self.in_use_label.setText("None yet: choose a video and press 'Use this video'.")
            return
        record = self.project.scan_record
        name = Path(record.get("original") or copy).name
        trim = record.get("trim")
        part = f", {trim[0]:.1f}–{trim[1]:.1f} s" if trim else ""
        try:
            info = probe_video(copy)
            details = f" ({info.duration:.1f} s, {info.n_frames} frames)"
        except UserError:
            details = ""
        self.in_use_label.setText(f"{name}{part}{details}")

    def is_in_use(self) -> bool:
        """True when the page's file and part are the project's self-scan."""
        if self.project is None or self.video_path is None or self.info is None:
            return False
        record = self.project.scan_record
        try:
            part = chosen_part(self.trim_in.value(), self.trim_out.value(), self.info.duration)
        except UserError:
            return False
        original = record.get("original")
        chosen = Path(self.video_path).resolve()
        copy = self.project.scan_source()
        same_file = (original is not None and Path(original) == chosen) or (
            copy is not None and copy.resolve() == chosen)
        return same_file and record.get("trim") == part and self.ctx.statuses.get("capture") != "not done"

    def _show_pending(self) -> None:
        pending = self.project is not None and self.video_path is not None and not self.is_in_use()
        if pending:
            used = bool(self.project.scan_record)
            self.pending_label.setText(
                ("This file (or part) is not the self-scan yet: the later steps still use the one "
                 "shown on the right. " if used else "Not used yet: ")
                + "Press 'Use this video' to use it.")
        self.pending_label.setVisible(pending)

    def load_video(self, path: str, trim: list[float] | None = None) -> None:
        try:
            info = probe_video(path)
        except Exception as exc:  # noqa: BLE001
            self.ctx.error("Open video", exc)
            return
        self.ctx.settings.set_last_folder(path)
        self.video_path, self.info = str(path), info
        self.file_label.setText(f"{Path(path).name}: {info.width}×{info.height}, {info.fps:.0f} fps, "
                                f"{info.duration:.1f} s{' with sound' if info.has_audio else ''}.")
        for spin in (self.trim_in, self.trim_out):
            spin.setEnabled(True)
            spin.setRange(0.0, float(info.duration))
        self.trim_in.setValue(float(trim[0]) if trim else 0.0)
        self.trim_out.setValue(float(trim[1]) if trim else float(info.duration))
        if info.duration < 10:
            self.file_label.setText(self.file_label.text() + " Short: 20–40 s gives a better likeness.")
        self._show_pending()
        self.update_buttons()

    def update_buttons(self) -> None:
        self.use_button.setEnabled(self.video_path is not None and self.project is not None
                                   and not self.ctx.runner.busy)
        self._show_pending()

    def use_video(self) -> None:
        if self.video_path is None or self.project is None:
            return

        def done(_outcome) -> None:
            self.ctx.message.emit("Self-scan chosen. Next: Prepare.")
        self.ctx.run_job("Use video", self.ctx.jobs.capture, self.project, self.video_path,
                         start=self.trim_in.value(), end=self.trim_out.value(), on_success=done)
