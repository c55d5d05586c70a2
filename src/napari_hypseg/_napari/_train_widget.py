"""The "1. Train and embed" dock widget: train a model on an image layer, then segment it.

Training and segmentation run in napari worker threads (:mod:`._jobs`); this
widget only collects settings, starts and cancels the jobs, shows progress
(a bar in the dock and one in napari's status bar, the loss, which limit ends
the run and when) and hands results to the session, where the disk view and
the Clusters widget pick them up. Closing the dock (its ×), the viewer or the
source layer stops a running job; nothing it produced is installed then.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .._device import describe_device
from .._errors import UserError
from ..io import MRC_SUFFIXES, NIFTI_SUFFIXES
from ..io.atomic import full_suffix
from ..model import load_model, save_checkpoint
from ..training import TrainEvent
from ._export import default_folder
from ._jobs import JobCancelled, JobFailed, SegmentJob, SegmentProgress, TrainJob, explain, stop_when_destroyed, warm_up
from ._layers import SourceInfo, check_image_layer, warm_up_labels_display
from ._qtutil import Throttle, is_alive
from ._session import CLUSTERS_WIDGET, DISK_WIDGET, Result, get_session, open_widget, unwrap_viewer
from ._train_settings import TrainSettings

if TYPE_CHECKING:
    import napari

READOUT_MS = 100
MODEL_FILTER = "napari-hypseg model (*.pt);;All files (*)"
#: What a model file is, for messages about files that are not one.
MODEL_FILE = "a model file is the .pt that “Save model…” or `hypseg train` writes"
#: Resolution of the dock's progress bar (it shows a fraction of the run).
BAR_RANGE = 1000


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def run_limit(event: TrainEvent, max_minutes: float | None) -> tuple[str, float, float]:
    """Which limit ends the run first, its time left, and the fraction of the run done.

    Returns ``(limit, seconds_left, fraction)`` with ``limit`` either
    ``"steps"`` (the step count is reached first at the current speed) or
    ``"time"`` (the time budget runs out first). ``seconds_left`` is NaN while
    the speed is unknown and only a step limit applies.
    """
    total = max(int(event.total_steps), 1)
    rate = event.steps_per_s
    steps_left = (total - event.step) / rate if rate > 0 else float("nan")
    budget = 60.0 * max_minutes if max_minutes else float("inf")
    budget_left = max(0.0, budget - event.elapsed_s)
    by_steps = min(1.0, event.step / total)
    if math.isfinite(budget) and not (steps_left <= budget_left):  # NaN: speed unknown, the clock runs anyway
        return "time", budget_left, max(by_steps, min(1.0, event.elapsed_s / budget))
    return "steps", steps_left, by_steps


def limit_text(event: TrainEvent, max_minutes: float | None) -> str:
    """``"400 steps end the run in 1:05"`` or ``"the 10 min budget ends the run in 7:30 (≈ step 310 of 400)"``."""
    limit, left, _ = run_limit(event, max_minutes)
    if limit == "steps":
        return f"{event.total_steps} steps end the run in {format_seconds(left)}"
    reached = ""
    if event.steps_per_s > 0:
        reached = (
            f" (≈ step {min(event.total_steps, int(event.step + event.steps_per_s * left))} of {event.total_steps})"
        )
    return f"the {max_minutes:g} min budget ends the run in {format_seconds(left)}{reached}"


def describe_file(path: Path) -> str:
    """What a file that failed to load as a model most likely is, from its name and first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        head = b""
    suffix = full_suffix(path)
    if suffix in MRC_SUFFIXES or head[208:212] == b"MAP ":
        return "an MRC volume (open it with File › Open File(s)…)"
    if suffix in NIFTI_SUFFIXES or head[344:348] in (b"n+1\0", b"ni1\0"):
        return "a NIfTI volume (open it with File › Open File(s)…)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file"
    if head[:4] == b"PK\x03\x04":
        return "a PyTorch or zip file, but not one napari-hypseg wrote"
    if head[:1] == b"\x80":
        return "a Python pickle, not a napari-hypseg model (and pickles are never executed here)"
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file of an unknown kind"
    return "a text file"


