"""A label that accepts a dropped video file and also opens a file picker when clicked."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QFrame, QLabel, QVBoxLayout, QWidget

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"


def dropped_video(mime) -> Path | None:
    """The first local video file in a drag's mime data, or None."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in VIDEO_EXTS:
                return path
    return None


class DropZone(QFrame):
    """Emits ``file_chosen(path)`` when a video is dropped on it or picked after a click."""

    file_chosen = Signal(str)

    def __init__(self, text: str, parent: QWidget | None = None, start_dir=lambda: "") -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("dropZone")
        self.setStyleSheet("#dropZone { border: 2px dashed #8a8a8a; border-radius: 8px; }")
        self.setMinimumHeight(90)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.start_dir = start_dir
        self.prompt = text
        self.label = QLabel(text, self)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)

    def reset(self) -> None:
        """Back to the prompt (nothing chosen)."""
        self.label.setText(self.prompt)
        self.setToolTip("")

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if dropped_video(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        path = dropped_video(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.file_chosen.emit(str(path))

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self.pick()

    def pick(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a video", self.start_dir(), VIDEO_FILTER)
        if path:
            self.file_chosen.emit(path)
