"""A scrubbable player that shows two videos side by side, frame-locked (driving | result).

Why not QMediaPlayer: it cannot keep two videos on the same frame while scrubbing, needs a
multimedia backend that headless machines lack, and re-enactment results are short. Frames are
read on demand with OpenCV (random access by index), so memory stays small.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QStyle,
                               QVBoxLayout, QWidget)


class VideoSource:
    """Random access to one video's frames (HWC uint8 RGB)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        self.n_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._cap.isOpened() else 0
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 25.0) if self._cap.isOpened() else 25.0
        self._next = 0

    def frame(self, index: int) -> np.ndarray | None:
        if self.n_frames <= 0:
            return None
        index = max(0, min(index, self.n_frames - 1))
        if index != self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self._cap.read()
        self._next = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    def close(self) -> None:
        self._cap.release()


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class _Screen(QLabel):
    """Shows a frame scaled to fit, or its caption when there is no frame."""

    def __init__(self, caption: str) -> None:
        super().__init__(caption)
        self.caption = caption
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: #202020; color: #bbb;")
        self._pix: QPixmap | None = None

    def show_pixmap(self, pix: QPixmap | None) -> None:
        self._pix = pix
        if pix is None:
            self.setText(self.caption)
        self._rescale()

    def set_caption(self, caption: str) -> None:
        self.caption = caption
        if self._pix is None:
            self.setText(caption)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pix is not None:
            self.setPixmap(self._pix.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation))


class SideBySidePlayer(QWidget):
    """``set_videos(left, right)``; play/pause (Space), scrub with the slider or ←/→."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.left_screen = _Screen("Driving video")
        self.right_screen = _Screen("Result")
        self.sources: list[VideoSource | None] = [None, None]
        self.play_button = QPushButton()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play or pause both videos together (Space)")
        self.play_button.clicked.connect(self.toggle)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Drag to move through the take frame by frame (← and → keys too)")
        self.slider.valueChanged.connect(self.show_frame)
        self.position = QLabel("0 / 0")
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._advance)
        screens = QHBoxLayout()
        screens.addWidget(self.left_screen)
        screens.addWidget(self.right_screen)
        controls = QHBoxLayout()
        controls.addWidget(self.play_button)
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.position)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(screens, 1)
        layout.addLayout(controls)
        for key, fn in ((Qt.Key.Key_Space, self.toggle),
                        (Qt.Key.Key_Left, lambda: self.slider.setValue(self.slider.value() - 1)),
                        (Qt.Key.Key_Right, lambda: self.slider.setValue(self.slider.value() + 1))):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(fn)

    @property
    def n_frames(self) -> int:
        counts = [s.n_frames for s in self.sources if s is not None and s.n_frames > 0]
        return min(counts) if counts else 0

    def set_videos(self, left: str | Path | None, right: str | Path | None) -> None:
        self.stop()
        for s in self.sources:
            if s is not None:
                s.close()
        self.sources = [VideoSource(left) if left else None, VideoSource(right) if right else None]
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.n_frames - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        fps = next((s.fps for s in self.sources if s is not None), 25.0)
        self.timer.setInterval(int(1000 / max(1.0, fps)))
        self.left_screen.set_caption("Driving video" if left else "No driving video")
        self.right_screen.set_caption("Result" if right else
                                      ("Not rendered yet" if left else "The result of a take plays here"))
        self.show_frame(0)

    def show_frame(self, index: int) -> None:
        for source, screen in zip(self.sources, (self.left_screen, self.right_screen)):
            frame = source.frame(index) if source is not None else None
            if frame is not None:
                screen.show_pixmap(to_pixmap(frame))
            else:
                screen.show_pixmap(None)
        self.position.setText(f"{index + 1 if self.n_frames else 0} / {self.n_frames}")

    def toggle(self) -> None:
        if self.timer.isActive():
            self.stop()
        elif self.n_frames:
            self.timer.start()
            self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))

    def stop(self) -> None:
        self.timer.stop()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))

    def _advance(self) -> None:
        nxt = self.slider.value() + 1
        self.slider.setValue(0 if nxt >= self.n_frames else nxt)
