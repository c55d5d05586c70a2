"""Export cluster levels as MRC or NIfTI files on the source volume's grid.

Files go through the plugin's labels writer (the hook behind File › Save
Layers), fed with the source layer's geometry, so an exported level and a
saved "hypseg clusters" layer are the same file: the source's voxel size,
origin and header. Writing runs in a worker (gzip of a big volume takes
seconds); :class:`ExportPanel` is the row of controls in the Clusters widget.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..io.atomic import full_suffix
from ..segment_modes import DEFAULT_MODE
from ._jobs import JobFailed, explain
from ._layers import SourceInfo
from ._writer import write_labels as write_labels_hook

if TYPE_CHECKING:
    from ._session import HypsegSession

#: Format choices: (label, file suffix, file-dialog filter).
FORMATS = {
    "mrc": ("MRC", ".mrc", "MRC (*.mrc *.rec *.map)"),
    "nifti": ("NIfTI", ".nii.gz", "NIfTI (*.nii.gz *.nii)"),
}


def file_stem(source: SourceInfo) -> str:
    """Base of exported file names: the source file's name without suffix, else the layer name."""
    path = source.source_path
    if path is not None:
        suffix = full_suffix(path)
        name = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    else:
        name = source.name
    return re.sub(r"[^\w.+-]+", "_", name).strip("_") or "labels"


def default_folder(source: SourceInfo) -> Path:
    """The source file's folder; the working directory for layers without a file (samples, arrays)."""
    path = source.source_path
    return path.parent if path is not None and path.parent.is_dir() else Path.cwd()


def dialog_filter(first: str) -> str:
    """File-dialog filter with format ``first`` first and every format listed once."""
    order = [first, *(key for key in FORMATS if key != first)]
    return ";;".join(FORMATS[key][2] for key in order)


def default_path(source: SourceInfo, k: int, fmt: str, *, mode: str = DEFAULT_MODE) -> Path:
    """``<folder>/<stem>_k<k>[_flat].<suffix>``, e.g. ``tomo_k5.mrc`` next to ``tomo.mrc``."""
    tag = "" if mode == DEFAULT_MODE else f"_{mode}"
    return default_folder(source) / f"{file_stem(source)}_k{k}{tag}{FORMATS[fmt][1]}"


def _writer_meta(source: SourceInfo, k: int, mode: str) -> dict[str, Any]:
    kwargs = source.layer_kwargs
    return {
        "name": f"{source.name} k={k}",
        "scale": kwargs["scale"],
        "translate": kwargs["translate"],
        "rotate": kwargs["rotate"],
        "shear": kwargs["shear"],
        "affine": kwargs["affine"],
        "metadata": {**kwargs["metadata"], "hypseg_k": k, "hypseg_mode": mode},
    }


def export_level(path: str | Path, labels: np.ndarray, source: SourceInfo, *, k: int, mode: str = DEFAULT_MODE) -> Path:
    """Write one level to ``path`` (suffix picks the format) with the source geometry."""
    written = write_labels_hook(str(path), labels, _writer_meta(source, k, mode))
    return Path(written[0])


def export_levels(
    folder: str | Path,
    labels_of: Callable[[int], np.ndarray],
    ks: Sequence[int],
    source: SourceInfo,
    fmt: str,
    *,
    mode: str = DEFAULT_MODE,
    stem: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Path]:
    """Write every level ``k`` in ``ks`` as ``<folder>/<stem>_k<k>.<suffix>``; returns the files written."""
    folder = Path(folder)
    stem = stem or file_stem(source)
    tag = "" if mode == DEFAULT_MODE else f"_{mode}"
    written = []
    for i, k in enumerate(ks):
        if should_stop is not None and should_stop():
            break
        path = folder / f"{stem}_k{k}{tag}{FORMATS[fmt][1]}"
        written.append(export_level(path, labels_of(k), source, k=k, mode=mode))
        if progress is not None:
            progress(i + 1, len(ks))
    return written


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
        for key, (label, suffix, _) in FORMATS.items():
            self.format.addItem(f"{label} ({suffix})", key)
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
            self.format.setCurrentIndex(list(FORMATS).index(source.file_format))

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
        k, mode = self.session.k, self.session.mode
        return self._start(
            thread_worker(_run_safely, start_thread=False)(export_level, path, labels, result.source, k=k, mode=mode),
            f"Saving k = {k} to {Path(path).name}…",
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
                export_levels, folder, result.segmentation.labels, ks, result.source, self.fmt,
                mode=self.session.mode, should_stop=self._stop.is_set,
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
        default = default_path(result.source, self.session.k, self.fmt, mode=self.session.mode)
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(default), dialog_filter(self.fmt))
        if path:
            if not full_suffix(Path(path)):
                path += FORMATS[self.fmt][1]
            self.export_current(path)

    def _save_all_dialog(self) -> None:
        result = self.session.result
        if result is None:
            show_error("Nothing to export yet: segment an image first.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for all levels", str(default_folder(result.source)))
        if folder:
            self.export_all(folder)
