"""MRC / CCP4 volumes (tomograms, maps, image stacks) read and written with mrcfile.

Geometry conventions
--------------------
Data are returned in (z, y, x) order: sections, rows, columns for a file with
the standard axis order (``mapc, mapr, maps = 1, 2, 3``). A file with another
axis order is transposed (a view, no copy) so that axis 0 is always z.

The world position of voxel (0, 0, 0), in Å and (x, y, z) order, is the
MRC2014 ``origin`` field, or ``nxstart/nystart/nzstart * voxel_size`` when all
three origin values are zero. This is the convention of ChimeraX and EMAN.
IMOD reads the origin with the opposite sign, so the two programs can place
the same file differently; label files written here copy the source header's
voxel size, origin and start indices unchanged, which makes them overlay the
source in every program, whatever convention that program uses.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from .._errors import UserError
from .atomic import atomic_path
from .slabs import SLAB_VOXELS, z_slabs
from .volume import Geometry, Volume

SUFFIXES = (".mrc", ".rec", ".map", ".st", ".ali", ".mrcs")

HEADER_BYTES = 1024

# Written into the first header label so that our reader can tell a label
# volume from an image when it is opened again.
LABELS_MARK = "napari-hypseg labels"
IMAGE_MARK = "napari-hypseg image"

# The largest integer float32 holds exactly.
_FLOAT32_EXACT = 2**24


def read_mrc(path: str | os.PathLike, *, mmap: bool = True) -> Volume:
    """Read an MRC-family file as a 3D :class:`Volume`.

    Parameters
    ----------
    path : path-like
        An ``.mrc``, ``.rec``, ``.map``, ``.st``, ``.ali`` or ``.mrcs`` file.
    mmap : bool
        Memory-map the voxels (read-only) instead of loading them. The file
        handle is closed before returning; the map stays valid for as long as
        the array is referenced, and the operating system pages voxels in on
        demand, so a multi-GB tomogram does not need that much RAM.

    Returns
    -------
    Volume
        ``data`` is (Z, Y, X); ``affine`` is diagonal (voxel size in Å, z, y, x)
        plus the origin; ``metadata`` holds the header fields; ``header`` the
        voxel size, origin and start indices that label files copy.

    Raises
    ------
    UserError
        Empty, truncated or non-MRC file, or data that are not a 3D volume.

    Warns
    -----
    UserWarning
        The header is damaged and the file was opened in permissive mode.
    """
    path = Path(path)
    _check_readable(path)
    _sniff_header(path)
    opener = mrcfile.mmap if mmap else mrcfile.open
    problems: list[str] = []
    try:
        mrc = opener(path, mode="r", permissive=False)
    except ValueError as strict_error:
        mrc, problems = _open_permissive(opener, path, strict_error)
    except OSError as exc:
        raise UserError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    try:
        data = mrc.data
        header = mrc.header.copy()
        voxel_size = mrc.voxel_size.copy()
        extended_bytes = int(mrc.extended_header.nbytes) if mrc.extended_header is not None else 0
    finally:
        # Closing drops the file handle; the numpy memmap keeps its own map.
        mrc.close()

    if data is None:
        raise UserError(f"{path.name} has no readable voxel data (header problems: {'; '.join(problems)})")
    if data.dtype.kind not in "iuf" or data.dtype.names is not None:
        raise UserError(
            f"{path.name} holds {_mode_name(int(header.mode))} data; "
            "only real-valued (integer or float) volumes can be segmented"
        )
    order = _axis_order(header, path)
    data = _to_zyx(data, order)
    if data.ndim != 3:
        raise UserError(f"expected a 3D volume, got shape {tuple(data.shape)} in {path.name}")
    if min(data.shape) == 0:
        raise UserError(f"{path.name} is empty: shape {tuple(data.shape)}")

    geometry = _geometry_from_header(header, voxel_size, order, path)
    if problems:
        warnings.warn(
            f"{path.name}: damaged MRC header ({'; '.join(problems)}); opened in permissive mode, "
            "check that the voxel size and origin are right",
            UserWarning,
            stacklevel=2,
        )
    affine = mrc_affine(geometry["voxel_size_xyz"], _position_of_first_voxel(geometry))
    labels = _header_labels(header)
    metadata: dict[str, Any] = {
        "format": "mrc",
        "source": str(path),
        "units": "Å",
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "mode": int(header.mode),
        "voxel_size_xyz": geometry["voxel_size_xyz"],
        "origin_xyz": geometry["origin_xyz"],
        "nstart_xyz": geometry["nstart_xyz"],
        "axis_order": list(order),
        "space_group": int(header.ispg),
        "header_stats": {
            "min": float(header.dmin),
            "max": float(header.dmax),
            "mean": float(header.dmean),
            "rms": float(header.rms),
        },
        "header_labels": labels,
        "extended_header": {"type": _text(header.exttyp), "bytes": extended_bytes},
        "nversion": int(header.nversion),
        "is_labels": bool(labels) and labels[0].startswith(LABELS_MARK) and data.dtype.kind in "iu",
        "permissive": bool(problems),
        "header_problems": problems,
    }
    header_fields = {k: geometry[k] for k in ("voxel_size_xyz", "origin_xyz", "nstart_xyz")}
    return Volume(data=data, affine=affine, format="mrc", metadata=metadata, source=path, header=header_fields)


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    geometry: dict[str, Any],
    *,
    labels: bool,
) -> Path:
    """Write a (Z, Y, X) array with the given geometry, atomically.

    Parameters
    ----------
    path : path-like
        Target file; its parent folder must exist.
    data : (Z, Y, X) array
        Already in the dtype to store (int8, uint16, float32...).
    geometry : dict
        ``{"voxel_size_xyz", "origin_xyz", "nstart_xyz"}`` (Å, Å, voxels).
    labels : bool
        Mark the file as a label volume in its first header label.

    Returns
    -------
    Path
        `path`, now holding the complete file.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            _set_geometry(mrc, geometry, labels=labels)
    return path


