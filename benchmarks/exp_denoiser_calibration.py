"""Experiment of docs/method.md, "Round twenty": choosing the channel by a self-supervised denoising loss.

Noise2Self (Batson & Royer 2019; scikit-image's ``j_invariant`` module): hide a grid of voxels (every
4th along each axis), fill them with the mean of their face neighbours, denoise, and compare the output
at the hidden voxels with their own values. For a denoiser that does not see the voxel it predicts and
noise independent from voxel to voxel, this loss is the denoiser's error against the clean image plus the
noise variance, so the lowest loss picks the best denoiser without ground truth. Candidates: the raw
normalised intensity (its J-invariant version is the neighbours' mean), the default's TV channel
(weight 0.7 σ), and Gaussian smoothing of σ 0.7 / 1 / 1.5. Beside the losses, the default's mixture and
prior (its own ``channel_settings``) on the raw, TV and Gaussian σ 1 channels, on the volumes of
``exp_noise_correlation.py`` (one phantom per sweep case, the real tomogram, the MRI template at 0-18 %
noise and ±20 % non-uniformity, the nuclei stack and a noisy crop of it). One seed; measured, not adopted.

    python benchmarks/exp_denoiser_calibration.py     # ~6 min on 2 cores
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_tv_chambolle

import _common  # noqa: F401 - puts src/ on the path
from exp_noise_correlation import levels_text, volumes
from napari_hypseg.segmentation import channels as C

STRIDE = 4
#: grid offsets of the hidden voxels (of STRIDE**3): three phases spread over the cell, averaged
MASK_OFFSETS = (21, 42, 63)
GAUSSIAN_SIGMAS = (0.7, 1.0, 1.5)


def _neighbour_mean(v: np.ndarray) -> np.ndarray:
    kernel = ndimage.generate_binary_structure(3, 1).astype(np.float32)
    kernel[1, 1, 1] = 0
    return ndimage.convolve(v, kernel / kernel.sum(), mode="mirror")


def self_supervised_loss(normalised: np.ndarray, denoise) -> float:
    """Mean over :data:`MASK_OFFSETS` of the J-invariant squared error of ``denoise`` at the hidden voxels."""
    filled = _neighbour_mean(normalised)
    losses = []
    for offset in MASK_OFFSETS:
        phases = np.unravel_index(offset, (STRIDE,) * 3)
        mask = tuple(slice(p, None, STRIDE) for p in phases)
        hidden = normalised.copy()
        hidden[mask] = filled[mask]
        losses.append(float(np.mean((denoise(hidden)[mask] - normalised[mask]) ** 2)))
    return float(np.mean(losses))


def candidates(sigma: float) -> dict:
    weight = C.TV_WEIGHT_PER_SIGMA * sigma
    out = {
        "raw": lambda v: v,
        "TV": lambda v: denoise_tv_chambolle(v, weight=weight, eps=0.0, max_num_iter=C.TV_ITERATIONS),
    }
    for s in GAUSSIAN_SIGMAS:
        out[f"G{s:g}"] = lambda v, s=s: ndimage.gaussian_filter(v, s)
    return out


def _column(v: np.ndarray) -> np.ndarray:
    return C.standardise_columns(v.reshape(-1, 1))


def main() -> None:
    names = ["raw", "TV", *(f"G{s:g}" for s in GAUSSIAN_SIGMAS)]
    print(
        "| volume | σ | loss ×10⁴: " + " / ".join(names) + " | lowest of raw, TV, G1 | default's channel "
        "| mixture on raw | on TV | on G1 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, vol in volumes():
        normalised = C.normalise(vol.image)
        channel = C.choose_channel(vol.image)
        cands = candidates(channel.sigma)
        losses = {key: self_supervised_loss(normalised, f) for key, f in cands.items()}
        lowest = min(("raw", "TV", "G1"), key=losses.get)
        scores = [levels_text(_column(cands[key](normalised)), vol, channel) for key in ("raw", "TV", "G1")]
        loss_text = " / ".join(f"{1e4 * losses[key]:.1f}" for key in names)
        row = [name, f"{channel.sigma:.3f}", loss_text, lowest, channel.kind, *scores]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
