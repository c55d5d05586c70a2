"""Boundary checks on user volumes, with messages a biologist can act on."""

from __future__ import annotations

import numpy as np

from ._errors import UserError

# voxels read per slab when scanning big (memory-mapped) volumes, to bound RAM
_SLAB_VOXELS = 32 * 1024 * 1024
# Widest value range the float32 pipeline handles: normalisation computes
# (x - low) / (high - low), and sums of squares over a patch follow, so a range
# near float32's 3.4e38 overflows to inf and every embedding collapses to one point.
MAX_VALUE_SPAN = 1e30


def _slabs(data: np.ndarray):
    step = max(1, _SLAB_VOXELS // max(1, int(np.prod(data.shape[1:]))))
    for start in range(0, data.shape[0], step):
        yield np.asarray(data[start : start + step])


def check_volume(data: np.ndarray, *, min_size: int = 1, name: str = "volume") -> None:
    """Raise :class:`UserError` unless ``data`` is a finite, non-constant 3D array of edge >= ``min_size``.

    The scan for NaNs and constant values reads the array slab by slab, so
    memory-mapped tomograms are never loaded whole.
    """
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) != 3:
        raise UserError(f"expected a 3D {name}, got shape {shape}")
    if min(shape) == 0:
        raise UserError(f"the {name} is empty (shape {shape})")
    if min(shape) < min_size:
        raise UserError(
            f"the {name} of shape {shape} is smaller than the model's {min_size}-voxel patch along some axis"
        )
    if not np.issubdtype(np.asarray(data[:1, :1, :1]).dtype, np.number):
        raise UserError(f"the {name} has non-numeric dtype {data.dtype}")
    lo, hi = np.inf, -np.inf
    for slab in _slabs(data):
        if np.issubdtype(slab.dtype, np.floating) and not np.isfinite(slab).all():
            raise UserError(
                f"the {name} contains NaN or infinite values; replace them (e.g. with the mean) before training"
            )
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
    if hi <= lo:
        raise UserError(f"the {name} is constant (every voxel is {lo:g}); there is nothing to segment")
    if hi - lo > MAX_VALUE_SPAN:
        raise UserError(
            f"the {name}'s values span {lo:.3g} to {hi:.3g}, too wide for float32 arithmetic "
            f"(at most {MAX_VALUE_SPAN:.0e}); rescale it (e.g. to zero mean, unit variance) first"
        )


def robust_range(volumes, *, low: float = 1.0, high: float = 99.0, max_samples: int = 2_000_000) -> tuple[float, float]:
    """Percentile range pooled over volumes, from a strided subsample of each (cheap on memory maps)."""
    samples = []
    per_volume = max_samples // max(1, len(volumes))
    for data in volumes:
        stride = max(1, int(np.ceil((data.size / per_volume) ** (1 / 3))))
        samples.append(np.asarray(data[::stride, ::stride, ::stride], dtype=np.float64).ravel())
    pooled = np.concatenate(samples)
    lo, hi = np.percentile(pooled, [low, high])
    if hi <= lo:  # mostly-constant data: fall back to the full range of the sample
        lo, hi = pooled.min(), pooled.max()
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)
