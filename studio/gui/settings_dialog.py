"""Tools ▸ Settings: device, weights cache folder and the defaults each stage starts with."""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget)

from studio.gui.settings import StudioSettings

DEVICES = (("Automatic (GPU when available)", "auto"), ("CPU", "cpu"), ("NVIDIA GPU (CUDA)", "cuda"),
           ("Apple GPU (MPS)", "mps"))


class SettingsDialog(QDialog):
    def __init__(self, settings: StudioSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self.device_box = QComboBox()
        for label, value in DEVICES:
            self.device_box.addItem(label, value)
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(settings.get("device"))))
        self.device_box.setToolTip("Where the heavy computing runs. A GPU is 10–100× faster.")
        self.cache_edit = QLineEdit(str(settings.get("cache_dir") or ""))
        self.cache_edit.setPlaceholderText("default (your user data folder)")
        self.cache_edit.setToolTip("Folder for downloaded pretrained weights (about 1 GB).")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        cache_row = QHBoxLayout()
        cache_row.addWidget(self.cache_edit, 1)
        cache_row.addWidget(browse)
        self.size_box = QComboBox()
        for size in (256, 512, 1024):
            self.size_box.addItem(str(size), size)
        self.size_box.setCurrentIndex(max(0, self.size_box.findData(settings.get("prepare/size"))))
        self.count_spin = QSpinBox()
        self.count_spin.setRange(2, 5000)
        self.count_spin.setValue(int(settings.get("select/count")))
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 64)
        self.batch_spin.setValue(int(settings.get("personalize/batch")))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 1_000_000)
        self.steps_spin.setSpecialValueText("auto")
        self.steps_spin.setValue(int(settings.get("personalize/steps")))
        form = QFormLayout(self)
        form.addRow("Compute device:", self.device_box)
        form.addRow("Weights folder:", cache_row)
        form.addRow("Face picture size:", self.size_box)
        form.addRow("Frames to select (N):", self.count_spin)
        form.addRow("Training batch:", self.batch_spin)
        form.addRow("Training steps:", self.steps_spin)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Weights folder", self.cache_edit.text())
        if path:
            self.cache_edit.setText(path)

    def accept(self) -> None:
        s = self.settings
        s.set("device", self.device_box.currentData())
        s.set("cache_dir", self.cache_edit.text().strip())
        s.set("prepare/size", self.size_box.currentData())
        s.set("select/count", self.count_spin.value())
        s.set("personalize/batch", self.batch_spin.value())
        s.set("personalize/steps", self.steps_spin.value())
        s.apply_environment()
        super().accept()
