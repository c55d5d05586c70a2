"""Writer hooks: save labels and image layers as MRC or NIfTI on their source's grid."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.transforms import CompositeAffine

from .. import io
from .._errors import UserError
from ..io.volume import Volume


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one labels layer to ``.mrc``, ``.nii`` or ``.nii.gz``.

    The geometry comes from the layer's ``metadata["hypseg_geometry"]``
    (set by our reader and by layers derived from it), so the file copies
    its source's header; without it, from the layer's own transform.
    """
    array = _single_scale(data, meta)
    return [str(io.write_labels(path, array, like=_like(meta, np.shape(array))))]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save one image layer (as float32) to ``.mrc``, ``.nii`` or ``.nii.gz``."""
    if meta.get("rgb"):
        raise UserError("RGB images cannot be saved as MRC or NIfTI volumes")
    array = _single_scale(data, meta)
    return [str(io.write_image(path, array, like=_like(meta, np.shape(array))))]


def _single_scale(data: Any, meta: dict[str, Any]) -> np.ndarray:
    if meta.get("multiscale"):
        raise UserError("multiscale layers cannot be saved as one MRC or NIfTI file; save the full-resolution level")
    return np.asarray(data)


def _like(meta: dict[str, Any], shape: tuple[int, ...]) -> Volume | None:
    """The geometry to write: stored source geometry, else the layer transform."""
    stored = io.geometry_from_metadata(meta.get("metadata"), shape)
    if stored is not None:
        return stored
    if len(shape) != 3:
        return None  # io refuses non-3D data with a clear message
    composite = CompositeAffine(
        scale=meta.get("scale", (1.0,) * 3),
        translate=meta.get("translate", (0.0,) * 3),
        rotate=meta.get("rotate"),
        shear=meta.get("shear"),
        ndim=3,
    )
    extra = np.asarray(meta.get("affine", np.eye(4)), dtype=float)
    if extra.shape != (4, 4):
        extra = np.eye(4)
    # napari applies the layer's `affine` on top of scale/rotate/shear/translate.
    affine = extra @ composite.affine_matrix
    return Volume(
        data=np.broadcast_to(np.zeros((), dtype=np.uint8), shape),
        affine=affine,
        format="array",
        metadata={},
    )
