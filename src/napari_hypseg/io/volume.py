"""The in-memory form of a volume file: voxels plus the geometry needed to write labels back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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
    format : {"mrc", "nifti", "array"}
        Where the geometry came from, so writers can keep the source header.
    metadata : dict
        JSON-friendly header fields shown to the user and carried by layers
        (``metadata["hypseg_geometry"]`` is what writers read back).
    source : Path or None
        The file the volume was read from.
    """

    data: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    format: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Physical size of one voxel along each data axis (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)
