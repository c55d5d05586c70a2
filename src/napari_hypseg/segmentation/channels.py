"""Classical per-voxel feature channels: denoised intensities and an ilastik-style filter bank.

Used twice: as the intensity channel our pipeline fuses with the hyperbolic
embedding (:mod:`napari_hypseg.segmentation.fusion`), and as the baselines of
the quality suite (k-means / a Gaussian mixture on these channels alone,
:mod:`napari_hypseg.quality.baselines`).
All channels are computed on the robustly normalised volume (1st..99th
percentile → 0..1) so that weights such as the TV weight mean the same on
any intensity scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .._errors import UserError
from .._intensity_range import OUTLIER_SPANS
from ..segment_config import INTENSITY_KINDS

#: the ilastik default scales (σ 0.7 … 3.5 in voxels)
FILTER_BANK_SIGMAS = (0.7, 1.0, 1.6, 3.5)
#: TV weight in normalised units (scikit-image's default for images in 0..1): the baselines' weight,
#: and that of clusters files written before the weight followed the noise
TV_WEIGHT = 0.1
#: the clustering's TV weight per unit of estimated noise σ: denoise in proportion to the noise.
#: Measured (docs/method.md): the real MRI with Rician noise of 6 % / 9 % (σ 0.045 / 0.065) is best at
#: weights 0.03 / 0.05; the phantoms (σ 0.14) and the tomogram (σ 0.18) near 0.1 and 0.1-0.2
TV_WEIGHT_PER_SIGMA = 0.7
#: Chambolle iterations, a fixed number (no convergence test, which depends on the whole volume): each
#: iteration reaches two voxels further, and what it adds falls off fast with distance, so a block with
#: :data:`TV_HALO` voxels of context is denoised as it is inside the whole volume (measured on the real
#: tomogram: blocks of 48 differ by < 1e-5, the labels not at all; 8 voxels of context leave 3e-4).
#: scikit-image's own test (energy change < 2e-4 of the first) stopped there after about as many.
TV_ITERATIONS = 50
TV_HALO = 16
#: estimated noise σ (normalised units) from which the clustering reads the TV-denoised
#: intensity instead of the raw one: below it (the MRI template, σ 0.028) even light TV
#: merges thin structures such as CSF into their neighbours (0.959 → 0.910 at weight 0.03);
#: from it on (one MRI acquisition with 6 % Rician noise, σ 0.045; phantoms; tomograms) the
#: raw intensity's noise drowns the classes (the noisy MRI 0.617 raw against 0.868; docs/method.md)
DENOISE_FROM_SIGMA = 0.035
#: the stride of the second noise estimate (:func:`strided_noise_sigma`): every second voxel along each axis
NOISE_STRIDE = 2
#: percentiles of the volume mapped to 0 and 1 by :func:`normalise`
NORMALISE_PERCENTILES = (1, 99)
#: share of the voxels that one constant in flat neighbourhoods must hold to be a fill (:func:`fill_mask`)
FILL_MIN_FRACTION = 0.05
#: flat voxels sampled to find the most common value
_FILL_MODE_SAMPLE = 200_000


def normalise(volume: np.ndarray) -> np.ndarray:
    """Float32 copy with the 1st..99th percentiles mapped to 0..1, clamped to ±:data:`OUTLIER_SPANS` beyond
    (constant volumes → zeros)."""
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = np.percentile(v, NORMALISE_PERCENTILES)
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
    return normalise_between(v, (lo, hi))


def gaussian(volume: np.ndarray, sigma: float) -> np.ndarray:
    v = normalise(volume)
    return ndimage.gaussian_filter(v, sigma) if sigma > 0 else v


def normalise_between(volume: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """:func:`normalise` with its range given: ``lo`` → 0, ``hi`` → 1, clamped to
    ±:data:`OUTLIER_SPANS` beyond (an empty range → zeros)."""
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = np.float32(bounds[0]), np.float32(bounds[1])
    if not hi > lo:
        return np.zeros_like(v)
    out = (v - lo) / (hi - lo)
    return np.clip(out, np.float32(-OUTLIER_SPANS), np.float32(1.0 + OUTLIER_SPANS), out=out)


def tv_denoise(
    volume: np.ndarray, weight: float = TV_WEIGHT, *, bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Chambolle total-variation denoising (scikit-image, :data:`TV_ITERATIONS`) of the normalised volume.

    ``bounds`` (the whole volume's 1st/99th percentiles) normalise a block
    of a larger volume as the whole volume is normalised.
    """
    from skimage.restoration import denoise_tv_chambolle  # noqa: PLC0415 - heavy import, used here only

    v = normalise(volume) if bounds is None else normalise_between(volume, bounds)
    return denoise_tv_chambolle(v, weight=weight, eps=0.0, max_num_iter=TV_ITERATIONS).astype(np.float32)


