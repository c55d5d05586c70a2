"""NIfTI-1/2 volumes (MRI, CT, light-sheet exports) read and written with nibabel.

Data keep nibabel's (i, j, k) axis order, and the volume's affine is the
file's own voxel-to-world affine (nibabel's choice: sform if its code is set,
else qform). Showing the layer through that affine puts an oblique scan at
its true position. The raw header travels with the volume, base64-encoded,
so that a label file written later carries the very same qform, sform,
codes, pixdim and units as its source.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from .._errors import UserError
from .atomic import atomic_path, full_suffix
from .slabs import SLAB_VOXELS, axis_slabs
from .volume import Geometry, Volume

SUFFIXES = (".nii", ".nii.gz")

LABELS_MARK = "napari-hypseg labels"
IMAGE_MARK = "napari-hypseg image"

# Angles (radians) below this between voxel axes and world axes count as
# axis-aligned; scanners leave float noise of ~1e-6 in straight acquisitions.
_OBLIQUE_RADIANS = 1e-3

#: gzip level of written ``.nii.gz`` files: nibabel's own default, fast and close to the best ratio on labels
GZIP_LEVEL = 1

_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError, zlib.error)


def read_nifti(path: str | os.PathLike, *, mmap: bool = True) -> Volume:
    """Read a ``.nii`` or ``.nii.gz`` file as a 3D :class:`Volume`.

    Parameters
    ----------
    path : path-like
        The NIfTI file.
    mmap : bool
        Memory-map uncompressed files read-only (no effect on ``.nii.gz``,
        which has to be decompressed into memory).

    Returns
    -------
    Volume
        ``data`` is (I, J, K); ``affine`` is the file's voxel-to-world
        affine; ``metadata`` holds the header fields; ``header`` the raw
        header, for writing labels back.

    Raises
    ------
    UserError
        Empty, truncated or non-NIfTI file; 2D data; a 4D series (more than
        one volume along the fourth axis): extract one volume first.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{path.name} is empty (0 bytes)")
    try:
        img = nib.load(path, mmap="r" if mmap else False)
    except _READ_ERRORS as exc:
        raise UserError(f"{path.name} is not a readable NIfTI file ({_one_line(exc)})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise UserError(f"{path.name} is not a NIfTI image (nibabel read it as {type(img).__name__})")

    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) is still one volume
        shape = shape[:-1]
    if len(shape) == 4:
        raise UserError(
            f"{path.name} is a 4D series of {shape[3]} volumes, shape {shape}; napari-hypseg works on "
            "one 3D volume: extract one first (e.g. `fslroi in.nii.gz vol0.nii.gz 0 1`)"
        )
    if len(shape) != 3:
        raise UserError(f"expected a 3D volume, got shape {shape} in {path.name}")
    dtype = img.get_data_dtype()
    if dtype.names is not None or dtype.kind not in "iuf":
        raise UserError(
            f"{path.name} holds {dtype} voxels; only real-valued (integer or float) volumes can be segmented"
        )
    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise UserError(
            f"{path.name} is truncated or damaged: the voxel data cannot be read ({_one_line(exc)})"
        ) from exc
    data = data.reshape(shape)
    if min(shape) == 0:
        raise UserError(f"{path.name} is empty: shape {shape}")

    header = img.header
    affine = np.array(img.affine, dtype=float)
    spatial_unit, _ = header.get_xyzt_units()
    intent = header.get_intent()[0]
    version = 2 if isinstance(img, nib.Nifti2Image) else 1
    metadata: dict[str, Any] = {
        "format": "nifti",
        "source": str(path),
        "nifti_version": version,
        "units": spatial_unit,
        "shape": list(shape),
        "dtype": str(data.dtype),
        "voxel_size": [float(v) for v in header.get_zooms()[:3]],
        "axis_codes": "".join(nib.aff2axcodes(affine)),
        "oblique": bool(np.max(nib.affines.obliquity(affine)) > _OBLIQUE_RADIANS),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "description": _text(header["descrip"]),
        "intent": intent,
        "affine": affine.tolist(),
        "is_labels": intent == "label" and data.dtype.kind in "iu",
    }
    # JSON-friendly, so that it travels in napari layer metadata
    raw_header = {"version": version, "header": base64.b64encode(header.binaryblock).decode("ascii")}
    return Volume(data=data, affine=affine, format="nifti", metadata=metadata, source=path, header=raw_header)


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    geometry: Geometry,
    *,
    labels: bool,
) -> Path:
    """Write an (I, J, K) array with the given geometry, atomically.

    Parameters
    ----------
    path : path-like
        Target ``.nii`` or ``.nii.gz`` file; compression follows the suffix.
    data : (I, J, K) array
        Already in the dtype to store.
    geometry : Geometry
        For a NIfTI source the source header is reused as is (qform, sform,
        their codes, units); otherwise a fresh header gets
        ``geometry.affine`` as both qform and sform ("aligned").
    labels : bool
        Set the NIfTI intent to "label" so viewers treat the file as a
        segmentation.

    Returns
    -------
    Path
        `path`, now holding the complete file.
    """
    path = Path(path)
    low, high = (float(np.min(data)), float(np.max(data))) if labels else (0.0, 0.0)
    header = _file_header(geometry, data.shape, data.dtype, labels=labels, value_range=(low, high))
    klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    # affine=None keeps the header's qform and sform bit for bit; passing
    # the float64 affine would make nibabel recompute them.
    img = klass(data, None, header=header)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def write_nifti_slabs(
    path: str | os.PathLike,
    data,
    geometry: Geometry,
    *,
    dtype,
    value_range: tuple[float, float],
    labels: bool,
    slab_voxels: int = SLAB_VOXELS,
) -> Path:
    """:func:`write_nifti` of a lazy (I, J, K) array (dask, zarr), computed and written slab by slab.

    NIfTI stores its voxels in Fortran order, so slabs along the last axis are
    contiguous runs of the file: each one is computed, converted to ``dtype``
    in the header's byte order and appended (through gzip for ``.nii.gz``),
    and no more than one slab is ever in memory. ``value_range`` (the data's
    minimum and maximum, known to the caller) goes into ``cal_min``/``cal_max``
    for labels. The file is written under a temporary name and renamed when complete.
    """
    path = Path(path)
    if len(data.shape) != 3:
        raise UserError(f"expected a 3D volume, got shape {tuple(data.shape)}")
    header = _file_header(geometry, tuple(data.shape), np.dtype(dtype), labels=labels, value_range=value_range)
    header["vox_offset"] = 0  # write_to places the voxels right after the header and its extensions
    stored = np.dtype(dtype).newbyteorder(header.endianness)
    with atomic_path(path) as tmp:
        opener = gzip.open(tmp, "wb", compresslevel=GZIP_LEVEL) if full_suffix(path) == ".nii.gz" else open(tmp, "wb")
        with opener as handle:
            header.write_to(handle)
            handle.write(b"\0" * (int(header.get_data_offset()) - handle.tell()))
            for k in axis_slabs(data.shape, 2, slab_voxels):
                slab = np.asarray(data[:, :, k]).astype(stored, copy=False)
                handle.write(slab.tobytes(order="F"))
    return path


