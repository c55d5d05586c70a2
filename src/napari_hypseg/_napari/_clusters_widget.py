"""The "3. Clusters and export" dock widget: slide through the hierarchy, keep levels, export them.

Below the slider, a table lists the clusters of the current level (voxels,
physical volume, mean and sd of intensity, bounding box), exportable as CSV.

Every level k = 2 … K_max is precomputed by the core, so moving the slider
only swaps the array shown by the one live labels layer "hypseg clusters"
(no copy). The default, mixture, clusters the (denoised, on a noisy volume)
intensities with a Gaussian mixture and a spatial prior per level. Nested levels
(k-means by bisection) keep cluster ids, hence colours, as clusters split;
flat levels are an independent k-means per k. A mode other than the one
segmented is computed the first time it is chosen, in a worker, from the
same embedding and the source voxels; so is the mixture on another intensity
channel ("auto" picks raw or denoised from the volume's noise, and no rule
of that kind is right on every volume: docs/method.md, round nine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..io.levels import mode_tag
from ..segment_config import INTENSITY_CHOICES, SegmentConfig
from ..segment_modes import MIXTURE_MODE
from ..segmentation.compartments import COMPARTMENT_ID
from ._export import ExportPanel
from ._jobs import JobCancelled, JobFailed, SegmentJob, SegmentProgress, stop_when_destroyed
from ._layers import add_labels_copy, unique_layer_name
from ._qtutil import Throttle
from ._session import TRAIN_WIDGET, Result, clustering_key, get_session, open_widget, unwrap_viewer
from ._stats_panel import StatsPanel

if TYPE_CHECKING:
    import napari

EMPTY_TEXT = (
    "<b>No clusters yet.</b><br><br>"
    "1. Open a 3D volume (File › Open File(s)…, MRC or NIfTI; or File › Open Sample › napari-hypseg).<br>"
    "2. In <i>1. Train and embed</i>, press <b>Start training</b> (or <b>Load model…</b>), then <b>Segment</b>.<br>"
    f"3. Come back here to slide from {SegmentConfig().k_min} to {SegmentConfig().k_max} clusters "
    "(“Max clusters” in step 1) and export the labels."
)
MODE_TIPS = {
    "mixture": (
        "mixture: Gaussian mixture with a spatial prior on the intensity, denoised if noisy; "
        "what a thin wall encloses becomes a cluster of its own (default)"
    ),
    "nested": "nested: each level splits clusters of the level below; ids and colours stay as clusters split",
    "flat": "flat: an independent k-means for every k (computed the first time you choose it)",
}
INTENSITY_TIPS = {
    "auto": "auto: raw on a clean volume, TV-denoised on a noisy one, from its estimated noise (default)",
    "raw": "raw: the normalised intensity; keeps thin structures, but noise speckles the clusters",
    "denoised": "denoised: TV-denoised in proportion to the noise; smooth clusters, thin structures may merge",
}
assert tuple(INTENSITY_TIPS) == INTENSITY_CHOICES


@dataclass
class _Recluster:
    """Another clustering (mode, or the mixture's intensity) of the current embedding, being computed."""

    job: SegmentJob
    worker: Any
    base: Result
    forget: Callable[[], None]


class ClustersWidget(QWidget):
    """Granularity slider, mixture/nested/flat switch, the mixture's intensity, "Add as layer" and export."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.session = get_session(napari_viewer)
        self._recluster: _Recluster | None = None
        self._pending: SegmentConfig | None = None  # a clustering chosen while another was being computed
        self._build_ui()
        self._apply_slider = Throttle(self._slider_to_session, 0, self)
        self.session.result_changed.connect(self._on_result)
        self.session.level_changed.connect(self._on_level)
        self._on_result()

    @property
    def busy(self) -> bool:
        """Whether another clustering of the embedding is being computed."""
        return self._recluster is not None

    # -- UI ------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.pages = QStackedWidget()

        empty = QWidget()
        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.open_train = QPushButton(f"Open “{TRAIN_WIDGET}”".replace("&", "&&"))  # "&" marks a shortcut key
        self.open_train.clicked.connect(self._open_train)
        empty_layout = QVBoxLayout(empty)
        empty_layout.addWidget(self.empty_label)
        empty_layout.addWidget(self.open_train)
        empty_layout.addStretch(1)

        content = QWidget()
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setPageStep(1)
        self.slider.setToolTip("Number of clusters k: fewer = coarser, more = finer")
        self.slider.valueChanged.connect(self._on_slider)
        self.k_label = QLabel()
        self.k_label.setMinimumWidth(28)
        self.mode = QComboBox()
        for mode, tip in MODE_TIPS.items():
            self.mode.addItem(mode)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.mode.setToolTip("\n".join(MODE_TIPS.values()))
        self.mode.currentTextChanged.connect(self.set_mode)
        self.intensity = QComboBox()
        for choice, tip in INTENSITY_TIPS.items():
            self.intensity.addItem(choice)
            self.intensity.setItemData(self.intensity.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.intensity.setToolTip(
            "Intensity the mixture clusters; another choice is computed once, in seconds:\n"
            + "\n".join(INTENSITY_TIPS.values())
        )
        self.intensity.currentTextChanged.connect(self.set_intensity)
        self.add_button = QPushButton("Add as layer")
        self.add_button.setToolTip("Keep the current level as its own (editable) labels layer")
        self.add_button.clicked.connect(self.add_current_as_layer)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.export = ExportPanel(self.session)
        self.stats = StatsPanel(self.session)

        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.k_label)
        form = QFormLayout()
        form.addRow("Clusters k", slider_row)
        form.addRow("Mode", self.mode)
        form.addRow("Intensity", self.intensity)
        stats_box = QGroupBox("Clusters at this k")
        QVBoxLayout(stats_box).addWidget(self.stats)
        export_box = QGroupBox("Export")
        QVBoxLayout(export_box).addWidget(self.export)
        content_layout = QVBoxLayout(content)
        content_layout.addWidget(self.source_label)
        content_layout.addLayout(form)
        content_layout.addWidget(self.add_button)
        content_layout.addWidget(self.status)
        content_layout.addWidget(stats_box)
        content_layout.addWidget(export_box)
        content_layout.addStretch(1)

        # Stacked under the Train panel and the disk view (at least 300 px), the
        # controls, table and export do not fit a 1080p screen: they scroll
        # rather than overlap when the dock is short.
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumHeight(120)
        self.pages.addWidget(empty)
        self.pages.addWidget(scroll)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def _open_train(self) -> None:
        open_widget(self.viewer, TRAIN_WIDGET)

    # -- session -> widget -------------------------------------------------------
    def _on_result(self) -> None:
        result = self.session.result
        self.pages.setCurrentIndex(0 if result is None else 1)
        if result is None:
            return
        self._stop_recluster()
        ks = self.session.k_values
        shape = "×".join(str(n) for n in result.source.shape)
        self.source_label.setText(f"<b>{result.source.name}</b> ({shape}) · levels k = {ks[0]}…{ks[-1]}")
        self.slider.blockSignals(True)
        self.slider.setRange(ks[0], ks[-1])
        self.slider.setValue(self.session.k)
        self.slider.blockSignals(False)
        self._show_choices()
        self.export.set_source(result.source)
        self._on_level(self.session.k)

    def _on_level(self, k: int) -> None:
        if self.slider.value() != k:
            self.slider.blockSignals(True)
            self.slider.setValue(k)
            self.slider.blockSignals(False)
        self.k_label.setText(str(k))
        if self._recluster is None:
            self._show_choices()
            result = self.session.result
            held = result.segmentation.occupied(k) if result is not None else k
            notes = f" {held} of the {k} clusters hold voxels: the mixture left the rest empty." if held < k else ""
            refit = result.segmentation.refit_note(k) if result is not None else None
            if refit is not None:
                notes += f" Refitted: {refit}."
            found = result.segmentation.compartments if result is not None else None
            inside = (
                f" Cluster {COMPARTMENT_ID}: what the thin cluster {found.wall} encloses."
                if found is not None and k >= COMPARTMENT_ID
                else ""
            )
            self.status.setText(f"Showing k = {k} ({self._clustering_name()}) in “hypseg clusters”.{notes}{inside}")
            # how the levels were made (channel, covariance, prior), on hover: the line stays short
            self.status.setToolTip(result.segmentation.clustering_summary if result is not None else "")

    # -- widget -> session -------------------------------------------------------
    def _on_slider(self, value: int) -> None:
        self.k_label.setText(str(value))
        # while the handle is dragged, only the latest position is applied per event-loop turn
        self._apply_slider.request()

    def _slider_to_session(self) -> None:
        self.session.set_level(self.slider.value())

    def set_k(self, k: int) -> None:
        """Show level ``k`` now (what the slider does)."""
        self.slider.setValue(k)
        self._apply_slider.flush()
        self.session.set_level(k)

    def set_mode(self, mode: str) -> None:
        """Switch the clustering mode; a mode not computed yet is computed in a worker, from the same embedding."""
        self._choose(mode, self.session.intensity)

    def set_intensity(self, intensity: str) -> None:
        """Re-cluster the mixture on another intensity channel (computed once, in a worker, like a mode)."""
        if self.session.mode == MIXTURE_MODE:
            self._choose(MIXTURE_MODE, intensity)

    def _choose(self, mode: str, intensity: str) -> None:
        session, base = self.session, self.session.result
        if base is None:
            return
        wanted = clustering_key(mode, intensity)
        self._pending = None
        running = self._recluster
        if running is not None and self._key(running.job.config) != wanted:
            running.job.cancel()  # the user changed their mind; its worker ends at its next step
        if (mode, intensity) == (session.mode, session.intensity):
            return
        if not session.has_mode(mode, intensity):
            resolved = base.segmentation.intensity
            if mode == base.mode == MIXTURE_MODE and resolved is not None and resolved.kind == intensity:
                # "auto" chose this very channel: the same levels, nothing to compute
                session.add_result(replace(base, config=self._config(base, mode, intensity)), show=False)
            else:
                config = self._config(base, mode, intensity)
                if running is None:
                    self._start_recluster(config)
                elif running.job.cancelled:  # cancelled above when it computes another clustering
                    # one worker at a time: this choice starts as soon as the current one has ended,
                    # even one that has returned but not yet finished (a choice is never dropped)
                    self._pending = config
                    self.status.setText(f"{self._clustering_name(config)}: waiting for the current computation…")
                return
        if mode == session.mode:
            session.set_intensity(intensity)
        else:
            session.set_mode(mode)

    @staticmethod
    def _key(config: SegmentConfig) -> str:
        return clustering_key(config.mode, config.fusion.intensity)

    @staticmethod
    def _config(base: Result, mode: str, intensity: str) -> SegmentConfig:
        return base.config.with_(mode=mode, fusion=replace(base.config.fusion, intensity=intensity))

    def _clustering_name(self, config: SegmentConfig | None = None) -> str:
        mode, intensity = (
            (self.session.mode, self.session.intensity) if config is None else (config.mode, config.fusion.intensity)
        )
        return f"{mode}, {intensity} intensity" if mode == MIXTURE_MODE else mode

    def _show_choices(self) -> None:
        """The mode and intensity boxes show the session's clustering; intensity only matters to the mixture."""
        for box, value in ((self.mode, self.session.mode), (self.intensity, self.session.intensity)):
            if box.currentText() != value:
                box.blockSignals(True)
                box.setCurrentText(value)
                box.blockSignals(False)
        self.intensity.setEnabled(self.session.mode == MIXTURE_MODE)

    def _start_recluster(self, config: SegmentConfig) -> None:
        base = self.session.result
        # the real voxels, not just the shape: the mixture mode fuses the embedding with the intensities
        job = SegmentJob(base.data, base.model, config, embedding=base.segmentation.embedding, shape=base.source.shape)
        worker = thread_worker(job.run, start_thread=False)()
        self._recluster = _Recluster(job, worker, base, stop_when_destroyed(self, job.cancel))
        worker.yielded.connect(self._on_recluster_progress)
        worker.returned.connect(self._on_recluster)
        worker.finished.connect(self._recluster_done)
        self.status.setText(f"Computing {self._clustering_name(config)} levels (first time only)…")
        worker.start()

    def _on_recluster_progress(self, event: SegmentProgress) -> None:
        if self._recluster is not None:
            name = self._clustering_name(self._recluster.job.config)
            self.status.setText(f"Computing {name} levels: {event.done}/{event.total}…")

    def _on_recluster(self, result) -> None:
        base, config = self._recluster.base, self._recluster.job.config
        if isinstance(result, JobFailed):
            show_error(result.message)
            self.status.setText(result.message)
        elif isinstance(result, JobCancelled):
            pass
        elif self.session.holds(base):  # no newer segmentation arrived meanwhile
            # switch only if the user still wants this clustering (they may have gone back meanwhile)
            wanted = self._pending is None and clustering_key(
                self.mode.currentText(), self.intensity.currentText()
            ) == self._key(config)
            self.session.add_result(Result(result, config, base.model, base.source, base.data), show=wanted)
            if wanted:
                return
        if self._pending is None:  # else the boxes keep showing the choice that runs next
            self._show_choices()

    def _recluster_done(self) -> None:
        recluster, self._recluster = self._recluster, None
        if recluster is not None:
            recluster.forget()
        pending, self._pending = self._pending, None
        if pending is not None:
            self._choose(pending.mode, pending.fusion.intensity)
        if self._recluster is None:
            self._on_level(self.session.k)

    def _stop_recluster(self) -> None:
        self._pending = None
        if self._recluster is not None:
            self._recluster.job.cancel()

    def add_current_as_layer(self):
        """Add the current level as a new labels layer "<source> k=<k>"; returns it."""
        result, labels = self.session.result, self.session.current_labels()
        if result is None or labels is None:
            return None
        k, mode = self.session.k, self.session.mode
        name = f"{result.source.name} k={k}" + mode_tag(mode, self.session.intensity).replace("_", " ")
        name = unique_layer_name(self.viewer, name)
        layer = add_labels_copy(self.viewer, name, labels, result.source, {"hypseg_k": k, "hypseg_mode": mode})
        self.status.setText(f"Added “{name}”.")
        return layer