def loss_text(event: TrainEvent) -> str:
    losses = event.losses
    parts = [f"{name} {losses[name]:.4g}" for name in ("recon", "kl", "triplet") if name in losses]
    total = f"loss {losses['loss']:.4g}" if "loss" in losses else "loss –"
    return f"{total}" + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class _Running:
    """The job in flight; held apart from the widget so cleanup works while the widget is being destroyed."""

    kind: str
    job: Any
    worker: Any
    source: SourceInfo
    bar: Any = None
    aborted: bool = False
    last: Any = field(default=None)
    #: the latest SegmentProgress of a segmentation
    progress: SegmentProgress | None = None
    #: forgets the stop-when-the-widget-is-destroyed connection
    forget: Callable[[], None] = lambda: None

    def stop(self, *, abort: bool) -> None:
        self.aborted = self.aborted or abort
        self.job.cancel()
        if abort:
            self.worker.quit()

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _abort_orphaned(running: _Running, session) -> None:
    """The widget was deleted with a job running: stop it, and tell the other widgets training is over."""
    running.stop(abort=True)
    if running.kind == "train":
        session.set_training(False)


class TrainWidget(QWidget):
    """Pick a 3D image, train (Start/Cancel), Segment, Save/Load the model."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.session = get_session(napari_viewer)
        warm_up()
        warm_up_labels_display(self.viewer)
        self.running: _Running | None = None
        self.trainer = None  # the last trainer, for saving with its optimizer state
        self._last_event: TrainEvent | None = None
        self._checked: str | None = None  # the layer last found usable
        self._build_ui()
        self._readout = Throttle(self._show_readout, READOUT_MS, self)

        layers = self.viewer.layers.events
        for emitter in (layers.inserted, layers.removed, layers.moved, layers.reordered):
            emitter.connect(self._refresh_layers)
        layers.removed.connect(self._on_layer_removed)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.session.model_changed.connect(self._update_state)
        self._refresh_layers()
        self._update_state()
        self._window_filter_installed = False

    # -- UI ------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The 3D image to learn from and to segment")
        self.layer_combo.currentTextChanged.connect(self._check_selection)
        self.settings = TrainSettings()

        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip("Train a model on the image (runs in the background)")
        self.start_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop now; the model trained so far is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Embed every voxel with the model and cluster them at every k")
        self.segment_button.clicked.connect(self.start_segment)
        self.resample = QCheckBox("Resample to the model's voxel size")
        self.resample.setToolTip(
            "Resample the image (linear) to the voxel size the model was trained at before embedding; "
            "the labels come back on the image's grid"
        )
        self.resample.setVisible(False)
        self.voxel_note = QLabel()
        self.voxel_note.setWordWrap(True)
        self.voxel_note.setStyleSheet("color: #e5a00d;")
        self.voxel_note.setVisible(False)
        self.auto_segment = QCheckBox("segment when training ends")
        self.auto_segment.setChecked(True)
        self.save_button = QPushButton("Save model…")
        self.save_button.clicked.connect(self._save_dialog)
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip("Use a model trained before (here or with `hypseg train`) to segment this image")
        self.load_button.clicked.connect(self._load_dialog)

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, BAR_RANGE)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setVisible(False)
        self.readout = QLabel()
        self.readout.setWordWrap(True)
        self.readout.setVisible(False)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)

        top = QFormLayout()
        top.addRow("Image", self.layer_combo)
        buttons = QGridLayout()
        buttons.addWidget(self.start_button, 0, 0)
        buttons.addWidget(self.cancel_button, 0, 1)
        buttons.addWidget(self.segment_button, 1, 0)
        buttons.addWidget(self.auto_segment, 1, 1)
        buttons.addWidget(self.save_button, 2, 0)
        buttons.addWidget(self.load_button, 2, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.settings)
        layout.addLayout(buttons)
        layout.addWidget(self.voxel_note)
        layout.addWidget(self.resample)
        layout.addWidget(self.status)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.readout)
        layout.addWidget(self.model_label)
        # take only the height the controls need; the disk view below gets the rest
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)

    def event(self, event: QEvent) -> bool:
        # The dock's × (napari's remove_dock_widget) takes this widget out of its
        # dock with setParent(None) and does not delete it: a job left running
        # would install its model in the session of a widget no one sees.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and getattr(self, "running", None):
            self._abort("Stopped: the “1. Train and embed” panel was closed.")
        return super().event(event)

    def _abort(self, message: str) -> None:
        """Stop the running job for good: its result is dropped (unlike Cancel, which keeps the model)."""
        running = self.running
        if running is None:
            return
        running.stop(abort=True)
        self._set_status(message, error=True)
        self._update_state()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        window = self.window()
        if not self._window_filter_installed and isinstance(window, QMainWindow):
            window.installEventFilter(self)
            self._window_filter_installed = True

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close and obj is self.window():
            # the close may still be refused (confirm dialog): stop only once the window is really gone
            QTimer.singleShot(0, self._stop_if_window_closed)
        return False

    def _stop_if_window_closed(self) -> None:
        if self.running is not None and not self.window().isVisible():
            self._abort("Stopped: the napari window was closed.")

    # -- layers ----------------------------------------------------------------
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event=None) -> None:
        if not is_alive(self):  # napari events may reach a closed dock widget before it is collected
            return
        current = self.layer_combo.currentText()
        for layer in self._image_layers():
            layer.events.name.connect(self._refresh_layers)  # napari ignores repeated connections
        names = [layer.name for layer in self._image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        else:
            active = self.viewer.layers.selection.active
            three_d = [layer.name for layer in self._image_layers() if layer.ndim == 3 and not layer.rgb]
            choice = active.name if active is not None and active.name in three_d else (three_d or names or [""])[0]
            self.layer_combo.setCurrentText(choice)
        self.layer_combo.blockSignals(False)
        self._check_selection()

    def _on_active_layer(self, event=None) -> None:
        """Follow the image the user selects in the layer list (not while a job runs on another one)."""
        active = self.viewer.layers.selection.active
        if active is None or self.running is not None or not is_alive(self):
            return
        if self.layer_combo.findText(active.name) >= 0:
            self.layer_combo.setCurrentText(active.name)

    def selected_layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _check_selection(self, *_) -> None:
        """Say at once if the chosen layer cannot be used (keeps other messages when nothing changed)."""
        if self.running is not None:
            return
        try:
            check_image_layer(self.selected_layer())
        except UserError as exc:
            self._checked = None
            self._set_status(str(exc), error=True)
            return
        name = self.layer_combo.currentText()
        self._check_voxel_size()
        if name != self._checked:
            self._checked = name
            self._set_status("Ready: press Start training, or Load model… then Segment.")

    def _on_layer_removed(self, event) -> None:
        running = self.running
        if running is None or not is_alive(self):
            return
        layer = running.source.layer
        if layer is None or layer is event.value:
            self._abort(f"Stopped: the image layer “{running.source.name}” was closed.")

    # -- state -----------------------------------------------------------------
    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #ff6b6b;" if error else "")

    def _update_state(self) -> None:
        busy = self.running is not None
        has_model = self.session.model is not None
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and not self.running.job.cancelled)
        self.progress_bar.setVisible(busy)
        self.segment_button.setEnabled(not busy and has_model)
        self.save_button.setEnabled(not busy and has_model)
        self.load_button.setEnabled(not busy)
        self.layer_combo.setEnabled(not busy)
        self.settings.setEnabled(not busy)
        self.model_label.setText(f"Model: {self.session.model_info}" if has_model else "Model: none yet")
        self._check_voxel_size()
        self.resample.setEnabled(not busy)

    def voxel_sizes(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(the selected image's voxel size, the model's), both (z, y, x), when they differ by more than 20 %."""
        from ..segmentation.resample import voxel_size_differs

        model, layer = self.session.model, self.selected_layer()
        model_size = getattr(model, "voxel_size", None)
        if model_size is None or layer is None or layer.ndim != 3:
            return None
        layer_size = tuple(float(v) for v in layer.scale)
        return (layer_size, tuple(model_size)) if voxel_size_differs(layer_size, model_size) else None

    def _check_voxel_size(self) -> None:
        """Warn in the dock, and offer to resample, when the image's voxel size is not the model's."""
        from ..segmentation.resample import voxel_size_warning

        sizes = self.voxel_sizes()
        self.voxel_note.setVisible(sizes is not None)
        self.resample.setVisible(sizes is not None)
        if sizes is not None:
            text = voxel_size_warning(*sizes)
            self.voxel_note.setText(
                f"{text[0].upper()}{text[1:]}. Tick “{self.resample.text()}” to segment it at the model's scale."
            )

    def _fail(self, message: str) -> None:
        self._set_status(message, error=True)
        show_error(message)

    @property
    def busy(self) -> bool:
        return self.running is not None

    # -- training --------------------------------------------------------------
    def start_training(self) -> bool:
        """Start training on the selected image; False (with a message) if it cannot start."""
        if self.running is not None:
            return False  # one job at a time (the button is disabled too)
        layer = self.selected_layer()
        try:
            check_image_layer(layer)
            model_config, train_config = self.settings.configs()
            if min(layer.level_shapes[0]) < model_config.patch_size:
                raise UserError(
                    f"“{layer.name}” (shape {tuple(int(n) for n in layer.level_shapes[0])}) "
                    "is smaller than the model's "
                    f"{model_config.patch_size}³ patch along some axis; open a larger volume"
                )
        except UserError as exc:
            self._fail(str(exc))
            return False
        source = SourceInfo.from_layer(layer)
        job = TrainJob(
            layer.data[0] if layer.multiscale else layer.data,
            model_config,
            train_config,
            voxel_size=tuple(float(v) for v in layer.scale),
        )
        worker = thread_worker(job.run, start_thread=False)()
        self._last_event = None
        self._begin("train", job, worker, source, progress(total=train_config.steps, desc="hypseg: training"))
        worker.yielded.connect(self._on_train_event)
        worker.finished.connect(self._on_train_finished)
        self.session.set_training(True)
        self._set_status(f"Preparing training on “{source.name}”…")
        self._set_readout("")
        self._set_bar(0, "training: starting…")
        open_widget(self.viewer, DISK_WIDGET)
        worker.start()
        return True

    def _begin(self, kind: str, job, worker, source: SourceInfo, bar) -> None:
        self.running = running = _Running(kind, job, worker, source, bar)
        # stop the job when the widget goes away with it running (the window closes, the dock is deleted)
        running.forget = stop_when_destroyed(self, partial(_abort_orphaned, running, self.session))
        self._update_state()

    def _end(self) -> _Running | None:
        running, self.running = self.running, None
        if running is not None:
            running.forget()
            running.close_bar()
        self._update_state()
        return running

    def cancel(self) -> None:
        """Stop the running job; training keeps the model trained so far."""
        if self.running is None:
            return
        self.running.stop(abort=False)
        self._set_status("Cancelling…")
        self._update_state()

    def _on_train_event(self, event) -> None:
        running = self.running
        if running is None or running.aborted:
            return
        if isinstance(event, JobFailed):
            running.last = event
            return
        running.last = event
        if event.kind == "start":
            device = running.job.trainer.device if running.job.trainer else None
            label = describe_device(device) if device is not None else "?"
            self.settings.device_label.setText(f"in use: {label}")
            self._set_status(f"Training on {label}… (Cancel keeps the model so far)")
        elif event.kind == "step":
            self._last_event = event
            self._readout.request()
        elif event.kind == "preview" and event.preview is not None:
            hyperbolic = running.job.model_config.hyperbolic
            self.session.set_preview(event.preview, running.source, hyperbolic=hyperbolic)

    def _set_readout(self, text: str) -> None:
        # hidden when empty: an empty label still takes a line of the dock's height
        self.readout.setText(text)
        self.readout.setVisible(bool(text))

    def _set_bar(self, fraction: float, text: str) -> None:
        self.progress_bar.setValue(int(round(BAR_RANGE * min(max(fraction, 0.0), 1.0))))
        self.progress_bar.setFormat(f"{text} %p%" if text else "%p%")

    def _show_readout(self) -> None:
        running = self.running
        if running is not None and running.kind == "segment":
            self._show_segment_progress(running)
            return
        event = self._last_event
        if event is None or running is None:
            return
        max_minutes = running.job.train_config.max_minutes
        limit, _, fraction = run_limit(event, max_minutes)
        if running.bar is not None:
            running.bar.n = event.step
            running.bar.refresh()
        self._set_bar(fraction, f"step {event.step}/{event.total_steps}" if limit == "steps" else "time budget")
        self._set_readout(
            f"step {event.step}/{event.total_steps} · {loss_text(event)} · "
            f"{event.steps_per_s:.2f} steps/s · {limit_text(event, max_minutes)}"
        )

    def _on_train_finished(self) -> None:
        self._readout.flush()
        running = self._end()
        self.session.set_training(False)
        if running is None:
            return
        job, last = running.job, running.last
        if isinstance(last, JobFailed):
            self._fail(last.message)
            return
        if running.aborted or job.trainer is None or not isinstance(last, TrainEvent) or not last.finished:
            if not running.aborted:
                self._set_status("Training stopped.")
            return
        self.trainer = job.trainer
        minutes = last.elapsed_s / 60.0
        info = f"trained on “{running.source.name}”, {last.step} steps ({minutes:.1f} min)"
        self.session.set_model(job.trainer.model, info)
        messages = {
            "done": f"Finished {last.step} steps in {format_seconds(last.elapsed_s)}.",
            "time_budget": f"Time budget reached after {last.step} steps; the model is kept.",
            "cancelled": f"Cancelled at step {last.step}; the model so far is kept: "
            "Segment it, Save it, or Start again.",
            "nonfinite": last.message,
        }
        self._set_status(messages.get(last.kind, last.message), error=last.kind == "nonfinite")
        if last.kind == "nonfinite":
            show_warning(last.message)
        elif last.kind in ("done", "time_budget") and self.auto_segment.isChecked():
            if running.source.layer is not None and running.source.layer in self.viewer.layers:
                self.layer_combo.setCurrentText(running.source.layer.name)
                self.start_segment()

    # -- segmentation ----------------------------------------------------------
    def start_segment(self) -> bool:
        """Embed and cluster the selected image with the current model; False if it cannot start."""
        if self.running is not None:
            return False
        model = self.session.model
        layer = self.selected_layer()
        try:
            if model is None:
                raise UserError("No model yet: press Start training, or Load model… first.")
            check_image_layer(layer)
        except UserError as exc:
            self._fail(str(exc))
            return False
        try:
            config = self.settings.segment_config()
        except UserError as exc:
            self._fail(str(exc))
            return False
        source = SourceInfo.from_layer(layer)
        sizes = self.voxel_sizes()
        resample = sizes if sizes is not None and self.resample.isChecked() else None
        job = SegmentJob(layer.data[0] if layer.multiscale else layer.data, model, config, resample=resample)
        worker = thread_worker(job.run, start_thread=False)()
        self._begin("segment", job, worker, source, progress(total=0, desc="hypseg: embedding"))
        worker.yielded.connect(self._on_segment_progress)
        worker.returned.connect(self._on_segment_returned)
        worker.finished.connect(self._on_segment_finished)
        self._set_status(
            f"Segmenting “{source.name}” (embedding every voxel, then clustering k = {config.k_min}…{config.k_max})…"
        )
        self._set_bar(0, "embedding")
        worker.start()
        return True

    def _on_segment_progress(self, event: SegmentProgress) -> None:
        running = self.running
        if running is None or running.kind != "segment":
            return
        running.progress = event
        self._readout.request()

    def _show_segment_progress(self, running: _Running) -> None:
        if running.progress is None or running.bar is None:
            return
        stage, done, total = running.progress.stage, running.progress.done, running.progress.total
        bar = running.bar
        if bar.total != total:
            bar.total = total
        bar.set_description("hypseg: embedding" if stage == "embed" else "hypseg: clustering")
        bar.n = done
        bar.refresh()
        self._set_bar(done / total if total else 0.0, "embedding" if stage == "embed" else "clustering")
        self._set_readout(f"{'embedding' if stage == 'embed' else 'clustering'}: {done}/{total}")

    def _on_segment_returned(self, result) -> None:
        running = self.running
        if running is None:
            return
        running.last = result

    def _on_segment_finished(self) -> None:
        self._readout.cancel()
        running = self._end()
        if running is None or running.aborted:
            return
        result = running.last
        if isinstance(result, JobFailed):
            self._fail(result.message)
        elif isinstance(result, JobCancelled) or result is None:
            self._set_status("Segmentation cancelled.")
        else:
            job = running.job
            self.session.set_result(Result(result, job.config, job.model, running.source, job._data))
            ks = self.session.k_values
            self._set_status(
                f"Segmented “{running.source.name}”: levels k = {ks[0]}…{ks[-1]} ready. Use “{CLUSTERS_WIDGET}”."
            )
            self._set_readout("")
            open_widget(self.viewer, CLUSTERS_WIDGET)

    # -- model files -----------------------------------------------------------
    def save_model(self, path: str | Path) -> Path | None:
        """Write the current model (with optimizer state when it was trained here)."""
        model = self.session.model
        if model is None:
            self._fail("No model to save yet: train or load one first.")
            return None
        try:
            if self.trainer is not None and self.trainer.model is model:
                written = self.trainer.save(path)
            else:
                written = save_checkpoint(path, model)
        except (OSError, RuntimeError, UserError) as exc:
            self._fail(f"Could not save the model to {path}: {exc}")
            return None
        show_info(f"Model saved to {written}")
        return written

    def load_model(self, path: str | Path) -> bool:
        """Load a model file; then Segment works on any image without training."""
        path = Path(path)
        try:
            device = self.settings.torch_device()
        except UserError as exc:
            self._fail(str(exc))
            return False
        if not path.is_file():
            self._fail(f"Model file not found: {path}")
            return False
        try:
            model = load_model(path, device=device)
        except UserError as exc:  # the file could not be read as a napari-hypseg model
            if "newer" in str(exc):  # a model from a newer napari-hypseg: its own message says what to do
                self._fail(str(exc))
            else:
                self._fail(
                    f"“{path.name}” is not a napari-hypseg model: it looks like {describe_file(path)}; {MODEL_FILE}."
                )
            return False
        except Exception as exc:  # a model file whose weights do not fit its config, out of memory...
            self._fail(explain(exc, "loading the model"))
            return False
        self.trainer = None
        config = model.config
        self.session.set_model(
            model, f"loaded from {Path(path).name} ({config.patch_size}³ patches, d = {config.latent_dim})"
        )
        self._set_status("Model loaded: pick an image and press Segment.")
        return True

    def _default_model_path(self) -> str:
        layer = self.selected_layer()
        if layer is None:
            return str(Path.cwd() / "model_hypseg.pt")
        source = SourceInfo.from_layer(layer)
        path = source.source_path
        stem = (path.name.split(".")[0] if path else layer.name) or "model"
        return str(default_folder(source) / f"{stem}_hypseg.pt")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save hypseg model", self._default_model_path(), MODEL_FILTER)
        if path:
            self.save_model(path if Path(path).suffix else f"{path}.pt")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load hypseg model", str(Path(self._default_model_path()).parent), MODEL_FILTER
        )
        if path:
            self.load_model(path)
