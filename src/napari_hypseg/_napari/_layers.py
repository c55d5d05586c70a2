"""Source image layers in, labels layers out, on the same grid and with the same geometry.

Every labels layer the widgets create copies the source image layer's
transform (scale, translate, rotate, shear, affine) and its metadata,
including ``metadata["hypseg_geometry"]`` set by our reader, so the labels
overlay the image exactly and File › Save Layers (our writer) or the export
buttons write them with the source file's voxel size, origin and header.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import UserError
from ..io import Geometry, geometry_from_metadata

if TYPE_CHECKING:
    import napari

CLUSTERS_LAYER = "hypseg clusters"
SELECTION_LAYER = "hypseg selection"

_OPEN_HINT = "open a 3D volume first: File › Open File(s)… (MRC or NIfTI) or File › Open Sample › napari-hypseg"


_WARM_VIEWERS: weakref.WeakSet = weakref.WeakSet()


def warm_up_labels_display(viewer: napari.Viewer) -> None:
    """Build napari's first labels visual now, while a widget opens, not when a result arrives.

    The first labels layer in a viewer costs ~360 ms in the GUI thread
    (vispy visuals, overlays, shaders); later ones ~65 ms. Paying it when the
    user opens the widget keeps the moment a background job's result appears
    short (benchmarks/bench_gui_stall.py). A one-voxel layer is added and
    removed within this call, so nothing is ever drawn and the selection
    is left as it was.
    """
    from napari.layers import Labels

    if viewer in _WARM_VIEWERS:
        return
    _WARM_VIEWERS.add(viewer)
    if any(isinstance(layer, Labels) for layer in viewer.layers):
        return
    selection = list(viewer.layers.selection)
    active = viewer.layers.selection.active
    layer = viewer.add_labels(np.zeros((1, 1, 1), dtype=np.uint8), name="hypseg warm-up")
    viewer.layers.remove(layer)
    viewer.layers.selection.clear()
    viewer.layers.selection.update(selection)
    viewer.layers.selection.active = active


def check_image_layer(layer: Any) -> None:
    """Raise :class:`UserError` with a message a user can act on unless ``layer`` is a 3D grayscale image."""
    from napari.layers import Image

    if layer is None:
        raise UserError(f"No image layer: {_OPEN_HINT}.")
    if not isinstance(layer, Image):
        raise UserError(f"“{layer.name}” is not an image layer; pick an image: {_OPEN_HINT}.")
    if layer.rgb:
        raise UserError(f"“{layer.name}” is an RGB image; hypseg needs a grayscale 3D volume.")
    shape = tuple(int(n) for n in layer.level_shapes[0])
    if len(shape) == 2:
        raise UserError(f"“{layer.name}” is 2D (shape {shape}); hypseg needs a 3D volume (Z, Y, X).")
    if len(shape) != 3:
        raise UserError(
            f"“{layer.name}” has {len(shape)} dimensions (shape {shape}); hypseg needs a 3D volume (Z, Y, X). "
            "Split the stack into 3D volumes first."
        )


def image_volume(layer: napari.layers.Image) -> np.ndarray:
    """The full-resolution voxels of an image layer as a numpy array (call it in a worker: dask computes)."""
    data = layer.data[0] if layer.multiscale else layer.data
    return data if isinstance(data, np.ndarray) else np.asarray(data)


def layer_geometry(state: Mapping[str, Any], shape) -> Geometry | None:
    """The grid a layer's data of `shape` sit on; None for data that are not 3D.

    `state` holds the layer's ``metadata`` and transform (``scale``,
    ``translate``, ``rotate``, ``shear``, ``affine``): napari's writer
    attributes, or :attr:`SourceInfo.layer_kwargs`. The geometry our reader
    stored in the metadata wins, with the source file's header; without one
    (or for a differently shaped array), the layer's own transform.
    """
    from napari.utils.transforms import CompositeAffine

    shape = tuple(int(n) for n in shape)
    stored = geometry_from_metadata(state.get("metadata"), shape)
    if stored is not None:
        return stored
    if len(shape) != 3:
        return None
    composite = CompositeAffine(
        scale=state.get("scale", (1.0,) * 3),
        translate=state.get("translate", (0.0,) * 3),
        rotate=state.get("rotate"),
        shear=state.get("shear"),
        ndim=3,
    )
    extra = np.asarray(state.get("affine", np.eye(4)), dtype=float)
    if extra.shape != (4, 4):
        extra = np.eye(4)
    # napari applies the layer's `affine` on top of scale/rotate/shear/translate.
    return Geometry(shape=shape, affine=extra @ composite.affine_matrix)


@dataclass
class SourceInfo:
    """What derived labels layers and exported files need to know about the source image.

    Captured when a job starts, so results stay placeable and exportable even
    if the user closes the source layer afterwards.
    """

    name: str
    shape: tuple[int, int, int]
    layer_kwargs: dict[str, Any]
    layer_ref: Any = field(default=None, repr=False)

    @classmethod
    def from_layer(cls, layer: napari.layers.Image) -> SourceInfo:
        kwargs: dict[str, Any] = {
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "rotate": np.array(layer.rotate),
            "shear": np.array(layer.shear),
            "affine": np.array(layer.affine.affine_matrix),
            "metadata": dict(layer.metadata),
        }
        for name in ("units", "axis_labels"):  # napari >= 0.6
            if hasattr(layer, name):
                kwargs[name] = tuple(getattr(layer, name))
        shape = tuple(int(n) for n in layer.level_shapes[0])
        return cls(name=layer.name, shape=shape, layer_kwargs=kwargs, layer_ref=weakref.ref(layer))

    @property
    def layer(self) -> napari.layers.Image | None:
        return self.layer_ref() if self.layer_ref is not None else None

    @cached_property
    def geometry(self) -> Geometry | None:
        """The source's grid, what exported files copy: from its file's header, else from the layer transform.

        None for a layer that is not 3D (which no job accepts).
        """
        return layer_geometry(self.layer_kwargs, self.shape)

    @property
    def file_format(self) -> str:
        """``"mrc"`` or ``"nifti"``: the source file's format (MRC for in-memory arrays)."""
        return "nifti" if self.geometry is not None and self.geometry.format == "nifti" else "mrc"

    @property
    def source_path(self) -> Path | None:
        return self.geometry.source if self.geometry is not None else None

    def labels_kwargs(self, name: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """``add_labels`` keyword arguments placing a labels layer on this source's grid."""
        kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.layer_kwargs.items()}
        kwargs["metadata"] = {**self.layer_kwargs["metadata"], "hypseg_source": self.name, **(metadata or {})}
        kwargs["name"] = name
        return kwargs


