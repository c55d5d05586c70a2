"""The "2. Poincaré disk" dock widget: voxel embeddings on the unit disk, linked to the viewer.

* While training runs it redraws the live preview (at most every 200 ms).
* After segmenting it shows the dense embedding: a subsample of up to
  50 000 voxels coloured like the "hypseg clusters" layer, over a density
  image of all voxels. Points are rasterised (one image, constant redraw
  cost) instead of drawn as one matplotlib marker each.
* Drawing a lasso or rectangle on the disk marks the matching voxels in the
  "hypseg selection" labels layer (computed on all voxels, in a worker);
  "Make labels layer" keeps a copy.
* Clicking a voxel in the viewer marks its point on the disk.
* With "1. Train and embed" and "3. Clusters and export" docked beside it, those
  two share one place as tabs (steps 1 and 3 follow each other), so the disk
  keeps about half the dock column: three docks stacked in a 1080 px window
  left it a wide strip.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.widgets import LassoSelector, RectangleSelector
from napari.qt.threading import thread_worker
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..disk_plot import label_colors
from . import _disk_data
from ._layers import SELECTION_LAYER, SourceInfo, add_labels_copy, unique_layer_name, upsert_labels, voxel_at
from ._qtutil import Throttle, is_alive
from ._session import CLUSTERS_WIDGET, PLUGIN, TRAIN_WIDGET, get_session, unwrap_viewer

if TYPE_CHECKING:
    import napari

#: Edge of the point raster before the canvas is laid out; afterwards it matches the axes' pixels.
RASTER = 420
#: Smallest canvas (pixels): the disk stays readable when the dock is squeezed.
MIN_CANVAS = 300
#: Scale hint: rings at these hyperbolic distances from the centre (curvature -1: radius tanh(d / 2)).
SCALE_RINGS = (1.0, 2.0, 3.0)
SCALE_HINT = "rings: hyperbolic distance 1, 2, 3 from the centre · the rim is infinitely far"
REDRAW_MS = 200
_PREVIEW_COLOR = np.array([0.55, 0.75, 1.0, 1.0], dtype=np.float32)
SELECTION_COLOR = "#ffd60a"
SELECTION_RGBA = (1.0, 0.839, 0.039, 1.0)


def _dock_of(widget: QWidget | None) -> QDockWidget | None:
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def _docked_beside(dock: QDockWidget, window: QMainWindow, other: QDockWidget | None) -> bool:
    return (
        other is not None
        and other.isVisible()
        and not other.isFloating()
        and window.dockWidgetArea(other) == window.dockWidgetArea(dock)
    )


class _DockWatcher(QObject):
    """Calls ``arrange()`` on the next event-loop turn after a dock joins ``window`` or is shown or hidden.

    Qt has no "dock added" signal, so this listens for the window's
    ChildAdded events, then follows each dock's visibilityChanged: a new
    dock becomes visible only after a queued show, later than ChildAdded.
    Bursts coalesce into one call.
    """

    def __init__(self, window: QMainWindow, arrange, parent: QObject):
        super().__init__(parent)
        self._window = window
        self._arrange = arrange
        self._followed: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._run)
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if obj is self._window and event.type() == QEvent.Type.ChildAdded:
            self.schedule()
        return False

    def schedule(self, *_) -> None:
        self._timer.start(0)

    def _run(self) -> None:
        # a child is a QDockWidget only once constructed: look for new ones now, not in eventFilter
        for dock in self._window.findChildren(QDockWidget):
            if id(dock) not in self._followed:
                self._followed.add(id(dock))
                dock.visibilityChanged.connect(self.schedule)
        self._arrange()

    def remove(self) -> None:
        self._timer.stop()
        if is_alive(self._window):
            self._window.removeEventFilter(self)


def _with_context(fn, context, *args, **kwargs):
    """Run ``fn`` in a worker and return its result with what it belongs to (source, binning)."""
    return fn(*args, **kwargs), context


class DiskView(QWidget):
    """Poincaré-disk view of the current embedding (training preview or dense result)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.session = get_session(napari_viewer)
        self.points: _disk_data.DiskPoints | None = None
        self.source: SourceInfo | None = None
        self.binning = 1  # the dense embedding of a binned segmentation lives on the binned grid
        self._colors: np.ndarray | None = None
        self._selected: np.ndarray | None = None
        self._vertices: np.ndarray | None = None
        self._marked: np.ndarray | None = None
        self._selection_layer = None
        self._pending_preview = None
        self._info_text = ""
        self._dense_request = 0
        self._hyperbolic = True  # ball latents (distance rings apply) or Euclidean ones
        self._dock_watcher: _DockWatcher | None = None
        self._tabbed_once = False
        self._docks_beside = (False, False)  # (train, clusters) shown beside the disk at the last look: which is new

        self._build_ui()
        self._redraw = Throttle(self._draw_now, REDRAW_MS, self)
        self._preview_throttle = Throttle(self._apply_preview, REDRAW_MS, self)

        self.session.preview_changed.connect(self._on_preview)
        self.session.result_changed.connect(self._on_result)
        self.session.level_changed.connect(self._on_level)
        self.session.picked.connect(self._on_picked)
        self._install_click_callback()

        if self.session.result is not None:
            self._on_result()
        elif self.session.preview is not None:
            self._on_preview(self.session.preview)
        else:
            self._set_info(
                "Start training in “1. Train and embed”: the disk fills with voxel embeddings as the model learns."
            )

    # -- UI ------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.figure = Figure(figsize=(4, 4), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(MIN_CANVAS, MIN_CANVAS)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        ax = self.ax = self.figure.add_axes((0.02, 0.02, 0.96, 0.96))
        ax.set_xlim(*_disk_data.FULL_DISK[:2])
        ax.set_ylim(*_disk_data.FULL_DISK[2:])
        ax.set_aspect("equal")
        ax.set_axis_off()
        extent = _disk_data.FULL_DISK
        self._density = ax.imshow(
            np.zeros((2, 2)),
            extent=extent,
            origin="lower",
            cmap="gray",
            alpha=0.6,
            interpolation="bilinear",
            visible=False,
            zorder=1,
        )
        self._image = ax.imshow(
            np.zeros((RASTER, RASTER, 4), dtype=np.float32),
            extent=extent,
            origin="lower",
            interpolation="nearest",
            zorder=2,
        )
        # under the points: an embedding collapsed onto the rim (early training) must stay visible
        self._circle = Circle((0, 0), 1.0, fill=False, lw=1.2, zorder=1.5)
        ax.add_patch(self._circle)
        self._rings = []
        for d in SCALE_RINGS:
            ring = Circle((0, 0), float(np.tanh(d / 2.0)), fill=False, lw=0.6, ls=(0, (2, 3)), zorder=1.4)
            ax.add_patch(ring)
            label = ax.text(
                0.0,
                float(np.tanh(d / 2.0)),
                f" {d:g}",
                fontsize=7,
                va="bottom",
                ha="left",
                zorder=1.4,
                clip_on=True,
            )
            self._rings.append((ring, label))
        self.scale_hint = ax.text(
            0.01,
            0.01,
            SCALE_HINT,
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
            ha="left",
            zorder=6,
        )
        (self._marker,) = ax.plot([], [], marker="o", ms=11, mfc="none", mew=2.2, color="#ff3b30", zorder=5)
        (self._outline,) = ax.plot([], [], lw=1.0, ls="--", color=SELECTION_COLOR, zorder=4)

        self.fit = QCheckBox("zoom to points")
        self.fit.setChecked(True)
        self.fit.setToolTip(
            "Zoom onto the region of the disk the points occupy (they often crowd near the rim, "
            "where the disk shrinks distances); untick to see the whole disk"
        )
        self.fit.toggled.connect(self._on_fit)
        self.selector_mode = QComboBox()
        self.selector_mode.addItems(["lasso", "rectangle"])
        self.selector_mode.setToolTip("Shape drawn on the disk to select points")
        self.selector_mode.currentTextChanged.connect(self._set_selector)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget the selection and remove the “hypseg selection” layer")
        self.clear_button.clicked.connect(self.clear_selection)
        self.keep_button = QPushButton("Make labels layer")
        self.keep_button.setToolTip("Copy the selected voxels into a new, editable labels layer")
        self.keep_button.clicked.connect(self.selection_to_layer)
        self.hint = QLabel("Draw on the disk to select voxels · click a voxel in the viewer to find its point")
        self.hint.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.fit)
        row.addWidget(QLabel("Select:"))
        row.addWidget(self.selector_mode)
        row.addWidget(self.clear_button)
        row.addWidget(self.keep_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(row)
        layout.addWidget(self.hint)

        self._lasso = LassoSelector(ax, self._on_lasso, useblit=False, props={"color": SELECTION_COLOR, "lw": 1})
        self._rectangle = RectangleSelector(
            ax,
            self._on_rectangle,
            useblit=False,
            interactive=False,
            props={"edgecolor": SELECTION_COLOR, "facecolor": "none", "lw": 1},
        )
        self._set_selector("lasso")
        self._apply_theme()
        self.viewer.events.theme.connect(self._apply_theme)
        self._update_buttons()

    def sizeHint(self) -> QSize:
        return QSize(360, 560)  # ask the dock area for a roughly square canvas

    # -- room in the dock column -------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        dock = _dock_of(self)
        window = dock.parentWidget() if dock is not None else None
        if self._dock_watcher is None and isinstance(window, QMainWindow):
            self._dock_watcher = _DockWatcher(window, self.share_dock_column, self)
            self._dock_watcher.schedule()  # docks opened together with this one

    def _plugin_dock(self, name: str) -> QDockWidget | None:
        from napari.plugins import menu_item_template

        window = getattr(self.viewer, "window", None)
        docked = getattr(window, "dock_widgets", {}) if window is not None else {}
        widget = docked.get(menu_item_template.format(PLUGIN, name))
        return _dock_of(getattr(widget, "native", widget))

    def share_dock_column(self) -> bool:
        """Tab "1. Train and embed" and "3. Clusters and export" together when both are docked in the disk's column.

        The one opened last shows on top. The disk then takes the height that
        makes its canvas square, as far as the tabs' minimum height leaves
        room. Done once per disk view, and only when all three sit in one
        column untabbed: docks the user floated, moved to another side, tabbed
        with the disk, pulled apart again or resized stay as they are.
        Returns True when it tabbed the two together.
        """
        if not is_alive(self) or self._tabbed_once:
            return False  # once only: a later arrangement is the user's
        dock = _dock_of(self)
        window = dock.parentWidget() if dock is not None else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return False
        train, clusters = self._plugin_dock(TRAIN_WIDGET), self._plugin_dock(CLUSTERS_WIDGET)
        beside = (_docked_beside(dock, window, train), _docked_beside(dock, window, clusters))
        beside_before, self._docks_beside = self._docks_beside, beside
        if not all(beside):
            return False
        if dock in window.tabifiedDockWidgets(train) or dock in window.tabifiedDockWidgets(clusters):
            return False  # the user's arrangement
        if clusters in window.tabifiedDockWidgets(train):
            return False  # done already: later heights are the user's
        window.tabifyDockWidget(train, clusters)
        self._tabbed_once = True
        train_is_new = beside_before == (False, True)
        (train if train_is_new else clusters).raise_()
        around_canvas = dock.height() - self.canvas.height()
        window.resizeDocks([dock], [self.canvas.width() + around_canvas], Qt.Orientation.Vertical)
        return True

    def _show_scale(self, hyperbolic: bool) -> None:
        """Distance rings mean something only for ball latents; Euclidean ones are just scaled into the disk."""
        self._hyperbolic = hyperbolic
        for ring, label in self._rings:
            ring.set_visible(hyperbolic)
            label.set_visible(hyperbolic)
        self._update_scale_hint()

    def _update_scale_hint(self) -> None:
        """The rings' meaning on the whole disk; the window's size and place when zoomed (the rings are out of view)."""
        if not self._hyperbolic:
            self.scale_hint.set_text("Euclidean latents, scaled to fit the disk")
            return
        x0, x1, y0, y1 = self.view_bounds()
        if self.zoom() < 1.5:
            self.scale_hint.set_text(SCALE_HINT)
            return
        r = min(float(np.hypot((x0 + x1) / 2, (y0 + y1) / 2)), 1 - 1e-7)
        self.scale_hint.set_text(
            f"window {x1 - x0:.2g} across, centred at hyperbolic distance {2 * np.arctanh(r):.2f} "
            "from the disk centre · untick “zoom to points” for the whole disk"
        )

    def _apply_theme(self, event=None) -> None:
        if not is_alive(self):
            return
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            background, text = theme.canvas.as_hex(), theme.text.as_hex()
        except Exception:  # unknown or "system" theme: keep napari's dark default
            background, text = "#000000", "#f0f1f2"
        self.figure.set_facecolor(background)
        self.ax.set_facecolor(background)
        self._circle.set_edgecolor(text)
        self._circle.set_alpha(0.8)
        for ring, label in self._rings:
            ring.set_edgecolor(text)
            ring.set_alpha(0.35)
            label.set_color(text)
            label.set_alpha(0.6)
        self.scale_hint.set_color(text)
        self.scale_hint.set_alpha(0.7)
        self.canvas.draw_idle()

    def _on_fit(self, *_) -> None:
        self._redraw.request()

    def _set_selector(self, mode: str) -> None:
        self._lasso.set_active(mode == "lasso")
        self._rectangle.set_active(mode == "rectangle")

    def _set_info(self, text: str) -> None:
        self._info_text = text
        zoom = self.zoom()
        self.info.setText(text + (f" · zoom ×{zoom:.0f}" if zoom >= 1.5 else ""))

    def _update_buttons(self) -> None:
        has_selection = self._selection_layer is not None and self._selection_layer() is not None
        self.keep_button.setEnabled(has_selection)
        self.clear_button.setEnabled(has_selection or self._vertices is not None)

    @property
    def drawn_points(self) -> int:
        """Number of points currently drawn on the disk."""
        return 0 if self.points is None else len(self.points.xy)

    def raster(self) -> np.ndarray:
        """The RGBA image of the drawn points ``(RASTER, RASTER, 4)``."""
        return np.asarray(self._image.get_array())

    # -- data in -------------------------------------------------------------
    def _on_preview(self, preview) -> None:
        if self.session.result is not None and not self.session.training:
            return  # a preview that arrives after the final result is stale
        self._pending_preview = preview
        self._preview_throttle.request()

    def _apply_preview(self) -> None:
        preview, self._pending_preview = self._pending_preview, None
        source = self.session.preview_source
        if preview is None or source is None:
            return
        self.points = _disk_data.from_preview(
            preview.coords, preview.embedding, source.shape, hyperbolic=self.session.preview_hyperbolic
        )
        if self.source is not None and self.source.layer is not source.layer:
            self._forget_volume()
        self.source = source
        self.binning = 1
        self._show_scale(self.session.preview_hyperbolic)
        self._selected = None if self._vertices is None else _disk_data.inside(self.points.xy, self._vertices)
        self._colors = self._preview_colors(preview, source)
        self._density.set_visible(False)
        z = int(preview.coords[0, 0]) if len(preview.coords) else 0
        self._set_info(
            f"Live preview: {len(preview.coords):,} voxels of slice z = {z}, coloured by intensity "
            "(clusters appear after Segment)."
        )
        self._draw_now()  # this method is throttled already

    def _preview_colors(self, preview, source: SourceInfo) -> np.ndarray:
        layer = source.layer
        data = None if layer is None or layer.multiscale else layer.data
        if not isinstance(data, np.ndarray):  # e.g. dask: do not compute in the GUI thread
            return np.tile(_PREVIEW_COLOR, (len(self.points.xy), 1))
        values = data[np.unravel_index(self.points.index, source.shape)].astype(np.float32)
        lo, hi = np.percentile(values, [1, 99]) if len(values) else (0.0, 1.0)
        from matplotlib import colormaps

        return colormaps["viridis"](np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)).astype(np.float32)

    def _on_result(self) -> None:
        result = self.session.result
        if result is None:
            return
        self._set_info("Preparing the disk view of all voxels…")
        self._forget_volume()  # a selection or a ringed voxel of the previous segmentation means nothing here
        hyperbolic = bool(result.model.config.hyperbolic)
        self._show_scale(hyperbolic)
        self._dense_request += 1  # a newer result makes older, still running preparations stale
        context = (result.source, result.segmentation.binning, self._dense_request)
        worker = thread_worker(_with_context, start_thread=False)(
            _disk_data.from_dense, context, result.segmentation.embedding, hyperbolic=hyperbolic
        )
        worker.returned.connect(self._set_dense)
        worker.start()

    def _set_dense(self, payload: tuple[_disk_data.DiskPoints, tuple[SourceInfo, int, int]]) -> None:
        points, (source, binning, request) = payload
        if request != self._dense_request:
            return
        self.points = points
        self.source = source
        self.binning = binning
        self._selected = None if self._vertices is None else _disk_data.inside(points.xy, self._vertices)
        if points.density is not None:
            self._density.set_data(points.density)
            self._density.set_clim(0, max(float(points.density.max()), 1e-6))
        self._density.set_visible(points.density is not None)
        self._recolor()

    def _on_level(self, k: int) -> None:
        if self.points is not None and not self.points.live:
            self._recolor()

    def _recolor(self) -> None:
        labels = self.session.current_labels()
        if self.points is None or labels is None or labels.shape != self.points.shape:
            return
        ids = labels[self._full_res_index(self.points.index)]
        self._colors = self._label_lut(int(ids.max()) if len(ids) else 0)[ids]
        shown = len(self.points.xy)
        total = self.points.n_total
        what = f"all {total:,} voxels" if shown == total else f"{shown:,} of {total:,} voxels (shading: all)"
        self._set_info(
            f"{what} · k = {self.session.k} clusters ({self.session.mode}) · colours as in “hypseg clusters”"
        )
        self._redraw.request()

    def _label_lut(self, max_id: int) -> np.ndarray:
        """RGBA per cluster id, taken from the live labels layer so the colours match the viewer."""
        ids = np.arange(max_id + 1)
        layer = self.session.clusters_layer
        if layer is not None:
            lut = np.asarray(layer.colormap.map(ids), dtype=np.float32).reshape(-1, 4).copy()
        else:
            lut = label_colors(ids).astype(np.float32)
        lut[:, 3] = 1.0
        lut[0] = (0.5, 0.5, 0.5, 1.0)  # id 0 is never a cluster; grey if it ever appears
        return lut

    # -- drawing -------------------------------------------------------------
    def _draw_now(self) -> None:
        if self.points is None or self._colors is None:
            return
        colors = self._colors
        xy = self.points.xy
        if self._selected is not None and self._selected.any():
            colors = colors.copy()
            colors[~self._selected, 3] = 0.18
            order = np.argsort(self._selected, kind="stable")  # selected points on top
            xy, colors = xy[order], colors[order]
        point = 3 if len(xy) <= 5000 else 2
        view = self.view_bounds()
        self.ax.set_xlim(*view[:2])
        self.ax.set_ylim(*view[2:])
        self._image.set_extent(view)
        self._image.set_data(_disk_data.rasterize(xy, colors, self._raster_size(), view, point=point))
        if self.points.density is not None:
            self._density.set_extent(self.points.bounds)
        self._set_info(self._info_text)
        self._update_scale_hint()
        self._draw_marker()
        self.canvas.draw_idle()

    def view_bounds(self) -> _disk_data.Bounds:
        """The window shown: the points' bounds when zoomed, else the whole disk."""
        if self.points is None or not self.fit.isChecked():
            return _disk_data.FULL_DISK
        return self.points.bounds

    def zoom(self) -> float:
        """Magnification of the view relative to the whole disk."""
        x0, x1, _, _ = self.view_bounds()
        return (_disk_data.FULL_DISK[1] - _disk_data.FULL_DISK[0]) / (x1 - x0)

    def _raster_size(self) -> int:
        """Pixels across the view on screen: one raster pixel per screen pixel, so no point is lost to scaling."""
        box = self.ax.get_window_extent()
        size = int(min(box.width, box.height))
        return int(np.clip(size, 64, 2048)) if size > 0 else RASTER

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._redraw.request()

    def _draw_marker(self) -> None:
        if self._marked is None:
            self._marker.set_data([], [])
        else:
            self._marker.set_data([self._marked[0]], [self._marked[1]])

    # -- linked selection ------------------------------------------------------
    def _on_lasso(self, vertices) -> None:
        self.select_polygon(np.asarray(vertices, dtype=float))

    def _on_rectangle(self, press, release) -> None:
        if press.xdata is None or release.xdata is None:
            return
        x0, x1 = sorted((press.xdata, release.xdata))
        y0, y1 = sorted((press.ydata, release.ydata))
        self.select_polygon(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]))

    def select_polygon(self, vertices: np.ndarray) -> None:
        """Select the points inside ``vertices`` (V, 2) (disk coordinates) and their voxels."""
        points, source = self.points, self.source
        if points is None or source is None or len(vertices) < 3:
            return
        self._vertices = np.asarray(vertices, dtype=float)
        closed = np.vstack([self._vertices, self._vertices[:1]])
        self._outline.set_data(closed[:, 0], closed[:, 1])
        self._selected = _disk_data.inside(points.xy, self._vertices)
        self._redraw.request()
        worker = thread_worker(_with_context, start_thread=False)(
            _disk_data.selection_mask, source, points, self._vertices, binning=self.binning, shape=source.shape
        )
        worker.returned.connect(self._show_selection)
        worker.start()

    def _show_selection(self, payload: tuple[np.ndarray, SourceInfo]) -> None:
        mask, source = payload
        previous = self._selection_layer() if self._selection_layer is not None else None
        layer = upsert_labels(self.viewer, SELECTION_LAYER, mask, source, layer=previous)
        if previous is not layer:
            # one colour, the lasso's, so the selection never looks like a cluster
            layer.colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: SELECTION_RGBA})
        self._selection_layer = weakref.ref(layer)
        n = int(np.count_nonzero(mask))
        self.hint.setText(f"{n:,} voxels selected (layer “{SELECTION_LAYER}”) · “Make labels layer” keeps them")
        self._update_buttons()

    def selection_to_layer(self):
        """Copy the current selection into a new labels layer; returns it (None without a selection)."""
        layer = self._selection_layer() if self._selection_layer is not None else None
        if layer is None or self.source is None or layer not in self.viewer.layers:
            return None
        name = unique_layer_name(self.viewer, f"{self.source.name} selection")
        return add_labels_copy(self.viewer, name, layer.data, self.source)

    def _forget_volume(self) -> None:
        """Drop per-volume state: the selection (and its layer), the ringed voxel, the hint."""
        self._marked = None
        self._draw_marker()
        self.clear_selection()

    def clear_selection(self) -> None:
        self._vertices = None
        self._selected = None
        self._outline.set_data([], [])
        layer = self._selection_layer() if self._selection_layer is not None else None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        self._selection_layer = None
        self.hint.setText("Draw on the disk to select voxels · click a voxel in the viewer to find its point")
        self._update_buttons()
        self._redraw.request()

    # -- clicking in the viewer ------------------------------------------------
    def _install_click_callback(self) -> None:
        session_ref = weakref.ref(self.session)
        view_ref = weakref.ref(self)

        def on_click(viewer, event):
            # a press and release without movement is a click; drags pan the view
            moved = False
            yield
            while event.type == "mouse_move":
                moved = True
                yield
            view, session = view_ref(), session_ref()
            if moved or view is None or session is None or event.button != 1:
                return
            voxel = view._voxel_under(event.position)
            if voxel is not None:
                session.pick(voxel)

        self.viewer.mouse_drag_callbacks.append(on_click)
        viewer_ref = weakref.ref(self.viewer)

        def remove(*_):
            viewer = viewer_ref()
            if viewer is not None and on_click in viewer.mouse_drag_callbacks:
                viewer.mouse_drag_callbacks.remove(on_click)

        self.destroyed.connect(remove)
        self._remove_click_callback = remove

    def _voxel_under(self, position) -> tuple[int, int, int] | None:
        source = self.source or (self.session.result.source if self.session.result else None)
        layer = source.layer if source is not None else None
        if layer is None or layer not in self.viewer.layers:
            return None
        return voxel_at(layer, position, source.shape)

    def _full_res_index(self, flat_index: np.ndarray) -> tuple[np.ndarray, ...]:
        """Source-grid index of points given by flat index into the (possibly binned) embedding grid."""
        index = np.unravel_index(flat_index, self.points.shape)
        if self.binning > 1:
            # nearest upsampling: a binned voxel's label sits at its first full-resolution voxel
            index = tuple(i * self.binning for i in index)
        return index

    def _on_picked(self, voxel) -> None:
        points = self.points
        if points is None or self.source is None:
            return
        try:
            xy = points.point_of(tuple(int(v) // self.binning for v in voxel))
        except ValueError:  # a voxel of another volume
            return
        self._marked = None if xy is None else np.asarray(xy, dtype=float)
        labels = self.session.current_labels()
        where = f"voxel {tuple(int(v) for v in voxel)}"
        if xy is None:
            self.hint.setText(f"{where} is not in the live preview (it embeds one central slice)")
        elif labels is not None and labels.shape == tuple(self.source.shape):
            self.hint.setText(f"{where} → cluster {int(labels[tuple(voxel)])} (ringed on the disk)")
        else:
            self.hint.setText(f"{where} is ringed on the disk")
        self._draw_marker()
        self.canvas.draw_idle()

    def closeEvent(self, event) -> None:
        self._remove_click_callback()
        if self._dock_watcher is not None:
            self._dock_watcher.remove()
        super().closeEvent(event)