def _file_header(geometry: Geometry, shape, dtype, *, labels: bool, value_range: tuple[float, float]):
    """The header a written file gets: the source NIfTI's own (qform, sform, codes, units kept) or a fresh
    "aligned" one from ``geometry.affine``; shape, dtype, intent and description of what is written."""
    header = header_from_geometry(geometry)
    if header is None:
        affine = np.array(geometry.affine, dtype=float)
        header = nib.Nifti1Header()
        header.set_qform(affine, code="aligned")
        header.set_sform(affine, code="aligned")
    header.set_data_shape(shape)
    # an explicit dtype: nibabel refuses to infer 64-bit integer types, which
    # write_labels documents (uint64 for labels >= 2**32)
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    header.set_intent("label" if labels else "none")
    header["descrip"] = LABELS_MARK if labels else IMAGE_MARK
    header["cal_min"], header["cal_max"] = value_range if labels else (0.0, 0.0)
    return header


def header_from_geometry(geometry: Geometry) -> nib.Nifti1Header | None:
    """The source NIfTI header a geometry carries; None for a geometry from another source."""
    stored = geometry.header if geometry.format == "nifti" else None
    if not stored:
        return None
    raw = base64.b64decode(stored["header"])
    klass = nib.Nifti2Header if int(stored.get("version", 1)) == 2 else nib.Nifti1Header
    return klass.from_fileobj(io.BytesIO(raw))


def _one_line(exc: BaseException) -> str:
    """Library messages may span lines; the CLI prints errors on one."""
    return " ".join(str(exc).split())


def _text(raw) -> str:
    value = raw.item() if hasattr(raw, "item") else raw
    if isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode("ascii", errors="replace")
    return str(value).strip()


__all__ = ["SUFFIXES", "read_nifti", "write_nifti", "write_nifti_slabs", "header_from_geometry"]
