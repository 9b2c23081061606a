"""A label that shows an image scaled to fit, and re-scales when the layout resizes it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ImageView(QLabel):
    """``set_image(path | QPixmap | HWC uint8 RGB array)``; shows ``placeholder`` text when empty."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None, dark: bool = False) -> None:
        super().__init__(placeholder, parent)
        self.placeholder = placeholder
        self.source: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        if dark:
            self.setStyleSheet("background: #202020; color: #bbb;")

    def set_image(self, image: str | Path | QPixmap | np.ndarray | None) -> bool:
        if image is None:
            pix = None
        elif isinstance(image, QPixmap):
            pix = image
        elif isinstance(image, np.ndarray):
            rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
            h, w, _ = rgb.shape
            pix = QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())
        else:
            pix = QPixmap(str(image))
        if pix is None or pix.isNull():
            self.source = None
            self.clear()
            self.setText(self.placeholder)
            return False
        self.source = pix
        self._rescale()
        return True

    def show_text(self, text: str) -> None:
        self.source = None
        self.clear()
        self.setText(text)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self.source is not None and self.width() > 1 and self.height() > 1:
            self.setPixmap(self.source.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
