"""The settings form of "1. Train and embed": widgets in, :class:`ModelConfig`/:class:`TrainConfig` out.

Defaults come from the dataclasses, so the widget, the CLI and the model
files agree. Main settings are always visible; the rest folds away under
"Advanced".
"""

from __future__ import annotations

from typing import Any

import torch
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .._device import DEVICE_CHOICES, describe_device, resolve_device
from .._errors import SettingError, UserError
from ..model import ModelConfig
from ..segment_config import SegmentConfig
from ..segment_modes import MAX_CLUSTERS
from ..training import TrainConfig

DEFAULT_MINUTES = 10.0
#: largest stride and bin factor the form offers (the configs have no upper bound)
MAX_FACTOR = 8

# Live-preview cadence: a CPU step of the paper's model takes seconds, a GPU step milliseconds.
_CADENCE = {"cpu": {"log_every": 1, "preview_every": 3}, "cuda": {"log_every": 10, "preview_every": 25}}


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class TrainSettings(QWidget):
    """Training and segmentation settings.

    Attributes
    ----------
    model_overrides : dict
        Architecture fields without a control (``channels``, ``kernel_size``,
        ``hidden``...), applied on top of the form, e.g. a tiny model for tests.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_overrides: dict[str, Any] = {}
        train, model, segmentation = TrainConfig(), ModelConfig(), SegmentConfig()

        self.steps = _spin(1, 1_000_000, train.steps, "Optimisation steps; training also stops at the time budget")
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.0, 24 * 60.0)
        self.minutes.setDecimals(1)
        self.minutes.setValue(DEFAULT_MINUTES)
        self.minutes.setSuffix(" min")
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setToolTip("Stop training after this time (0 = no limit); the model so far is kept")
        self.device = QComboBox()
        self.device.addItems(DEVICE_CHOICES)
        self.device.setCurrentText(train.device)
        if not torch.cuda.is_available():
            item = self.device.model().item(DEVICE_CHOICES.index("cuda"))
            item.setEnabled(False)
            item.setToolTip("no CUDA GPU found")
        self.device.setToolTip("auto = the CUDA GPU when there is one, else the CPU")
        self.device_label = QLabel()
        self.device.currentTextChanged.connect(self._show_device)

        self.k_max = _spin(
            segmentation.k_min,
            MAX_CLUSTERS,
            segmentation.k_max,
            f"Largest number of clusters; the Clusters slider goes from {segmentation.k_min} to this",
        )

        main = QFormLayout()
        main.addRow("Steps", self.steps)
        main.addRow("Time budget", self.minutes)
        main.addRow("Device", self.device)
        main.addRow("", self.device_label)
        main.addRow("Max clusters", self.k_max)

        self.batch_size = _spin(1, 4096, train.batch_size, "Triplets per step (lower it if the GPU runs out of memory)")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(train.lr)
        self.lr.setToolTip("Adam learning rate")
        self.latent_dim = _spin(1, 32, model.latent_dim, "Dimension of the latent space (2 = drawn as is on the disk)")
        self.space = QComboBox()
        self.space.addItems(["hyperbolic (Poincaré ball)", "Euclidean (ablation)"])
        self.gyroplane = QCheckBox("gyroplane decoder layer")
        self.gyroplane.setChecked(model.gyroplane)
        self.triplet = QCheckBox("hierarchical triplet loss")
        self.triplet.setChecked(train.triplet)
        self.seed = _spin(0, 2**31 - 1, train.seed, "Random seed (same seed, same result on CPU)")
        self.stride = _spin(
            1, MAX_FACTOR, segmentation.stride, "Embed every n-th voxel and interpolate: a fast preview of a big volume"
        )
        self.binning = _spin(
            1,
            MAX_FACTOR,
            segmentation.binning,
            "Average n×n×n voxels before embedding (n = 2: 8× less work and memory for big tomograms); "
            "labels are upsampled back to the full grid",
        )
        self.compartments = QCheckBox("lumens as clusters (compartments)")
        self.compartments.setChecked(segmentation.compartments)
        self.compartments.setToolTip(
            "Mixture: when the k = 2 level finds a thin wall (a membrane, a protein shell), what it encloses "
            "becomes a cluster of its own from k = 3 on, and the wall is closed around it where the image lost it "
            "(a missing wedge)"
        )

        self.advanced = QWidget()
        form = QFormLayout(self.advanced)
        form.setContentsMargins(12, 0, 0, 0)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Latent dim", self.latent_dim)
        form.addRow("Latent space", self.space)
        form.addRow("", self.gyroplane)
        form.addRow("", self.triplet)
        form.addRow("Seed", self.seed)
        form.addRow("Embedding stride", self.stride)
        form.addRow("Binning", self.binning)
        form.addRow("", self.compartments)
        self.advanced.setVisible(False)
        self.toggle = QToolButton()
        self.toggle.setText("Advanced")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self._fold)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        layout.addWidget(self.toggle)
        layout.addWidget(self.advanced)
        self._show_device()

    def _fold(self, open_: bool) -> None:
        self.advanced.setVisible(open_)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)

    def _show_device(self, *_) -> None:
        try:
            self.device_label.setText(f"in use: {describe_device(resolve_device(self.device.currentText()))}")
        except UserError as exc:
            self.device_label.setText(str(exc))

    def torch_device(self) -> torch.device:
        """The device the settings resolve to (raises :class:`UserError` for CUDA without a GPU)."""
        return resolve_device(self.device.currentText())

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The configs the form describes (raises :class:`UserError` for invalid combinations)."""
        device = self.torch_device()
        try:
            model = ModelConfig(
                latent_dim=self.latent_dim.value(),
                manifold="poincare" if self.space.currentIndex() == 0 else "euclidean",
                gyroplane=self.gyroplane.isChecked() and self.space.currentIndex() == 0,
                **self.model_overrides,
            )
            train = TrainConfig(
                steps=self.steps.value(),
                max_minutes=self.minutes.value() or None,
                batch_size=self.batch_size.value(),
                lr=self.lr.value(),
                triplet=self.triplet.isChecked(),
                device=self.device.currentText(),
                seed=self.seed.value(),
                **_CADENCE["cuda" if device.type == "cuda" else "cpu"],
            )
        except ValueError as exc:
            raise UserError(f"invalid settings: {exc}") from exc
        return model, train

    def segment_config(self) -> SegmentConfig:
        """How the form says to segment (device and seed are the training's)."""
        try:
            return SegmentConfig(
                k_max=self.k_max.value(),
                stride=self.stride.value(),
                binning=self.binning.value(),
                device=self.device.currentText(),
                seed=self.seed.value(),
                compartments=self.compartments.isChecked(),
            )
        except SettingError as exc:
            raise UserError(f"invalid settings: {exc}") from exc
