"""Reader hook: MRC-family and NIfTI files as napari layers with their physical geometry."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..io import is_readable_path, read_volume, volume_layer_kwargs

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_layers` for files we handle, None for anything else.

    Refusing here (rather than raising) lets napari offer another plugin.
    A file we accept but cannot read raises :class:`UserError` from
    :func:`read_layers`; napari shows its message to the user.
    """
    paths = path if isinstance(path, list) else [path]
    if not paths:
        return None
    for item in paths:
        if not isinstance(item, str | os.PathLike) or os.path.isdir(item) or not is_readable_path(item):
            return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each file as one layer: an image, or a labels layer for label files.

    Label files are those written by napari-hypseg (MRC header label) or
    NIfTI files whose intent is "label"; everything else opens as an image.
    MRC layers get ``scale``/``translate`` in Å; NIfTI layers get the file's
    ``affine``. Large uncompressed images stay memory-mapped; label files are copied
    into memory so that they can be painted on.
    """
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for item in paths:
        volume = read_volume(item)
        kwargs = volume_layer_kwargs(volume)
        if volume.metadata.get("is_labels"):
            # A labels layer is meant to be painted on: it needs its own
            # writable copy, not the read-only map of the file.
            layers.append((np.array(volume.data), kwargs, "labels"))
        else:
            layers.append((volume.data, kwargs, "image"))
    return layers


def get_ome_zarr_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """:func:`read_ome_zarr_layers` for an OME-Zarr image folder (or a ``*_labels.ome.zarr``), None otherwise."""
    from ..io import omezarr

    paths = path if isinstance(path, list) else [path]
    if len(paths) != 1 or not isinstance(paths[0], str | os.PathLike):
        return None
    root = Path(paths[0])
    if omezarr.is_ome_zarr(root) or omezarr.is_ome_zarr_labels(root):
        return read_ome_zarr_layers
    return None


def read_ome_zarr_layers(path: str | list[str]) -> list[LayerData]:
    """The image (if any) and each of its labels as multiscale layers of lazy dask arrays, in physical scale."""
    from ..io import omezarr

    root = Path(path[0] if isinstance(path, list) else path)
    layers: list[LayerData] = []
    sources = ([(root, "image")] if omezarr.is_ome_zarr(root) else []) + [
        (p, "labels") for p in omezarr.label_paths(root)
    ]
    for source, kind in sources:
        data, meta = omezarr.read_multiscale(source)
        # napari takes a list only as a multiscale pyramid; a single level is passed as the array itself
        layer_data = data if len(data) > 1 else data[0]
        layers.append((layer_data, {"name": source.name, "scale": meta["scale"], "multiscale": len(data) > 1}, kind))
    return layers
