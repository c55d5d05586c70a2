"""Commands of napari's menus: Layers › Segment › "Segment with hypseg (hyperbolic VAE)…".

The command only drives the "1. Train and embed" widget (no science here): it
docks the widget on the selected image and, when a model is already trained
or loaded, starts segmenting; otherwise the widget's status says what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.utils.notifications import show_info

from ._session import TRAIN_WIDGET, get_session, open_widget, unwrap_viewer

if TYPE_CHECKING:
    import napari

NEEDS_MODEL = "hypseg: train a model (Start training) or Load model… in “1. Train and embed”, then press Segment."


def segment_active_layer(viewer: napari.viewer.Viewer):
    """Dock "1. Train and embed" on the active image layer; segment it if a model is ready.

    Returns the widget (None without a window). napari injects ``viewer``.
    """
    viewer = unwrap_viewer(viewer)
    active = viewer.layers.selection.active
    widget = open_widget(viewer, TRAIN_WIDGET)
    if widget is None:
        return None
    if active is not None and widget.layer_combo.findText(active.name) >= 0:
        widget.layer_combo.setCurrentText(active.name)
    if widget.busy:
        show_info("hypseg is busy: wait for the running job or press Cancel in “1. Train and embed”.")
    elif get_session(viewer).model is not None:
        widget.start_segment()
    else:
        show_info(NEEDS_MODEL)
    return widget
