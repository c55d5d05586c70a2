"""Block-mean binning of (memory-mapped) volumes and nearest upsampling of labels back to the source grid."""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import UserError


def binned_shape(shape, factor: int) -> tuple[int, int, int]:
    return tuple(-(-n // factor) for n in shape)


def check_binning(shape, factor, *, min_size: int = 1) -> None:
    """Refuse a bin factor that is not a positive integer, exceeds the volume, or leaves fewer than
    ``min_size`` voxels along an axis.

    :func:`bin_volume` itself bins by any factor (the result can be one
    voxel); segmentation calls this first because such a volume has nothing
    left to segment, and "the volume is constant" would name the wrong cause.
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
        raise UserError(f"the bin factor must be an integer >= 1, got {factor!r}")
    if factor == 1 and min_size <= 1:
        return
    shape = tuple(int(n) for n in shape)
    if factor > min(shape):
        raise UserError(f"the bin factor {factor} is larger than the volume ({'x'.join(map(str, shape))} voxels)")
    binned = binned_shape(shape, factor)
    if min(binned) < min_size:
        largest = (
            max(f for f in range(1, factor + 1) if min(binned_shape(shape, f)) >= min_size)
            if min(shape) >= min_size
            else None
        )
        hint = f"; use a bin of at most {largest}" if largest and largest > 1 else "; it is too small to bin"
        raise UserError(
            f"binning by {factor} shrinks the volume ({'x'.join(map(str, shape))}) to "
            f"{'x'.join(map(str, binned))}, smaller than the model's {min_size}-voxel patch{hint}"
        )


def bin_volume(volume: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor³`` blocks (the last partial block of each axis averages what it has).

    Reads ``factor`` z-slices at a time, so a memory-mapped tomogram is
    streamed rather than loaded: peak memory is one slab plus the result.
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
        raise UserError(f"the bin factor must be an integer >= 1, got {factor!r}")
    if factor == 1:
        return np.asarray(volume, dtype=np.float32)
    shape = binned_shape(volume.shape, factor)
    full = (factor, shape[1] * factor, shape[2] * factor)
    out = np.empty(shape, np.float32)
    for i in range(shape[0]):
        slab = np.asarray(volume[i * factor : (i + 1) * factor], dtype=np.float32)
        # zero-pad partial blocks and divide by how many real voxels each block holds
        pad = [(0, f - n) for f, n in zip(full, slab.shape)]
        sums = np.pad(slab, pad).reshape(factor, shape[1], factor, shape[2], factor).sum(axis=(0, 2, 4))
        counts = (
            np.pad(np.ones(slab.shape, np.float32), pad)
            .reshape(factor, shape[1], factor, shape[2], factor)
            .sum(axis=(0, 2, 4))
        )
        out[i] = sums / counts
    return out


def upsample_labels(labels: np.ndarray, factor: int, shape) -> np.ndarray:
    """Nearest-neighbour upsampling of binned labels onto the full ``shape`` grid."""
    if factor == 1:
        return labels
    out = np.empty(tuple(shape), labels.dtype)
    for i in range(labels.shape[0]):
        z0 = i * factor
        if z0 >= shape[0]:
            break
        plane = np.repeat(np.repeat(labels[i], factor, 0), factor, 1)[: shape[1], : shape[2]]
        out[z0 : min(z0 + factor, shape[0])] = plane
    return out
