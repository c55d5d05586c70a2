"""Export cluster levels as MRC or NIfTI files on the source volume's grid.

Files are written by :func:`napari_hypseg.io.levels.write_levels` (all
levels) and :func:`napari_hypseg.io.write_labels` (one), given the source's
:class:`~napari_hypseg.io.volume.Geometry`, which is also what File › Save
Layers uses for a "hypseg clusters" layer: an exported level and a saved
layer are the same file, with the source's voxel size, origin and header.
Writing runs in a worker (gzip of a big volume takes seconds);
:class:`ExportPanel` is the row of controls in the Clusters widget.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..io import write_labels
from ..io.atomic import full_suffix, stem_of
from ..io.levels import DEFAULT_FORMAT, FORMATS, LabelFormat, level_name, mode_tag, write_levels
from ..segment_config import DEFAULT_INTENSITY
from ..segment_modes import DEFAULT_MODE
from ._jobs import JobFailed, explain
from ._layers import SourceInfo

if TYPE_CHECKING:
    from ._session import HypsegSession


def label_format(choice: str) -> LabelFormat:
    """The file format of a panel choice: the default format of a kind of source, ``"mrc"`` or ``"nifti"``."""
    return FORMATS[DEFAULT_FORMAT[choice]]


def file_stem(source: SourceInfo) -> str:
    """Base of exported file names: the source file's name without suffix, else the layer name."""
    path = source.source_path
    name = stem_of(path) if path is not None else source.name
    return re.sub(r"[^\w.+-]+", "_", name).strip("_") or "labels"


def default_folder(source: SourceInfo) -> Path:
    """The source file's folder; the working directory for layers without a file (samples, arrays)."""
    path = source.source_path
    return path.parent if path is not None and path.parent.is_dir() else Path.cwd()


def dialog_filter(first: str) -> str:
    """File-dialog filter with the panel choice ``first`` first and every choice listed once."""
    order = [first, *(key for key in DEFAULT_FORMAT if key != first)]
    return ";;".join(label_format(key).dialog_filter for key in order)


def default_path(
    source: SourceInfo, k: int, fmt: str, *, mode: str = DEFAULT_MODE, intensity: str = DEFAULT_INTENSITY
) -> Path:
    """``<folder>/<stem>_k<k>[_flat].<suffix>``, e.g. ``tomo_k5.mrc`` next to ``tomo.mrc`` (:func:`mode_tag`)."""
    name = level_name(file_stem(source), k, mode_tag(mode, intensity))
    return default_folder(source) / f"{name}{label_format(fmt).suffix}"


def export_level(path: str | Path, labels: np.ndarray, source: SourceInfo) -> Path:
    """Write one level to ``path`` (suffix picks the format) with the source geometry."""
    return write_labels(path, labels, like=source.geometry)


def export_levels(
    folder: str | Path,
    labels_of: Callable[[int], np.ndarray],
    ks: Sequence[int],
    source: SourceInfo,
    fmt: str,
    *,
    mode: str = DEFAULT_MODE,
    intensity: str = DEFAULT_INTENSITY,
    stem: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Path]:
    """Write every level ``k`` in ``ks`` as ``<folder>/<stem>_k<k>[_<mode>].<suffix>``; returns the files written."""
    return write_levels(
        source.geometry,
        labels_of,
        ks,
        folder,
        fmt=DEFAULT_FORMAT[fmt],
        stem=stem or file_stem(source),
        tag=mode_tag(mode, intensity),
        should_stop=should_stop,
    )


