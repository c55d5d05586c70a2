"""The statistics table of the Clusters widget: one row per cluster at the current k, exportable as CSV.

The numbers come from :func:`napari_hypseg.segmentation.stats.cluster_statistics`
(no science here). They are computed in a worker when the level changes
(a large tomogram takes about a second); a newer level makes an older
computation stale, so fast slider moves never show the wrong table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..io.levels import STATS_SUFFIX, UNITS, level_name, mode_tag
from ..segmentation.stats import ClusterStats, cluster_statistics, write_statistics_csv
from ._export import default_folder, file_stem
from ._jobs import JobFailed, explain
from ._layers import SourceInfo
from ._qtutil import Throttle, is_alive

if TYPE_CHECKING:
    from ._session import HypsegSession

COLUMNS = ("cluster", "voxels", "volume", "mean", "sd", "bounding box (z, y, x)")
CSV_FILTER = "CSV table (*.csv);;All files (*)"


def voxel_size_and_unit(source: SourceInfo) -> tuple[tuple[float, float, float], str]:
    """Physical voxel size (z, y, x) of the source and its unit ("" when unknown).

    From the file's voxel-to-world affine when the reader stored one, else
    from the layer's transform.
    """
    unit = source.layer_kwargs["metadata"].get("unit") or UNITS.get(source.geometry.format, "")
    if unit.startswith("pixel"):  # e.g. the binned HIV tomogram, whose voxel size is in unbinned pixels
        unit = "px"
    return source.geometry.spacing, unit


def _statistics(labels, image, voxel_size, request):
    try:
        return cluster_statistics(labels, image, voxel_size), request
    except Exception as exc:  # shown in the panel, not raised in the thread
        return JobFailed(exc, explain(exc, "computing cluster statistics")), request


class StatsPanel(QWidget):
    """Table of the current level's clusters and a "Save table as CSV…" button."""

    def __init__(self, session: HypsegSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.rows: list[ClusterStats] | None = None
        self.k: int | None = None  # level the table shows
        self.unit = ""
        self._request = 0
        self._pending = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(100)
        self.table.setMaximumHeight(220)
        self.save_button = QPushButton("Save table as CSV…")
        self.save_button.setToolTip("One row per cluster of the current level: size, volume, intensity, bounding box")
        self.save_button.clicked.connect(self._save_dialog)
        self.status = QLabel()
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

        self._throttle = Throttle(self._compute, 150, self)
        session.level_changed.connect(self._on_level)
        session.result_changed.connect(self._on_level)
        self._on_level()

    # -- computing -------------------------------------------------------------
    def _on_level(self, *_) -> None:
        if not is_alive(self):
            return
        self._request += 1  # whatever is computing now is stale
        self.rows = None
        self.save_button.setEnabled(False)
        if self.session.current_labels() is None:
            self.table.setRowCount(0)
            self.status.setText("")
            return
        self.status.setText(f"Computing statistics for k = {self.session.k}…")
        self._throttle.request()

    def _compute(self) -> None:
        result, labels = self.session.result, self.session.current_labels()
        if result is None or labels is None:
            return
        source = result.source
        layer = source.layer
        image = None
        if layer is not None and not layer.multiscale and isinstance(layer.data, np.ndarray):
            image = layer.data if layer.data.shape == labels.shape else None
        voxel_size, self.unit = voxel_size_and_unit(source)
        request = self._request
        self._pending = (request, self.session.k)
        worker = thread_worker(_statistics, start_thread=False)(labels, image, voxel_size, request)
        worker.returned.connect(self._on_returned)
        worker.start()

    def _on_returned(self, payload) -> None:
        rows, request = payload
        if not is_alive(self) or request != self._request or self._pending is None:
            return  # a newer level or segmentation arrived meanwhile
        _, k = self._pending
        if isinstance(rows, JobFailed):
            self.status.setText(rows.message)
            return
        self.rows, self.k = rows, k
        self._fill(rows)
        total = sum(row.voxels for row in rows)
        self.status.setText(f"k = {k}: {len(rows)} clusters, {total:,} voxels")
        self.save_button.setEnabled(True)

    def _fill(self, rows: list[ClusterStats]) -> None:
        volume = f"volume ({self.unit}³)" if self.unit else "volume"
        self.table.setHorizontalHeaderLabels([*COLUMNS[:2], volume, *COLUMNS[3:]])
        self.table.setRowCount(len(rows))
        layer = self.session.clusters_layer
        colors = None
        if layer is not None and rows:
            colors = np.asarray(layer.colormap.map(np.array([row.cluster for row in rows])), dtype=float).reshape(-1, 4)
        for i, row in enumerate(rows):
            box = f"{row.bbox_min} – {row.bbox_max}"
            cells = [str(row.cluster), f"{row.voxels:,}", f"{row.volume:.4g}", f"{row.mean:.4g}", f"{row.sd:.4g}", box]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j == 0 and colors is not None:
                    r, g, b, _ = (int(255 * c) for c in colors[i])
                    item.setBackground(QColor(r, g, b))
                    item.setForeground(
                        QColor(0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else QColor(255, 255, 255)
                    )
                self.table.setItem(i, j, item)

    # -- CSV -------------------------------------------------------------------------
    def default_csv_path(self) -> Path | None:
        result = self.session.result
        if result is None or self.k is None:
            return None
        name = level_name(file_stem(result.source), self.k, mode_tag(self.session.mode, self.session.intensity))
        return default_folder(result.source) / f"{name}{STATS_SUFFIX}"

    def save_csv(self, path: str | Path) -> Path | None:
        """Write the table shown to ``path`` (CSV); None (with a message) if there is none or it fails."""
        if self.rows is None:
            show_error("No statistics yet: segment an image, then wait for the table.")
            return None
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".csv")
        try:
            written = write_statistics_csv(path, self.rows, unit=self.unit or None)
        except Exception as exc:
            message = explain(exc, "saving the statistics")
            self.status.setText(message)
            show_error(message)
            return None
        self.status.setText(f"Saved {written}")
        show_info(f"Saved {written}")
        return written

    def _save_dialog(self) -> None:
        default = self.default_csv_path()
        if default is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save cluster statistics", str(default), CSV_FILTER)
        if path:
            self.save_csv(path)
