"""Per-viewer state shared by the hypseg dock widgets, and the signals that keep them in sync.

The widgets never look each other up: each asks :func:`get_session` for the
session of its viewer, reads the state there and listens to its signals.
Training or loading sets :attr:`HypsegSession.model`; segmenting sets the
:class:`~napari_hypseg.segmentation.pipeline.Segmentation`; the Clusters
widget moves the level; the disk view draws whatever is current.

The session holds the viewer and layers only through weak references, so
closing a viewer frees it (napari's test fixture checks that).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from ..segment_config import DEFAULT_INTENSITY
from ..segment_modes import DEFAULT_MODE, MIXTURE_MODE
from ._layers import CLUSTERS_LAYER, SourceInfo, upsert_labels

if TYPE_CHECKING:
    import napari

    from ..model import HyperbolicVAE
    from ..segment_config import SegmentConfig
    from ..segmentation.pipeline import Segmentation
    from ..training import Preview

PLUGIN = "napari-hypseg"
TRAIN_WIDGET = "1. Train and embed"
DISK_WIDGET = "2. Poincaré disk"
CLUSTERS_WIDGET = "3. Clusters and export"


@dataclass
class Result:
    """One clustering of one dense embedding: the segmentation and what produced it.

    ``config`` is the :class:`SegmentConfig` it was made with; clustering the
    same embedding in another mode keeps everything but the mode. ``data`` is
    the source voxels the embedding was computed from (a reference, not a
    copy): the mixture mode fuses the embedding with the intensities.
    """

    segmentation: Segmentation
    config: SegmentConfig
    model: HyperbolicVAE
    source: SourceInfo
    data: Any = None

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def intensity(self) -> str:
        """The intensity choice the mixture mode was asked for ("auto", "raw" or "denoised")."""
        return self.config.fusion.intensity

    @property
    def key(self) -> tuple[str, str | None]:
        return clustering_key(self.mode, self.intensity)


def clustering_key(mode: str, intensity: str) -> tuple[str, str | None]:
    """Which of a session's clusterings of one embedding: the mode, and for the mixture its intensity choice."""
    return (mode, intensity if mode == MIXTURE_MODE else None)


