"""The Re-enact page's mode selector: one line per re-enactment mode, and what each one needs.

Every mode of ``optimize.backends.BACKENDS`` gets a radio button with its title (its one line as
the tooltip), two by two, and the chosen mode's line (speed, what it needs, whether
personalization is required) is shown under them. Under the choice: whether its
weights are present -- a mode whose files are missing offers "Get the weights…", which asks the
window to open the Models dialog (``models_requested``) -- and, for the one-shot modes, the source
face (the self-scan's sharpest frontal frame, or a photo) and DiffusionAct's landmarks and quality.
The page reads ``backend()``, ``options()`` (a ``studio.jobs.oneshot.OneShotOptions``),
``needs()`` (the stages the mode needs) and ``weights_ready()``.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel,
                               QPushButton, QRadioButton, QVBoxLayout, QWidget)

from optimize.backends import BACKENDS
from studio.gui.widgets.text_fit import elided, shrinkable
from studio.jobs.oneshot import OneShotOptions

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp);;All files (*)"
LANDMARKS = (("FLAME + EMOCA (official; FLAME needs a free registration)", "flame"),
             ("MediaPipe landmarks (no FLAME; not the official path)", "mediapipe"))


def missing_weights(backend: str, landmarks: str = "flame") -> list[str]:
    """Registry names the mode reads that are not on this computer."""
    from studio.weights import is_present

    return [name for name in BACKENDS[backend].weights_for(landmarks) if not is_present(name)]


class ModeSelector(QGroupBox):
    """Emits ``mode_changed(name)`` and ``models_requested(first missing file)``."""

    mode_changed = Signal(str)
    models_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None, start_dir=lambda: "") -> None:  # noqa: ANN001
        super().__init__("Mode", parent)
        self.start_dir = start_dir
        self.source_image: str | None = None
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        layout = QVBoxLayout(self)
        grid = QGridLayout()  # the modes two by two; the chosen one's line below (fits 1024x640)
        for i, (name, info) in enumerate(BACKENDS.items()):
            button = QRadioButton(info.title)
            button.setObjectName(f"mode_{name}")
            button.setToolTip(info.one_line)
            self.buttons[name] = button
            self.group.addButton(button)
            grid.addWidget(button, i // 2, i % 2)
        layout.addLayout(grid)
        self.summary_label = QLabel()
        self.summary_label.setObjectName("modeSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setStyleSheet("color: #555;")
        layout.addWidget(self.summary_label)
        self.buttons["personal"].setChecked(True)
        self.group.buttonToggled.connect(lambda _b, on: on and self._changed())

        self.weights_label = QLabel()
        self.weights_label.setObjectName("modeWeights")
        self.weights_label.setWordWrap(True)
        self.get_weights = QPushButton("Get the weights…")
        self.get_weights.setToolTip("Open the Models list to download or import the files this mode needs.")
        self.get_weights.clicked.connect(self._request_models)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_label, 1)
        weights_row.addWidget(self.get_weights)
        layout.addLayout(weights_row)

        self.oneshot_box = QWidget()
        self.oneshot_form = form = QFormLayout(self.oneshot_box)
        form.setContentsMargins(0, 0, 0, 0)
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        choose = QPushButton("Photo…")
        choose.setToolTip("Animate a photo instead of your self-scan (one face, looking roughly at the camera).")
        choose.clicked.connect(self.choose_source)
        self.scan_button = QPushButton("Self-scan")
        self.scan_button.setToolTip("Animate the sharpest frontal frame of your self-scan.")
        self.scan_button.clicked.connect(lambda: self.set_source(None))
        source_row = QHBoxLayout()
        source_row.addWidget(self.source_label, 1)
        source_row.addWidget(choose)
        source_row.addWidget(self.scan_button)
        form.addRow("Source face:", source_row)
        self.landmarks_box = QComboBox()
        for label, value in LANDMARKS:
            self.landmarks_box.addItem(label, value)
        self.landmarks_box.setToolTip("What DiffusionAct draws the driving face from.")
        self.landmarks_box.currentIndexChanged.connect(lambda _i: self._changed())
        self.quality_box = QComboBox()
        presets = BACKENDS["diffusionact"].step_presets
        for preset, steps in presets.items():
            self.quality_box.addItem(f"{preset} ({steps} diffusion steps per frame)", preset)
        self.quality_box.setToolTip("Fewer steps are faster; 'standard' is the official setting.")
        shrinkable(self.landmarks_box)  # their long lines must not widen the page past 1024 px
        shrinkable(self.quality_box)
        form.addRow("Landmarks:", self.landmarks_box)
        form.addRow("Quality:", self.quality_box)
        layout.addWidget(self.oneshot_box)
        self.set_source(None)
        self._changed()

    # ------------------------------------------------------------------ state
    def backend(self) -> str:
        return next(name for name, button in self.buttons.items() if button.isChecked())

    def set_backend(self, name: str) -> None:
        self.buttons[name].setChecked(True)

    def landmarks(self) -> str:
        return str(self.landmarks_box.currentData())

    def options(self) -> OneShotOptions:
        """The one-shot options of the current choice (ignored by the personal mode)."""
        diffusion = bool(BACKENDS[self.backend()].step_presets)
        return OneShotOptions(source=self.source_image,
                              landmarks=self.landmarks() if BACKENDS[self.backend()].landmark_sources else None,
                              quality=str(self.quality_box.currentData()) if diffusion else None)

    def needs(self) -> tuple[str, ...]:
        """The stages the chosen mode needs: personalization, or a prepared self-scan (none with a photo)."""
        if BACKENDS[self.backend()].needs_personalization:
            return ("personalize",)
        return () if self.source_image else ("prepare",)

    def weights_ready(self) -> bool:
        return not missing_weights(self.backend(), self.landmarks())

    # ------------------------------------------------------------------ actions
    def set_source(self, path: str | None) -> None:
        self.source_image = path
        self.source_label.setText(f"photo {elided(Path(path).name, self.source_label, 24)}" if path
                                  else "your self-scan's best frame")
        self.source_label.setToolTip(str(path) if path else "The sharpest frontal frame of your self-scan.")
        self.scan_button.setEnabled(path is not None)
        self.mode_changed.emit(self.backend())

    def choose_source(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Source photo", self.start_dir(), IMAGE_FILTER)
        if path:
            self.set_source(path)

    def refresh(self) -> None:
        """Look at the weights again (e.g. after the Models dialog fetched some)."""
        self._changed()

    def _changed(self) -> None:
        name = self.backend()
        info = BACKENDS[name]
        one_shot = info.output == "images"
        self.summary_label.setText(info.summary[:1].upper() + info.summary[1:] + ".")
        self.oneshot_box.setVisible(one_shot)
        self.landmarks_box.setEnabled(bool(info.landmark_sources))
        self.quality_box.setEnabled(bool(info.step_presets))
        self.oneshot_form.setRowVisible(self.landmarks_box, bool(info.landmark_sources))  # DiffusionAct's only
        self.oneshot_form.setRowVisible(self.quality_box, bool(info.step_presets))
        missing = missing_weights(name, self.landmarks())
        self.weights_label.setVisible(one_shot)  # the personal mode's weights are the project's own
        if not one_shot:
            self.weights_label.setText("")
        elif missing:
            self.weights_label.setText(f"Missing weights: {', '.join(missing)}.")
        else:
            self.weights_label.setText("Weights ready.")
        self.weights_label.setStyleSheet("color: #b35900;" if missing else "")
        self.get_weights.setVisible(bool(missing))
        self.mode_changed.emit(name)

    def _request_models(self) -> None:
        missing = missing_weights(self.backend(), self.landmarks())
        if missing:
            self.models_requested.emit(missing[0])
