"""The in-memory form of a volume file: voxels, and the geometry that places them and their labels in the world."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Where a geometry can come from: an MRC-family file, a NIfTI file, or anything else (arrays, layers, OME-Zarr).
GEOMETRY_FORMATS = ("mrc", "nifti", "array")


@dataclass(frozen=True, eq=False)
class Geometry:
    """The grid of a 3D volume: its shape, where it sits in the world, and the header a label file copies.

    Writers need this and nothing else, so a label file can be written for a
    napari layer or a saved segmentation without the source's voxels.

    Attributes
    ----------
    shape : (3,) tuple of int
        The data shape this geometry belongs to, in data axis order.
    affine : (4, 4) float array, read-only
        Maps a data index (axis 0, 1, 2, 1) to world coordinates in the same
        axis order napari uses for the layer.
    format : {"mrc", "nifti", "array"}
        The kind of file the geometry came from ("array" when none).
    source : Path or None
        That file.
    header : dict or None
        The source file's own header fields, copied into every label file
        so that it overlays the source in any program, whatever convention
        that program applies. MRC: ``{"voxel_size_xyz", "origin_xyz",
        "nstart_xyz"}`` (Å, Å, voxels); NIfTI: ``{"version": 1 | 2,
        "header": base64 raw header}``. None: writers derive what they need
        from ``affine``.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    format: str = "array"
    source: Path | None = None
    header: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3:
            raise ValueError(f"a geometry is 3D, got shape {shape}")
        affine = np.array(self.affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"a geometry's affine is 4x4, got shape {affine.shape}")
        if self.format not in GEOMETRY_FORMATS:
            raise ValueError(f"geometry format must be one of {GEOMETRY_FORMATS}, got {self.format!r}")
        affine.flags.writeable = False  # shared by every file written on this grid
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)
        if self.source is not None:
            object.__setattr__(self, "source", Path(self.source))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Physical size of one voxel along each data axis (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def to_metadata(self) -> dict[str, Any]:
        """The JSON-friendly form napari layers carry as ``metadata["hypseg_geometry"]``.

        ``{"format", "shape", "affine", "source"}`` plus, for a file with a
        header, that header under the format's name (``"mrc"`` or ``"nifti"``).
        """
        stored: dict[str, Any] = {
            "format": self.format,
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "source": str(self.source) if self.source else None,
        }
        if self.header:
            stored[self.format] = dict(self.header)
        return stored

    @classmethod
    def from_metadata(cls, stored: Any, shape) -> Geometry | None:
        """The geometry a :meth:`to_metadata` dict describes, if it belongs to data of `shape`; else None.

        A layer whose data were cropped or resampled after it got the
        metadata keeps a dict made for another shape: that dict does not
        describe the layer's grid, so it is not used.
        """
        shape = tuple(int(n) for n in shape)
        valid = (
            isinstance(stored, dict)
            and stored.get("format") in GEOMETRY_FORMATS
            and tuple(stored.get("shape", ())) == shape
            and np.shape(stored.get("affine")) == (4, 4)
        )
        if not valid:
            return None
        source = stored.get("source")
        return cls(
            shape=shape,
            affine=np.asarray(stored["affine"], dtype=float),
            format=stored["format"],
            source=Path(source) if source else None,
            header=stored.get(stored["format"]) or None,
        )


@dataclass
class Volume:
    """A 3D array with its physical geometry.

    Attributes
    ----------
    data : (Z, Y, X) array
        Voxels in file order (MRC: z, y, x; NIfTI: i, j, k as nibabel gives them).
        May be a read-only memory map for large MRC files: never mutate it.
    affine : (4, 4) float array
        Maps a data index (axis 0, 1, 2, 1) to world coordinates in the same
        axis order that napari uses for the layer. For MRC it is diagonal
        (voxel size) plus the origin; for NIfTI it is the file's affine.
    format : {"mrc", "nifti", "array", "ome-zarr"}
        What the volume was read from.
    metadata : dict
        JSON-friendly header fields shown to the user and carried by layers.
    source : Path or None
        The file the volume was read from.
    header : dict or None
        The header fields label files copy (see :class:`Geometry`); set by the readers.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    format: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    header: dict[str, Any] | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Physical size of one voxel along each data axis (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def geometry(self) -> Geometry:
        """The grid of :attr:`data`: what a label file written for this volume copies."""
        geometry_format = self.format if self.format in GEOMETRY_FORMATS else "array"
        return Geometry(
            shape=self.shape,
            affine=self.affine,
            format=geometry_format,
            source=self.source,
            header=self.header if geometry_format != "array" else None,
        )