def _run_safely(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # shown by the panel as one explained notification
        return JobFailed(exc, explain(exc, "export"))


class ExportPanel(QWidget):
    """Format choice and the two export buttons, for the session's current result."""

    def __init__(self, session: HypsegSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.format = QComboBox()
        for key in DEFAULT_FORMAT:
            choice = label_format(key)
            self.format.addItem(f"{choice.title} ({choice.suffix})", key)
        self.format.setToolTip("File format; defaults to the source volume's")
        self.save_one = QPushButton("Save this level…")
        self.save_one.setToolTip("Write the current k as a labels file on the source grid")
        self.save_one.clicked.connect(self._save_one_dialog)
        self.save_all = QPushButton("Save all levels…")
        self.save_all.setToolTip("Write one file per k (<name>_k2, <name>_k3, …) into a folder")
        self.save_all.clicked.connect(self._save_all_dialog)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self._worker = None
        self._stop = threading.Event()
        self.last_written: list[Path] = []

        row = QHBoxLayout()
        row.addWidget(QLabel("Format"))
        row.addWidget(self.format, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_one)
        buttons.addWidget(self.save_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.destroyed.connect(lambda *_, stop=self._stop: stop.set())

    def set_source(self, source: SourceInfo | None) -> None:
        """A new segmentation: pick its file's format, forget what was saved for the previous one."""
        self.last_written = []
        if not self.busy:
            self.status.setText("")
        if source is not None:
            self.format.setCurrentIndex(list(DEFAULT_FORMAT).index(source.file_format))

    @property
    def fmt(self) -> str:
        return self.format.currentData()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _update_buttons(self) -> None:
        self.save_one.setEnabled(not self.busy)
        self.save_all.setEnabled(not self.busy)

    # -- programmatic API (the dialogs call these) -------------------------------
    def export_current(self, path: str | Path):
        """Write the current level to ``path`` in a worker; returns the worker (None if nothing to export)."""
        result, labels = self.session.result, self.session.current_labels()
        if result is None or labels is None:
            show_error("Nothing to export yet: segment an image first.")
            return None
        return self._start(
            thread_worker(_run_safely, start_thread=False)(export_level, path, labels, result.source),
            f"Saving k = {self.session.k} to {Path(path).name}…",
        )

    def export_all(self, folder: str | Path):
        """Write every level into ``folder`` in a worker; returns the worker (None if nothing to export)."""
        result = self.session.result
        if result is None:
            show_error("Nothing to export yet: segment an image first.")
            return None
        self._stop.clear()
        ks = self.session.k_values
        return self._start(
            thread_worker(_run_safely, start_thread=False)(
                export_levels,
                folder,
                result.segmentation.labels,
                ks,
                result.source,
                self.fmt,
                mode=self.session.mode,
                intensity=self.session.intensity,
                should_stop=self._stop.is_set,
            ),
            f"Saving {len(ks)} levels to {folder}…",
        )

    def _start(self, worker, message: str):
        self._worker = worker
        self.status.setText(message)
        self._update_buttons()
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        worker.start()
        return worker

    def _on_returned(self, written) -> None:
        if isinstance(written, JobFailed):
            self.status.setText(written.message)
            show_error(written.message)
            return
        files = [written] if isinstance(written, Path) else list(written)
        self.last_written = files
        text = f"Saved {files[0]}" if len(files) == 1 else f"Saved {len(files)} files to {files[0].parent}"
        self.status.setText(text)
        show_info(text)

    def _on_finished(self) -> None:
        self._worker = None
        self._update_buttons()

    # -- dialogs -----------------------------------------------------------------
    def _save_one_dialog(self) -> None:
        result = self.session.result
        if result is None:
            show_error("Nothing to export yet: segment an image first.")
            return
        default = default_path(
            result.source, self.session.k, self.fmt, mode=self.session.mode, intensity=self.session.intensity
        )
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(default), dialog_filter(self.fmt))
        if path:
            if not full_suffix(Path(path)):
                path += label_format(self.fmt).suffix
            self.export_current(path)

    def _save_all_dialog(self) -> None:
        result = self.session.result
        if result is None:
            show_error("Nothing to export yet: segment an image first.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for all levels", str(default_folder(result.source)))
        if folder:
            self.export_all(folder)
