"""Read and write 3D volumes (MRC family, NIfTI) without losing their geometry.

Public API
----------
read_volume(path, *, mmap=True) -> Volume
write_labels(path, labels, like=None) -> Path
write_image(path, data, like=None) -> Path
volume_layer_kwargs(volume) -> dict
geometry_from_metadata(metadata, shape) -> Geometry | None
Geometry: shape, affine, format, source and header of a grid (``Volume.geometry``)

Geometry travels in napari layers as ``metadata["hypseg_geometry"]``, a
JSON-friendly dict (:meth:`Geometry.to_metadata`)::

    {"format": "mrc" | "nifti" | "array",
     "shape": [n0, n1, n2],            # data shape it belongs to
     "affine": 4x4 nested list,        # data index -> world, napari axis order
     "source": "path" | None,
     "mrc": {"voxel_size_xyz", "origin_xyz", "nstart_xyz"},   # MRC sources only
     "nifti": {"version": 1 | 2, "header": base64 raw header}} # NIfTI sources only

:func:`volume_layer_kwargs` puts it into the napari layer's metadata, and
:func:`geometry_from_metadata` gives the :class:`Geometry` back to writers,
so that a label file lands on exactly the grid of its source volume.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import UserError
from .atomic import full_suffix, stem_of
from .mrc import SUFFIXES as MRC_SUFFIXES
from .mrc import labels_dtype_for_mrc, mrc_header_for, read_mrc, write_mrc, write_mrc_slabs
from .nifti import SUFFIXES as NIFTI_SUFFIXES
from .nifti import read_nifti, write_nifti, write_nifti_slabs
from .slabs import z_slabs
from .stats import value_summary
from .volume import Geometry, Volume

__all__ = [
    "MRC_SUFFIXES",
    "NIFTI_SUFFIXES",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "Geometry",
    "Volume",
    "geometry_from_metadata",
    "is_readable_path",
    "read_volume",
    "smallest_label_dtype",
    "value_summary",
    "volume_layer_kwargs",
    "write_image",
    "write_labels",
]

READ_SUFFIXES = MRC_SUFFIXES + NIFTI_SUFFIXES
# Stacks (.st, .ali, .mrcs) are tilt series or particle images, never labels.
WRITE_SUFFIXES = (".mrc", ".rec", ".map") + NIFTI_SUFFIXES

# Volumes up to this size are checked for NaNs in full; larger ones in a
# sample of slices, so that opening a huge tomogram stays instant.
_NAN_CHECK_BYTES = 256 * 2**20


def is_readable_path(path: str | os.PathLike) -> bool:
    """Whether the suffix of `path` is one :func:`read_volume` handles."""
    return full_suffix(Path(path)) in READ_SUFFIXES


def read_volume(path: str | os.PathLike, *, mmap: bool = True) -> Volume:
    """Read a 3D volume with its geometry.

    Parameters
    ----------
    path : path-like
        ``.mrc .rec .map .st .ali .mrcs`` (MRC) or ``.nii .nii.gz`` (NIfTI).
    mmap : bool
        Memory-map the voxels read-only where the format allows it
        (uncompressed files), so large volumes are not copied into RAM.

    Returns
    -------
    Volume
        MRC: ``data`` (Z, Y, X), diagonal affine in Å. NIfTI: ``data``
        (I, J, K), the file's affine. ``metadata`` holds the header fields;
        ``volume.geometry`` is what writers need to write labels for it.

    Raises
    ------
    UserError
        Unknown suffix, missing/empty/truncated/foreign file, or data that are
        not one 3D volume; the message says which.

    Warns
    -----
    UserWarning
        Damaged MRC header (opened permissively) or NaN/infinite voxels.

    Examples
    --------
    >>> vol = read_volume("tomogram.mrc")  # doctest: +SKIP
    >>> vol.data.shape, vol.spacing        # doctest: +SKIP
    ((200, 512, 512), (10.0, 10.0, 10.0))
    """
    path = Path(path)
    suffix = full_suffix(path)
    if suffix in MRC_SUFFIXES:
        volume = read_mrc(path, mmap=mmap)
    elif suffix in NIFTI_SUFFIXES:
        volume = read_nifti(path, mmap=mmap)
    else:
        raise UserError(
            f"cannot read {path.name}: unknown file type {suffix or '(no suffix)'}; "
            f"expected one of {', '.join(READ_SUFFIXES)}"
        )
    _warn_non_finite(volume.data, path.name)
    return volume


def write_labels(path: str | os.PathLike, labels, like: Geometry | Volume | None = None) -> Path:
    """Write a label volume onto the grid of `like`, atomically.

    Parameters
    ----------
    path : path-like
        ``.mrc`` (also ``.rec``, ``.map``), ``.nii`` or ``.nii.gz``.
    labels : (Z, Y, X) array of non-negative integers or bools
        Same shape and axis order as ``like.data``. Not modified. A dask or
        zarr array is computed and written slab by slab, never whole in memory.
    like : Geometry or Volume, optional
        The grid the labels belong to (a volume: its :attr:`Volume.geometry`);
        its MRC voxel size, origin and start indices, or NIfTI header with
        qform/sform, are written. None means one unit per voxel, origin 0.

    Returns
    -------
    Path
        The written file.

    Notes
    -----
    The file holds the smallest integer type that fits the largest label:
    NIfTI uint8/uint16/uint32/uint64; MRC mode 0 (labels up to 127),
    mode 6 (uint16, up to 65535), else float32 (exact up to 2**24).
    """
    path = Path(path)
    suffix = _write_suffix(path)
    if _is_lazy(labels):
        return _write_lazy_labels(path, labels, like, nifti=suffix in NIFTI_SUFFIXES)
    array = _as_3d(labels, "labels")
    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.dtype.kind not in "iu":
        raise UserError(f"labels must be integers, got {array.dtype} values")
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0:
        raise UserError(f"labels must be non-negative, found label {low}")
    geometry = _geometry_for(like, array.shape)
    if suffix in NIFTI_SUFFIXES:
        return write_nifti(path, array.astype(smallest_label_dtype(high), copy=False), geometry, labels=True)
    stored = array.astype(labels_dtype_for_mrc(high), copy=False)
    return write_mrc(path, stored, mrc_header_for(geometry, name=path.name), labels=True)


def write_image(path: str | os.PathLike, data, like: Geometry | Volume | None = None) -> Path:
    """Write a float image (stored as float32) onto the grid of `like`, atomically.

    Parameters
    ----------
    path : path-like
        ``.mrc`` (also ``.rec``, ``.map``), ``.nii`` or ``.nii.gz``.
    data : (Z, Y, X) array of real numbers
        Not modified.
    like : Geometry or Volume, optional
        Whose geometry to write; None means one unit per voxel, origin 0.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    suffix = _write_suffix(path)
    array = _as_3d(data, "image")
    if array.dtype.kind not in "biuf":
        raise UserError(f"image values must be real numbers, got {array.dtype}")
    stored = array.astype(np.float32, copy=False)
    geometry = _geometry_for(like, array.shape)
    if suffix in NIFTI_SUFFIXES:
        return write_nifti(path, stored, geometry, labels=False)
    return write_mrc(path, stored, mrc_header_for(geometry, name=path.name), labels=False)