def noise_sigma(normalised: np.ndarray) -> float:
    """Robust estimate of the voxel noise σ of a normalised volume.

    The residual of each voxel against the mean of its six face neighbours
    is, for white noise of σ, normal with σ·sqrt(7/6); its median absolute
    deviation gives σ without being pulled by edges (a minority of voxels).
    Exactly flat voxels (equal to all six neighbours) at the most common
    such value (a fill, a masked background) are left out, else a
    skull-stripped MRI or a padded tomogram would report far too little
    noise (:func:`_off_the_fill`). Correlated noise is underestimated,
    which errs towards denoising too little.
    """
    v = np.asarray(normalised, dtype=np.float32)
    if min(v.shape) < 3:
        return 0.0
    return sigma_from_residuals(_off_the_fill(interior_residuals(v), _flat_interior(v), v[1:-1, 1:-1, 1:-1]))


def strided_noise_sigma(normalised: np.ndarray, stride: int = NOISE_STRIDE) -> float:
    """:func:`noise_sigma` of every ``stride``-th voxel along each axis: the per-voxel noise σ where the noise is
    correlated over neighbouring voxels, which :func:`noise_sigma` reads far too low (a tomogram low-pass
    filtered with a Gaussian of σ 0.7 voxel reads 0.042 there and 0.095 here; resampled 1.5× finer, 0.056 and
    0.125; white noise reads the same on both). Structure inflates it on a clean volume (the MRI template:
    0.028 and 0.075), so it only decides how noisy a volume already read as noisy is (docs/method.md, round
    twenty-five)."""
    v = np.asarray(normalised, dtype=np.float32)
    return noise_sigma(np.ascontiguousarray(v[::stride, ::stride, ::stride]))


def interior_residuals(v: np.ndarray) -> np.ndarray:
    """Each voxel off the array's faces less the mean of its six face neighbours (float32 ``v``)."""
    kernel = np.zeros((3, 3, 3), dtype=np.float32)
    kernel[1, 1, 1] = 1.0
    for axis in range(3):
        for side in (0, 2):
            index = [1, 1, 1]
            index[axis] = side
            kernel[tuple(index)] = -1.0 / 6.0
    return ndimage.convolve(v, kernel)[1:-1, 1:-1, 1:-1]


def _flat_interior(v: np.ndarray) -> np.ndarray:
    """Whether each voxel off the array's faces equals all six face neighbours (shape: ``v``'s less 2 per axis)."""
    centre = v[1:-1, 1:-1, 1:-1]
    flat = np.ones(centre.shape, dtype=bool)
    for axis in range(3):
        for step in (-1, 1):
            index = [slice(1, -1)] * 3
            index[axis] = slice(1 + step, v.shape[axis] - 1 + step)
            flat &= v[tuple(index)] == centre
    return flat


def _most_common(values: np.ndarray, seed: int = 0):
    """The most common of ``values`` (1-D, not empty), from a sample of :data:`_FILL_MODE_SAMPLE`: np.unique sorts."""
    if values.size > _FILL_MODE_SAMPLE:
        values = np.random.default_rng(seed).choice(values, _FILL_MODE_SAMPLE, replace=False)
    candidates, counts = np.unique(values, return_counts=True)
    return candidates[counts.argmax()]


def fill_mask(volume: np.ndarray, *, seed: int = 0) -> np.ndarray | None:
    """The voxels of a constant fill *inside* the intensity range, or None when the volume has none.

    The fill is :func:`fill_value`'s, found among the voxels in exactly flat neighbourhoods; its voxels
    beside the data and on the array's faces (not flat themselves) are taken in by one dilation.
    """
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3 or min(v.shape) < 3:
        return None
    flat = np.zeros(v.shape, dtype=bool)
    flat[1:-1, 1:-1, 1:-1] = _flat_interior(v)
    value = fill_value(v.reshape(-1), flat.reshape(-1), seed=seed)
    if value is None:
        return None
    at_value = v == value
    return ndimage.binary_dilation(flat & at_value, structure=np.ones((3, 3, 3), bool)) & at_value


