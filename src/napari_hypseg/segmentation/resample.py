"""Segmenting at the model's voxel size: resample a volume to it, then map the result back to the source grid.

A model learns textures at the voxel size it was trained at (stored in the
model file). A volume at another voxel size shows the same structures at
another scale in voxels; :func:`segment_at_voxel_size` resamples it (linear
interpolation) to the model's voxel size, segments it there, and maps the
embedding and every level back to the source grid by nearest neighbour, so
labels have the source's exact shape and geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._errors import UserError

#: Relative difference along any axis beyond which a voxel size counts as different.
TOLERANCE = 0.2


def voxel_size_differs(
    volume: Sequence[float] | None, model: Sequence[float] | None, tolerance: float = TOLERANCE
) -> bool:
    """Whether ``volume``'s voxel size differs from ``model``'s by more than ``tolerance`` on some axis
    (False if either is unknown)."""
    if volume is None or model is None:
        return False
    ratio = np.asarray(volume, dtype=float) / np.asarray(model, dtype=float)
    return bool((np.abs(ratio - 1.0) > tolerance).any())


def format_voxel_size(size: Sequence[float], unit: str = "") -> str:
    """``"7.5 × 6 × 5 Å"`` (z × y × x)."""
    text = " × ".join(f"{float(v):.4g}" for v in size)
    return f"{text} {unit}".rstrip()


def voxel_size_warning(volume: Sequence[float], model: Sequence[float], *, unit: str = "") -> str:
    """The message for a voxel-size mismatch, with both sizes."""
    return (
        f"the volume's voxel size (z × y × x) {format_voxel_size(volume, unit)} differs by more than "
        f"{TOLERANCE:.0%} from the {format_voxel_size(model, unit)} the model was trained at: structures appear "
        "at another scale to the model"
    )


def nearest_index(source_shape: Sequence[int], target_shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Per axis, the ``target`` voxel whose cell holds each ``source`` voxel's centre (same physical extent)."""
    index = []
    for n_source, n_target in zip(source_shape, target_shape):
        centres = (np.arange(n_source) + 0.5) * (n_target / n_source)
        index.append(np.minimum(centres.astype(np.intp), n_target - 1))
    return tuple(index)


def resample_volume(data: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """``data`` zoomed by ``factors`` (new voxels per old voxel, per axis) with linear interpolation, float32."""
    from scipy.ndimage import zoom

    return zoom(
        np.asarray(data, dtype=np.float32), tuple(float(f) for f in factors), order=1, grid_mode=True, mode="nearest"
    )


def segment_at_voxel_size(
    volume: np.ndarray, model, config, *, voxel_size: Sequence[float], target: Sequence[float], **options
):
    """:func:`~.pipeline.segment` ``volume`` (voxel size ``voxel_size``) resampled to ``target``;
    the result lies on the source grid.

    ``config`` (a :class:`~napari_hypseg.segment_config.SegmentConfig`) and ``options``
    (``progress``, ``should_stop``) are ``segment``'s.
    """
    from .binning import binned_shape
    from .pipeline import Segmentation, segment

    factors = np.asarray(voxel_size, dtype=float) / np.asarray(target, dtype=float)
    resampled = resample_volume(volume, factors)
    if min(resampled.shape) < model.patch_size:
        raise UserError(
            f"resampled to the model's voxel size, the volume has shape {resampled.shape}, smaller than the model's "
            f"{model.patch_size}-voxel patch along some axis"
        )
    result = segment(resampled, model, config, **options)
    grid = binned_shape(tuple(volume.shape), config.binning)
    index = nearest_index(grid, result.embedding.shape[:3])
    return Segmentation(
        embedding=result.embedding[np.ix_(*index)],
        hierarchy=result.hierarchy.take(index),
        binning=config.binning,
        shape=tuple(volume.shape),
        intensity=result.intensity,
        compartments=result.compartments,
        refitted=result.refitted,
    )
