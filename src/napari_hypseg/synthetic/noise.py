"""Random fields of the phantom: 1/f (pink) image noise and smooth texture noise."""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft

__all__ = ["pink_noise", "smooth_noise"]

_WORKERS = os.cpu_count() or 1  # threads for the FFTs


def pink_noise(shape: tuple[int, ...], *, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Gaussian 1/f noise: power spectrum proportional to 1/|f|.

    White Gaussian noise is shaped in Fourier space by ``|f|**-0.5`` (so the
    power falls as ``1/|f|``, with ``|f|`` in cycles per voxel along every
    axis, hence isotropic in space even for anisotropic shapes), the constant
    term is removed, and the result is scaled to zero mean and unit standard
    deviation.

    Parameters
    ----------
    shape : tuple of int
        Output shape (any number of dimensions, each >= 2).
    rng : numpy Generator, int or None
        Source of randomness (an int seeds a new generator).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape)
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = scipy.fft.rfftn(white, workers=_WORKERS)
    f2 = _frequency_sq(shape)
    with np.errstate(divide="ignore"):
        gain = f2 ** np.float32(-0.25)  # amplitude ~ |f|^-1/2  <=>  power ~ 1/|f|
    gain.flat[0] = 0.0
    out = scipy.fft.irfftn(spectrum * gain, s=shape, workers=_WORKERS).astype(np.float32, copy=False)
    return _standardise(out)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-correlated noise (white noise blurred by a Gaussian of ``sigma`` voxels), unit std.

    Filtering in Fourier space keeps the cost independent of ``sigma``; the
    periodic wrap only touches the box edges, where the objects are not.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    gain = np.exp(np.float32(-2.0 * math.pi**2 * sigma**2) * _frequency_sq(shape))
    return _standardise(scipy.fft.irfftn(scipy.fft.rfftn(white, workers=_WORKERS) * gain, s=shape, workers=_WORKERS))


def _frequency_sq(shape: tuple[int, ...]) -> np.ndarray:
    """|f|^2 (cycles/voxel) on the grid of ``rfftn(shape)``, float32."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.ix_(*[a.astype(np.float32) ** 2 for a in axes])
    f2 = grids[0]
    for g in grids[1:]:
        f2 = f2 + g
    return f2


def _standardise(a: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation, float32 (in place when ``a`` is float32)."""
    a = a.astype(np.float32, copy=False)
    a -= a.mean()
    std = float(np.sqrt(np.mean(np.square(a))))
    if std > 0:
        a /= np.float32(std)
    return a