def write_mrc_slabs(
    path: str | os.PathLike,
    source,
    geometry: dict[str, Any],
    *,
    dtype: np.dtype,
    labels: bool,
    slab_voxels: int = SLAB_VOXELS,
) -> Path:
    """:func:`write_mrc` for an array too large for memory, copied into a memory-mapped file slab by slab.

    ``source`` is a (Z, Y, X) array-like read by z slabs (a dask or zarr
    array, a memory map); each slab is converted to ``dtype``. The header's
    minimum, maximum, mean and rms are accumulated over the slabs, so the
    file is the one :func:`write_mrc` writes for the whole array.
    """
    path = Path(path)
    shape = tuple(int(n) for n in source.shape)
    low, high, total, squares = np.inf, -np.inf, 0.0, 0.0
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=shape, mrc_mode=mrcfile.utils.mode_from_dtype(dtype), overwrite=True) as mrc:
            for z in z_slabs(shape, slab_voxels):
                slab = np.asarray(source[z]).astype(dtype, copy=False)
                mrc.data[z] = slab
                values = slab.astype(np.float64)
                low, high = min(low, float(values.min())), max(high, float(values.max()))
                total += float(values.sum())
                squares += float(np.square(values).sum())
            n = max(1, int(np.prod(shape)))
            mean = total / n
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = low, high, mean
            mrc.header.rms = float(np.sqrt(max(0.0, squares / n - mean * mean)))
            _set_geometry(mrc, geometry, labels=labels)
    return path


def _set_geometry(mrc, geometry: dict[str, Any], *, labels: bool) -> None:
    mrc.voxel_size = tuple(float(v) for v in geometry["voxel_size_xyz"])
    origin = tuple(float(v) for v in geometry["origin_xyz"])
    mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
    nx, ny, nz = (int(v) for v in geometry["nstart_xyz"])
    mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = nx, ny, nz
    mark = LABELS_MARK if labels else IMAGE_MARK
    mrc.header.label[0] = mark.encode("ascii")
    mrc.header.nlabl = 1


def mrc_header_for(geometry: Geometry, *, name: str = "") -> dict[str, Any]:
    """The voxel size, origin and start indices to write for `geometry`.

    An MRC source's own header fields, unchanged; for any other geometry,
    what its affine can say in an MRC header (:func:`mrc_geometry_from_affine`).
    """
    if geometry.format == "mrc" and geometry.header:
        return geometry.header
    return mrc_geometry_from_affine(geometry.affine, source_name=name)