def fill_value(values: np.ndarray, flat: np.ndarray, *, seed: int = 0):
    """The constant a volume is filled with *inside* its intensity range, or None: from its voxels' ``values``
    (1-D; all of them, or a sample's) and whether each is ``flat`` (equal to its six face neighbours).

    A fill is one value held by at least :data:`FILL_MIN_FRACTION` of the voxels in exactly flat neighbourhoods
    (real signal always carries noise), strictly between the 1st and 99th percentiles of the other voxels: a
    tomogram padded or rotated with its mean (IMOD's fill), or zero-padded when its values are centred on 0. The
    mixture is fitted without it, since its spike would take a component of its own (docs/method.md, round
    twenty-four); its voxels are then labelled like any other. A constant at the range's end is a class of its
    own and stays in the fit: the masked background of a skull-stripped MRI or of the MNI template is one of
    the classes asked for.
    """
    values, flat = np.asarray(values).reshape(-1), np.asarray(flat, bool).reshape(-1)
    needed = FILL_MIN_FRACTION * values.size
    if values.size == 0 or flat.sum() < needed:
        return None
    value = _most_common(values[flat], seed)
    at_value = values == value
    if np.count_nonzero(flat & at_value) < needed or at_value.all():
        return None
    lo, hi = np.percentile(values[~at_value], NORMALISE_PERCENTILES)
    return value if lo < value < hi else None


def face_residuals(normalised: np.ndarray, points: np.ndarray) -> np.ndarray:
    """:func:`noise_sigma`'s residual at each of ``points`` ((n, 3) voxel indices, none on a face of the array)."""
    return face_residuals_and_flat(normalised, points)[0]