class HypsegSession(QObject):
    """State of the hypseg workflow in one viewer.

    Signals
    -------
    model_changed()
        :attr:`model` was trained, loaded or replaced.
    training_changed(bool)
        Training started (True) or ended (False).
    preview_changed(object)
        A new live :class:`~napari_hypseg.training.Preview` arrived (receivers throttle redraws).
    result_changed()
        A new segmentation arrived (new embedding); levels and mode were reset.
    level_changed(int)
        The current level ``k``, the mode or the mixture's intensity changed; the live labels layer
        already shows it.
    picked(object)
        A voxel ``(z, y, x)`` of the source was clicked in the viewer.
    """

    model_changed = Signal()
    training_changed = Signal(bool)
    preview_changed = Signal(object)
    result_changed = Signal()
    level_changed = Signal(int)
    picked = Signal(object)

    def __init__(self, viewer: napari.Viewer):
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self.model: HyperbolicVAE | None = None
        self.model_info = ""
        self.training = False
        self.preview: Preview | None = None
        self.preview_source: SourceInfo | None = None
        self.preview_hyperbolic = True
        self._results: dict[tuple[str, str | None], Result] = {}
        self.mode = DEFAULT_MODE
        self.intensity = DEFAULT_INTENSITY
        self.k = 0
        self._clusters_layer: weakref.ref | None = None
        # hierarchy.labels(k) builds a new array (one table lookup per voxel): compute it once per level
        self._labels_cache: tuple[int, int, np.ndarray] | None = None

    # -- accessors -----------------------------------------------------------
    @property
    def viewer(self) -> napari.Viewer | None:
        return self._viewer()

    @property
    def result(self) -> Result | None:
        """The segmentation in the current mode and intensity (None before segmenting, or while it is computed)."""
        return self._results.get(clustering_key(self.mode, self.intensity))

    def holds(self, result: Result) -> bool:
        """Whether ``result`` is still one of the current results (no newer segmentation replaced it)."""
        return any(r is result for r in self._results.values())

    def has_mode(self, mode: str, intensity: str | None = None) -> bool:
        """Whether ``mode`` (with ``intensity``, default the current one) is computed for this embedding."""
        return clustering_key(mode, self.intensity if intensity is None else intensity) in self._results

    @property
    def k_values(self) -> list[int]:
        result = self.result or next(iter(self._results.values()), None)
        return [] if result is None else [int(k) for k in result.segmentation.hierarchy.k_values]

    def current_labels(self) -> np.ndarray | None:
        """Labels ``(Z, Y, X)`` of the current level (computed once per level), or None before segmenting.

        Shared with the live labels layer: treat it as read-only.
        """
        result = self.result
        if result is None or not self.k:
            return None
        key = (id(result), self.k)
        if self._labels_cache is None or self._labels_cache[:2] != key:
            self._labels_cache = (*key, result.segmentation.labels(self.k))
        return self._labels_cache[2]

    @property
    def clusters_layer(self) -> napari.layers.Labels | None:
        """The live "hypseg clusters" layer, if it is still in the viewer."""
        layer = self._clusters_layer() if self._clusters_layer else None
        viewer = self.viewer
        if layer is None or viewer is None or layer not in viewer.layers:
            return None
        return layer

    # -- updates -----------------------------------------------------------
    def set_training(self, running: bool) -> None:
        self.training = running
        self.training_changed.emit(running)

    def set_model(self, model: HyperbolicVAE | None, info: str = "") -> None:
        self.model = model
        self.model_info = info
        self.model_changed.emit()

    def set_preview(self, preview: Preview, source: SourceInfo, *, hyperbolic: bool = True) -> None:
        """A live preview of the model in training on ``source`` (``hyperbolic``: ball latents, else R^d)."""
        self.preview = preview
        self.preview_source = source
        self.preview_hyperbolic = hyperbolic
        self.preview_changed.emit(preview)

    def set_result(self, result: Result, *, k: int | None = None) -> None:
        """Show a new segmentation (a new embedding): the other clusterings of the old one are dropped."""
        self._results = {result.key: result}
        self.mode = result.mode
        if result.mode == MIXTURE_MODE:
            self.intensity = result.intensity
        ks = self.k_values
        wanted = k if k is not None else (self.k or min(4, ks[-1]))
        self.k = min(max(wanted, ks[0]), ks[-1])
        self._show_level()
        self.result_changed.emit()
        self.level_changed.emit(self.k)

    def add_result(self, result: Result, *, show: bool = True) -> None:
        """Add another clustering of the same embedding (computed lazily); ``show`` switches to it."""
        self._results[result.key] = result
        if show:
            self._switch(result.mode, result.intensity if result.mode == MIXTURE_MODE else self.intensity)

    def set_mode(self, mode: str) -> None:
        self._switch(mode, self.intensity)

    def set_intensity(self, intensity: str) -> None:
        """Show the mixture computed on another intensity choice (if it has been computed)."""
        self._switch(self.mode, intensity)

    def _switch(self, mode: str, intensity: str) -> None:
        key = clustering_key(mode, intensity)
        if key not in self._results or (mode, intensity) == (self.mode, self.intensity):
            return
        self.mode, self.intensity = mode, intensity
        self._show_level()
        self.level_changed.emit(self.k)

    def set_level(self, k: int) -> None:
        ks = self.k_values
        if not ks:
            return
        k = min(max(int(k), ks[0]), ks[-1])
        if k == self.k:
            return
        self.k = k
        self._show_level()
        self.level_changed.emit(k)

    def pick(self, voxel: tuple[int, int, int]) -> None:
        self.picked.emit(voxel)

    def _show_level(self) -> None:
        """Put the current level into the one live labels layer (created on first use)."""
        viewer = self.viewer
        labels = self.current_labels()
        if viewer is None or labels is None:
            return
        layer = upsert_labels(
            viewer,
            CLUSTERS_LAYER,
            labels,
            self.result.source,
            layer=self.clusters_layer,
            metadata={"hypseg_k": self.k, "hypseg_mode": self.mode},
        )
        self._clusters_layer = weakref.ref(layer)


_SESSIONS: dict[int, HypsegSession] = {}


def unwrap_viewer(viewer: napari.Viewer) -> napari.Viewer:
    """The viewer itself, not the proxy napari hands to plugin widgets.

    napari passes dock widgets a ``PublicOnlyProxy`` that wraps every object
    it returns in a fresh proxy: layer identity (``is``), weak references to
    layers and per-viewer lookups would all break, and each attribute access
    inspects the calling frame (slow on the slider path). We use only public
    attributes of the unwrapped objects.
    """
    return getattr(viewer, "__wrapped__", viewer)


def get_session(viewer: napari.Viewer) -> HypsegSession:
    """The session of ``viewer``, created on first use and dropped when the viewer is freed."""
    viewer = unwrap_viewer(viewer)
    key = id(viewer)
    session = _SESSIONS.get(key)
    if session is None or session.viewer is not viewer:
        session = HypsegSession(viewer)
        _SESSIONS[key] = session
        weakref.finalize(viewer, _SESSIONS.pop, key, None)
    return session


def open_widget(viewer: napari.Viewer, name: str) -> Any:
    """Dock one of our widgets (or bring the open one forward); None without a window."""
    window = getattr(viewer, "window", None)
    if window is None:
        return None
    try:
        _, widget = window.add_plugin_dock_widget(PLUGIN, name)
    except (KeyError, ValueError, RuntimeError):
        # plugin not registered (e.g. widgets used programmatically without the manifest)
        return None
    _raise_dock(widget)
    return widget


def _raise_dock(widget) -> None:
    """Bring the dock holding ``widget`` to the front of its tab group (napari only shows it)."""
    from qtpy.QtWidgets import QDockWidget  # noqa: PLC0415

    parent = widget.parent() if hasattr(widget, "parent") else None
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    if parent is not None:
        parent.raise_()
