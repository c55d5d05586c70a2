"""Writer hooks: save labels and image layers as MRC or NIfTI on their source's grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import io
from .._errors import UserError
from ._layers import layer_geometry


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one labels layer to ``.mrc``, ``.nii`` or ``.nii.gz``.

    The geometry comes from the layer's ``metadata["hypseg_geometry"]``
    (set by our reader and by layers derived from it), so the file copies
    its source's header; without it, from the layer's own transform.
    """
    array = _single_scale(data, meta)
    return [str(io.write_labels(path, array, like=layer_geometry(meta, np.shape(array))))]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one image layer (as float32) to ``.mrc``, ``.nii`` or ``.nii.gz``."""
    if meta.get("rgb"):
        raise UserError("RGB images cannot be saved as MRC or NIfTI volumes")
    array = _single_scale(data, meta)
    return [str(io.write_image(path, array, like=layer_geometry(meta, np.shape(array))))]


def _single_scale(data: Any, meta: dict[str, Any]) -> np.ndarray:
    if meta.get("multiscale"):
        raise UserError("multiscale layers cannot be saved as one MRC or NIfTI file; save the full-resolution level")
    return np.asarray(data)
