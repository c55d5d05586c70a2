"""Value summaries that stay cheap on memory-mapped volumes of many GB."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Enough voxels for a faithful range and mean, little enough to read in a
# blink even from a network disk.
DEFAULT_SAMPLE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ValueSummary:
    """Range of the finite values of a volume, maybe from a sample of its slices.

    Attributes
    ----------
    min, max, mean : float
        Over finite voxels of the sample (NaN if there are none).
    non_finite : int
        NaN or infinite voxels in the sample.
    slices_read, slices_total : int
        Slices along axis 0 in the sample, and in the volume.
    """

    min: float
    max: float
    mean: float
    non_finite: int
    slices_read: int
    slices_total: int

    @property
    def sampled(self) -> bool:
        return self.slices_read < self.slices_total


def bounded_sample(data: np.ndarray, *, max_bytes: int = DEFAULT_SAMPLE_BYTES) -> tuple[np.ndarray, int]:
    """Evenly spaced whole slices along axis 0, at most about `max_bytes` in all.

    Parameters
    ----------
    data : (Z, ...) array
        Possibly a memory map; only the chosen slices are read.
    max_bytes : int
        Budget for the sample; at least one slice is always taken.

    Returns
    -------
    sample : (S, ...) array
        `data` itself when it fits the budget, else a copy of S slices.
    slices : int
        S, the number of slices in the sample.
    """
    n = data.shape[0]
    slice_bytes = max(1, data[:1].nbytes)
    budget = max(1, int(max_bytes // slice_bytes))
    if budget >= n:
        return data, n
    index = np.unique(np.linspace(0, n - 1, budget).round().astype(np.intp))
    return data[index], len(index)


def value_summary(data: np.ndarray, *, max_bytes: int = DEFAULT_SAMPLE_BYTES) -> ValueSummary:
    """Min, max, mean and non-finite count over a bounded sample of `data`."""
    sample, slices = bounded_sample(data, max_bytes=max_bytes)
    sample = np.asarray(sample)
    if sample.dtype.kind == "f":
        finite = np.isfinite(sample)
        non_finite = int(finite.size - np.count_nonzero(finite))
        values = sample[finite] if non_finite else sample
    else:
        non_finite = 0
        values = sample
    if values.size == 0:
        low = high = mean = float("nan")
    else:
        low, high = float(values.min()), float(values.max())
        mean = float(values.mean(dtype=np.float64))
    return ValueSummary(low, high, mean, non_finite, slices, int(data.shape[0]))