def mrc_geometry_from_affine(affine: np.ndarray, *, source_name: str = "") -> dict[str, Any]:
    """MRC header geometry (x, y, z order) for a (z, y, x) data-to-world affine.

    MRC can only express a voxel size and an origin per axis; rotations and
    shears are dropped with a warning.
    """
    affine = np.asarray(affine, dtype=float)
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    axis_aligned = np.allclose(linear, np.diag(np.diag(linear)), atol=1e-6 * max(spacing.max(), 1.0))
    if not axis_aligned or np.any(np.diag(linear) <= 0):
        warnings.warn(
            f"{source_name or 'this volume'} is rotated, flipped or sheared; an MRC file can only store "
            "voxel size and origin, so the orientation is not saved (use .nii/.nii.gz to keep it)",
            UserWarning,
            stacklevel=3,
        )
    zyx_origin = affine[:3, 3]
    return {
        "voxel_size_xyz": [float(v) for v in spacing[::-1]],
        "origin_xyz": [float(v) for v in zyx_origin[::-1]],
        "nstart_xyz": [0, 0, 0],
    }


def mrc_affine(voxel_size_xyz, origin_xyz) -> np.ndarray:
    """(4, 4) affine from (z, y, x) index to world (z, y, x) in Å."""
    affine = np.eye(4)
    affine[[0, 1, 2], [0, 1, 2]] = np.asarray(voxel_size_xyz, dtype=float)[::-1]
    affine[:3, 3] = np.asarray(origin_xyz, dtype=float)[::-1]
    return affine


def labels_dtype_for_mrc(max_label: int) -> np.dtype:
    """Smallest MRC mode that holds labels up to `max_label` exactly.

    MRC has no uint8 or 32-bit integer mode: 0..127 fit mode 0 (int8, read
    as unsigned bytes by IMOD), up to 65535 fit mode 6 (uint16), and up to
    2**24 fit mode 2 (float32) exactly.
    """
    if max_label <= np.iinfo(np.int8).max:
        return np.dtype(np.int8)
    if max_label <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if max_label <= _FLOAT32_EXACT:
        warnings.warn(
            f"label {max_label} does not fit a 16-bit MRC mode; storing labels as float32 "
            "(exact up to 16.7 million); use .nii for integer labels",
            UserWarning,
            stacklevel=3,
        )
        return np.dtype(np.float32)
    raise UserError(f"label {max_label} is too large for an MRC file; save as .nii or .nii.gz")


# -- reading helpers -------------------------------------------------------


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UserError(f"file not found: {path}")
    if not path.is_file():
        raise UserError(f"not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path.name} is empty (0 bytes)")
    if size < HEADER_BYTES:
        raise UserError(f"{path.name} is not an MRC file: {size} bytes, shorter than the 1024-byte MRC header")


def _sniff_header(path: Path) -> None:
    """Refuse files whose header cannot be read safely, before mrcfile sees them.

    mrcfile in permissive mode trusts the header's extended-header size and
    allocates that much memory (up to 2 GB for a text file); checking the
    sizes against the file first keeps a wrong file from freezing napari.
    """
    with open(path, "rb") as handle:
        raw = handle.read(HEADER_BYTES)
    header = np.frombuffer(raw, dtype=mrcfile.dtypes.HEADER_DTYPE).reshape(())
    try:
        order = mrcfile.utils.byte_order_from_machine_stamp(header["machst"])
    except ValueError:
        order = "<"
    header = header.view(header.dtype.newbyteorder(order))
    if not _known_mode(header["mode"]):
        # Some writers set the machine stamp of the wrong byte order.
        header = header.view(header.dtype.newbyteorder())
    has_map_id = bytes(header["map"])[:3] == b"MAP"
    mode = int(header["mode"])
    dims = [int(header[key]) for key in ("nx", "ny", "nz")]
    extended = int(header["nsymbt"])
    room = path.stat().st_size - HEADER_BYTES
    problem = None
    if not _known_mode(header["mode"]):
        problem = f"holds {_mode_name(mode)} data, which cannot be read"
    elif min(dims) <= 0:
        problem = f"has a header with impossible dimensions {dims}"
    elif not 0 <= extended <= room:
        problem = f"has a header announcing a {extended}-byte extended header in a {room + HEADER_BYTES}-byte file"
    if problem is None:
        return
    if has_map_id:
        raise UserError(f"{path.name} is a damaged or unsupported MRC file: it {problem}")
    raise UserError(f"{path.name} is not an MRC file (no 'MAP' identifier and no valid header)")


def _known_mode(mode) -> bool:
    try:
        mrcfile.utils.dtype_from_mode(int(mode))
    except ValueError:
        return False
    return True