def face_residuals_and_flat(normalised: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`face_residuals`, and whether each of ``points`` equals its six face neighbours ((n,) bool), from one
    read of the neighbours."""
    v = np.asarray(normalised, dtype=np.float32)
    z, y, x = np.asarray(points).T
    centre = v[z, y, x]
    faces = (v[z - 1, y, x], v[z + 1, y, x], v[z, y - 1, x], v[z, y + 1, x], v[z, y, x - 1], v[z, y, x + 1])
    neighbours = faces[0] + faces[1] + faces[2] + faces[3] + faces[4] + faces[5]
    flat = np.logical_and.reduce([f == centre for f in faces])
    return _off_the_fill(centre - neighbours / np.float32(6.0), flat, centre), flat


def _off_the_fill(residual: np.ndarray, flat: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The residuals (1-D) without the flat voxels of the most common flat value (a fill, a masked background),
    the other flat voxels' set to exactly 0 (a noiseless plateau has no noise).

    Flat is decided by value: a constant's float32 residual is not always 0 (0.3 - 6 × 0.3 / 6 = 3e-8), and a
    padded tomogram's σ read 0.083 instead of 0.184 when only exact zeros were left out (docs/method.md, round
    twenty-four). Only one value is left out, so a noiseless volume of several plateaus still reads σ = 0.
    """
    residual, flat, values = residual.reshape(-1), flat.reshape(-1), values.reshape(-1)
    if not flat.any():
        return residual
    fill = flat & (values == _most_common(values[flat]))
    residual = np.where(flat, np.float32(0.0), residual)
    return residual[~fill]


def sigma_from_residuals(residual: np.ndarray) -> float:
    """The noise σ from residuals against the six face neighbours (all voxels', or a sample's)."""
    residual = np.asarray(residual).reshape(-1)
    if residual.size == 0:
        return 0.0
    mad = np.median(np.abs(residual - np.median(residual)))
    return float(mad / 0.6745 / np.sqrt(7.0 / 6.0))


@dataclass(frozen=True)
class Channel:
    """The intensity channel a clustering reads, and the estimated noise σ it follows."""

    kind: str  # "raw" or "denoised"
    sigma: float
    #: :func:`strided_noise_sigma`, where it was measured (None: not, as for the raw channel or a dataset's sample)
    strided_sigma: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in INTENSITY_KINDS:
            raise UserError(f"intensity channel must be one of {', '.join(INTENSITY_KINDS)}, got {self.kind!r}")

    @property
    def correlated_sigma(self) -> float:
        """The per-voxel noise σ allowing for noise correlated over neighbouring voxels: the larger of
        :attr:`sigma` and :attr:`strided_sigma`."""
        return self.sigma if self.strided_sigma is None else max(self.sigma, self.strided_sigma)

    @property
    def tv_weight(self) -> float:
        """The TV weight of the denoised channel: :data:`TV_WEIGHT_PER_SIGMA` × σ (0 for the raw channel)."""
        return TV_WEIGHT_PER_SIGMA * self.sigma if self.kind == "denoised" else 0.0


def intensity_for_noise(sigma: float) -> str:
    """ "denoised" from a noise σ of :data:`DENOISE_FROM_SIGMA` (normalised units) on, else "raw"."""
    return "denoised" if sigma >= DENOISE_FROM_SIGMA else "raw"


def choose_channel(volume: np.ndarray, kind: str = "auto") -> Channel:
    """The channel for ``volume``: ``kind`` ("auto": by :func:`intensity_for_noise`), with its estimated σ (and,
    for the denoised channel, its :func:`strided_noise_sigma`)."""
    normalised = normalise(volume)
    sigma = noise_sigma(normalised)
    kind = intensity_for_noise(sigma) if kind == "auto" else kind
    # only a denoised channel's noise decides anything more (mixture.noise_dominated)
    return Channel(kind, sigma, strided_noise_sigma(normalised) if kind == "denoised" else None)


def intensity(volume: np.ndarray, channel: Channel) -> np.ndarray:
    """The intensity the clustering reads: "raw" (normalised) or "denoised" (TV at the channel's weight)."""
    if channel.kind == "raw":
        return normalise(volume)
    return tv_denoise(volume, channel.tv_weight)


def _eigvals_sym3(m: list[list[np.ndarray]]) -> np.ndarray:
    """Eigenvalues (ascending, last axis) of a field of symmetric 3×3 matrices given as nested lists."""
    stacked = np.stack([np.stack(row, axis=-1) for row in m], axis=-2)
    return np.linalg.eigvalsh(stacked.astype(np.float64)).astype(np.float32)


def filter_bank(volume: np.ndarray, sigmas=FILTER_BANK_SIGMAS) -> np.ndarray:
    """(Z, Y, X, C) ilastik-style channels: Gaussian, LoG, gradient magnitude,
    Hessian eigenvalues and structure-tensor eigenvalues at each σ."""
    v = normalise(volume)
    channels = []
    for s in sigmas:
        channels.append(ndimage.gaussian_filter(v, s))
        channels.append(ndimage.gaussian_laplace(v, s))
        channels.append(ndimage.gaussian_gradient_magnitude(v, s))
        orders = {}
        for a in range(3):
            for b in range(a, 3):
                order = [0, 0, 0]
                order[a] += 1
                order[b] += 1
                orders[a, b] = ndimage.gaussian_filter(v, s, order=order)
        hess = [[orders[min(a, b), max(a, b)] for b in range(3)] for a in range(3)]
        channels.extend(np.moveaxis(_eigvals_sym3(hess), -1, 0))
        grads = [ndimage.gaussian_filter(v, s, order=[int(a == i) for i in range(3)]) for a in range(3)]
        # structure tensor: outer product of the gradient, integrated at 2σ (ilastik's convention)
        st = {}
        for a in range(3):
            for b in range(a, 3):
                st[a, b] = ndimage.gaussian_filter(grads[a] * grads[b], 2 * s)
        tensor = [[st[min(a, b), max(a, b)] for b in range(3)] for a in range(3)]
        channels.extend(np.moveaxis(_eigvals_sym3(tensor), -1, 0))
    return np.stack(channels, axis=-1).astype(np.float32)


def standardise_columns(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per channel (last axis); constant channels become zeros."""
    f = features.reshape(-1, features.shape[-1]).astype(np.float32)
    sd = f.std(axis=0)
    sd[sd == 0] = 1.0
    return ((f - f.mean(axis=0)) / sd).reshape(features.shape)