def volume_layer_kwargs(volume: Volume) -> dict[str, Any]:
    """Keyword arguments that place `volume` correctly as a napari layer.

    Parameters
    ----------
    volume : Volume

    Returns
    -------
    dict
        ``name``; ``metadata`` (the header fields plus ``"hypseg_geometry"``);
        and either ``scale`` + ``translate`` (axis-aligned volumes: MRC,
        arrays) or a (4, 4) ``affine`` (NIfTI, and any rotated volume).
        Use the same kwargs, with another name, for label layers derived
        from the volume, so that the writers find the geometry again.
    """
    metadata = dict(volume.metadata)
    metadata["hypseg_geometry"] = volume.geometry.to_metadata()
    kwargs: dict[str, Any] = {"name": _layer_name(volume), "metadata": metadata}
    affine = np.asarray(volume.affine, dtype=float)
    linear = affine[:3, :3]
    axis_aligned = np.array_equal(linear, np.diag(np.diag(linear))) and np.all(np.diag(linear) > 0)
    if volume.format != "nifti" and axis_aligned:
        kwargs["scale"] = tuple(float(v) for v in np.diag(linear))
        kwargs["translate"] = tuple(float(v) for v in affine[:3, 3])
    else:
        # napari applies `affine` after scale/translate; with those at their
        # defaults it is exactly the file's voxel-to-world transform.
        kwargs["affine"] = affine.copy()
    return kwargs