def upsert_labels(
    viewer: napari.Viewer,
    name: str,
    data: np.ndarray,
    source: SourceInfo,
    *,
    layer: napari.layers.Labels | None = None,
    metadata: dict[str, Any] | None = None,
    editable: bool = False,
) -> napari.layers.Labels:
    """Show ``data`` in ``layer`` (replacing its data), or in a new labels layer ``name`` on the source grid.

    Live layers are not editable unless ``editable``: their data is replaced
    at every slider move, which would silently drop any painting. "Add as
    layer" makes an editable copy instead.
    """
    if layer is None or layer not in viewer.layers or layer.data.shape != data.shape:
        if layer is not None and layer in viewer.layers:
            viewer.layers.remove(layer)
        layer = viewer.add_labels(data, **source.labels_kwargs(name, metadata))
    else:
        layer.data = data
        layer.metadata = {**layer.metadata, **(metadata or {})}
    layer.editable = editable
    return layer


def add_labels_copy(
    viewer: napari.Viewer, name: str, data: np.ndarray, source: SourceInfo, metadata: dict[str, Any] | None = None
) -> napari.layers.Labels:
    """A new, editable labels layer holding its own copy of ``data`` on the source grid."""
    return viewer.add_labels(np.array(data, copy=True), **source.labels_kwargs(name, metadata))


def unique_layer_name(viewer: napari.Viewer, name: str) -> str:
    """``name``, or ``name [2]``, ``name [3]``... if a layer already has it."""
    existing = {layer.name for layer in viewer.layers}
    if name not in existing:
        return name
    n = 2
    while f"{name} [{n}]" in existing:
        n += 1
    return f"{name} [{n}]"


def voxel_at(layer: napari.layers.Layer, world_position, shape) -> tuple[int, int, int] | None:
    """Voxel index of ``layer`` under a world position, or None outside the volume."""
    data_pos = np.asarray(layer.world_to_data(world_position), dtype=float)[-3:]
    index = tuple(int(v) for v in np.round(data_pos))
    if len(index) != 3 or any(i < 0 or i >= n for i, n in zip(index, shape)):
        return None
    return index