def _open_permissive(opener, path: Path, strict_error: ValueError):
    """Retry in permissive mode; turn 'not an MRC' and truncation into UserError."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = opener(path, mode="r", permissive=True)
        except (ValueError, OSError) as exc:
            raise UserError(f"{path.name} is not a readable MRC file ({' '.join(str(exc).split())})") from exc
    problems = _unique([str(strict_error)] + [str(w.message) for w in caught])
    if mrc.data is None:
        header = mrc.header.copy()
        mrc.close()
        raise UserError(_diagnose_unreadable(path, header, problems))
    return mrc, problems


def _diagnose_unreadable(path: Path, header, problems: list[str]) -> str:
    """Explain why no voxels could be read: wrong format, or a cut-off file."""
    has_map_id = bytes(header.map).startswith(b"MAP")
    try:
        dtype = mrcfile.utils.dtype_from_mode(int(header.mode))
    except ValueError:
        dtype = None
    dims = [int(header.nx), int(header.ny), int(header.nz)]
    plausible = dtype is not None and all(0 < d < 2**20 for d in dims)
    if not plausible and not has_map_id:
        return f"{path.name} is not an MRC file (no 'MAP' identifier and no sensible header)"
    if plausible:
        expected = int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize
        available = path.stat().st_size - HEADER_BYTES - max(int(header.nsymbt), 0)
        if available < expected:
            return (
                f"{path.name} is truncated: its header describes {dims[0]}x{dims[1]}x{dims[2]} voxels "
                f"of {np.dtype(dtype).name} ({expected} bytes) but only {max(available, 0)} bytes follow "
                "the header (was the copy or download interrupted?)"
            )
    return f"{path.name} is a damaged MRC file that cannot be read: {'; '.join(problems)}"


def _axis_order(header, path: Path) -> tuple[int, int, int]:
    order = (int(header.mapc), int(header.mapr), int(header.maps))
    if sorted(order) != [1, 2, 3]:
        warnings.warn(
            f"{path.name}: axis order mapc/mapr/maps = {order} is invalid; assuming 1, 2, 3",
            UserWarning,
            stacklevel=3,
        )
        return (1, 2, 3)
    return order


def _to_zyx(data: np.ndarray, order: tuple[int, int, int]) -> np.ndarray:
    """Transpose (sections, rows, columns) so that axis 0 is z, 1 is y, 2 is x."""
    if data.ndim != 3 or order == (1, 2, 3):
        return data
    file_axes = [order[2], order[1], order[0]]  # cell axis held by data axis 0, 1, 2
    return data.transpose([file_axes.index(axis) for axis in (3, 2, 1)])


def _geometry_from_header(header, voxel_size, order, path: Path) -> dict[str, Any]:
    size = [float(voxel_size.x), float(voxel_size.y), float(voxel_size.z)]
    if not all(np.isfinite(v) and v > 0 for v in size):
        warnings.warn(
            f"{path.name}: the header gives no voxel size ({size}); using 1 Å per voxel",
            UserWarning,
            stacklevel=3,
        )
        size = [v if np.isfinite(v) and v > 0 else 1.0 for v in size]
    origin = [float(header.origin.x), float(header.origin.y), float(header.origin.z)]
    if not all(np.isfinite(origin)):
        origin = [0.0, 0.0, 0.0]
    # nxstart/nystart/nzstart belong to columns, rows, sections of the file.
    nstart_file = [int(header.nxstart), int(header.nystart), int(header.nzstart)]
    nstart = [0, 0, 0]
    for file_axis, cell_axis in enumerate(order):
        nstart[cell_axis - 1] = nstart_file[file_axis]
    return {"voxel_size_xyz": size, "origin_xyz": origin, "nstart_xyz": nstart}


def _position_of_first_voxel(geometry: dict[str, Any]) -> list[float]:
    """World (x, y, z) of voxel 0: the origin field, else start index times voxel size."""
    origin = geometry["origin_xyz"]
    if any(v != 0 for v in origin):
        return list(origin)
    return [n * s for n, s in zip(geometry["nstart_xyz"], geometry["voxel_size_xyz"])]


def _header_labels(header) -> list[str]:
    count = max(0, min(int(header.nlabl), 10))
    return [text for text in (_text(header.label[i]) for i in range(count)) if text]


def _text(raw) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


def _mode_name(mode: int) -> str:
    known = {3: "complex (mode 3)", 4: "complex (mode 4)", 16: "RGB (mode 16)", 101: "4-bit (mode 101)"}
    return known.get(mode, f"unknown-mode ({mode})")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