def geometry_from_metadata(metadata: dict | None, shape) -> Geometry | None:
    """The source geometry a napari layer carries, for writers.

    Parameters
    ----------
    metadata : dict or None
        A napari layer's ``metadata``.
    shape : tuple of int
        Shape of the data about to be written.

    Returns
    -------
    Geometry or None
        The stored geometry; None when the metadata carry none, or one made
        for a differently shaped array (for example a cropped layer), in
        which case the caller falls back to the layer's own
        scale/translate/affine.
    """
    if not metadata:
        return None
    return Geometry.from_metadata(metadata.get("hypseg_geometry"), shape)


def smallest_label_dtype(max_label: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds `max_label` (uint8 ... uint64)."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_label <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise UserError(f"label {max_label} does not fit in 64 bits")


# -- helpers -----------------------------------------------------------------


def _write_suffix(path: Path) -> str:
    suffix = full_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise UserError(
            f"cannot write {path.name}: unknown file type {suffix or '(no suffix)'}; "
            f"use one of {', '.join(WRITE_SUFFIXES)}"
        )
    return suffix


def _is_lazy(values) -> bool:
    """A dask or zarr array: computed slab by slab where the format allows, not pulled into memory whole."""
    return not isinstance(values, np.ndarray) and hasattr(values, "shape") and hasattr(values, "dtype")


def _write_lazy_labels(path: Path, labels, like, *, nifti: bool) -> Path:
    """:func:`write_labels` of a lazy 3D array: two passes of slabs, range then data."""
    if len(labels.shape) != 3:
        raise UserError(f"expected a 3D labels volume, got shape {tuple(labels.shape)}")
    if np.dtype(labels.dtype).kind not in "iub":
        raise UserError(f"labels must be integers, got {labels.dtype} values")
    low, high = 0, 0
    for z in z_slabs(labels.shape):
        slab = np.asarray(labels[z])
        if slab.size:
            low, high = min(low, int(slab.min())), max(high, int(slab.max()))
    if low < 0:
        raise UserError(f"labels must be non-negative, found label {low}")
    geometry = _geometry_for(like, tuple(labels.shape))
    if nifti:
        dtype = smallest_label_dtype(high)
        return write_nifti_slabs(path, labels, geometry, dtype=dtype, value_range=(low, high), labels=True)
    header = mrc_header_for(geometry, name=path.name)
    return write_mrc_slabs(path, labels, header, dtype=labels_dtype_for_mrc(high), labels=True)


def _as_3d(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 3:
        raise UserError(f"expected a 3D {what} volume, got shape {tuple(array.shape)}")
    return array


def _geometry_for(like: Geometry | Volume | None, shape: tuple[int, ...]) -> Geometry:
    if like is None:
        return Geometry(shape=shape)
    geometry = like.geometry if isinstance(like, Volume) else like
    if geometry.shape != tuple(shape):
        raise UserError(
            f"data of shape {tuple(shape)} cannot be written on the grid of "
            f"{geometry.source.name if geometry.source else 'the source volume'}, whose shape is {geometry.shape}"
        )
    return geometry


def _layer_name(volume: Volume) -> str:
    if volume.source is None:
        return str(volume.metadata.get("name", "volume"))
    return stem_of(volume.source)


def _warn_non_finite(data: np.ndarray, name: str) -> None:
    if data.dtype.kind != "f":
        return
    summary = value_summary(data, max_bytes=_NAN_CHECK_BYTES)
    if summary.non_finite:
        where = (
            f"in {summary.slices_read} of {summary.slices_total} slices checked" if summary.sampled else "in the volume"
        )
        warnings.warn(
            f"{name} has {summary.non_finite} NaN or infinite voxels {where}; napari can show it, "
            "but training and segmentation refuse such voxels: replace them first",
            UserWarning,
            stacklevel=3,
        )
