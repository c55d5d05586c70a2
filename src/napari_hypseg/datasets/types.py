"""A real volume with its ground-truth classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LabelledVolume:
    """Voxels, voxel size and one ground-truth label volume.

    Attributes
    ----------
    name : str
        Short identifier (used in benchmark tables and layer names).
    image : (Z, Y, X) float32 array
    voxel_size : (3,) tuple of float
        Physical size of a voxel along (z, y, x), in ``unit``.
    unit : str
    labels : (Z, Y, X) uint8 array
        Ground-truth class per voxel, 0 … len(class_names) - 1.
    class_names : tuple of str
    source : str
        Where the data and the ground truth come from (one line, for reports).
    """

    name: str
    image: np.ndarray
    voxel_size: tuple[float, float, float]
    unit: str
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)
