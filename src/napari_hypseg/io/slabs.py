"""Reading a large 3D array in slabs of bounded size: one rule for the writers and the statistics."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: voxels per slab (about 128 MiB of float64 temporaries)
SLAB_VOXELS = 16 * 2**20


def z_slabs(shape, voxels: int = SLAB_VOXELS) -> Iterator[slice]:
    """Slices along z covering ``shape``, each of at most ``voxels`` voxels (at least one plane)."""
    return axis_slabs(shape, 0, voxels)


def axis_slabs(shape, axis: int, voxels: int = SLAB_VOXELS) -> Iterator[slice]:
    """Slices along ``axis`` covering ``shape``, each slab of at most ``voxels`` voxels (at least one plane)."""
    size = int(shape[axis])
    plane = max(1, int(np.prod([int(n) for i, n in enumerate(shape) if i != axis])))
    step = max(1, voxels // plane)
    for start in range(0, size, step):
        yield slice(start, min(start + step, size))
