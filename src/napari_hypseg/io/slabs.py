"""Reading a large (Z, Y, X) array in z slabs of bounded size: one rule for the writers and the statistics."""

from __future__ import annotations

from collections.abc import Iterator

#: voxels per slab (about 128 MiB of float64 temporaries)
SLAB_VOXELS = 16 * 2**20


def z_slabs(shape, voxels: int = SLAB_VOXELS) -> Iterator[slice]:
    """Slices along z covering ``shape``, each of at most ``voxels`` voxels (at least one plane)."""
    plane = max(1, int(shape[1]) * int(shape[2]))
    step = max(1, voxels // plane)
    for z0 in range(0, int(shape[0]), step):
        yield slice(z0, min(z0 + step, int(shape[0])))
