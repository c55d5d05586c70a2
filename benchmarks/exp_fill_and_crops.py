"""Experiment of docs/method.md, "Round twenty-four": a constant fill in the volume, and crops of the real volumes.

``--fill``: the real tomogram and the MRI template with 6 % noise, with a slab along the last two axes (a fifth
of each, about 36 % of the voxels) set to one constant (the volume's mean, its minimum, or 0), the default's
levels at k and k + 1 scored on the voxels outside the slab. Beside them the noise σ the default reads and the
σ of round twenty-three's estimator, which left out a flat voxel only when its float32 residual happened to be
exactly 0 (a fill of 0.3 leaves 3e-8): the default's levels on the channel that σ chose with the fill in the
fits (round twenty-three), on the channel of the fixed σ with the fill in the fits, and the default (the fixed
σ, the fill left out of the fits: :func:`.channels.fill_mask`).

``--crops`` (the default): each half-box (the lower and the upper 5/8 of each axis) of the tomogram, the MRI
template and the MRI with 6 % noise, the default beside the best of the 12 intensity baselines. One seed.

    python benchmarks/exp_fill_and_crops.py --fill     # ~2 min on 2 cores
    python benchmarks/exp_fill_and_crops.py --crops    # ~8 min on 2 cores
"""

from __future__ import annotations

import argparse

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality import cases as Q
from napari_hypseg.quality.baselines import BASELINES, run_baseline
from napari_hypseg.segmentation import channels as C
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.fusion import intensity_channel
from napari_hypseg.segmentation.metrics import dice_scores

FILLS = ("mean", "min", "zero")


def residual_sigma(volume: np.ndarray) -> float:
    """Round twenty-three's σ: flat voxels left out only where their float32 residual is exactly 0."""
    residual = C.interior_residuals(C.normalise(volume)).reshape(-1)
    return C.sigma_from_residuals(residual[residual != 0])


def default_levels(image: np.ndarray, channel: C.Channel, ks, *, fill: bool = True) -> M.MixtureLevels:
    """The default's levels on ``channel`` (``fill``: leaving the volume's fill out of the fits, as the default)."""
    points = intensity_channel(image, channel)[:, None]
    mask = C.fill_mask(image) if fill else None
    return M.mixture_levels(points, image.shape, ks, seed=0, fill=mask, **M.channel_settings(channel))


def scored(levels, k: int, gt: np.ndarray, keep: np.ndarray) -> str:
    d = dice_scores(levels[k][keep] - 1, gt[keep])
    return f"{d.mean:.3f} ({' '.join(f'{v:.2f}' for v in d.per_class.values())})"


def fill_table() -> None:
    print(
        "| volume | fill | σ (channel); round 23's σ | k: round 23; σ fixed; σ fixed, fill left out of the fits "
        "(default) | k + 1: the same |"
    )
    print("| --- | --- | --- | --- | --- |")
    for loader in (load_hiv_tomogram, Q.noisy_mri):
        lv = loader()
        k = lv.n_classes
        for fill in (None, *FILLS):
            image = lv.image.astype(np.float32, copy=True)
            slab = np.zeros(image.shape, bool)
            slab[:, :, : image.shape[2] // 5] = True
            slab[: image.shape[0] // 5] = True
            if fill is not None:
                image[slab] = {"mean": image.mean(), "min": image.min(), "zero": 0.0}[fill]
            keep = ~slab
            now = C.choose_channel(image)
            before_sigma = residual_sigma(image)
            before = C.Channel(C.intensity_for_noise(before_sigma), before_sigma)
            variants = [
                default_levels(image, before, [k, k + 1], fill=False),
                default_levels(image, now, [k, k + 1], fill=False),
                default_levels(image, now, [k, k + 1]),
            ]
            cells = ["; ".join(scored(levels, kk, lv.labels, keep) for levels in variants) for kk in (k, k + 1)]
            print(
                f"| {lv.name} | {fill or 'none'} | {now.sigma:.3f} ({now.kind}); {before_sigma:.3f} ({before.kind}) "
                f"| {' | '.join(cells)} |",
                flush=True,
            )


def half_boxes(shape):
    for axis, n in enumerate(shape):
        for name, part in (("lower", slice(0, n // 2 + n // 8)), ("upper", slice(n // 2 - n // 8, n))):
            box = [slice(None)] * 3
            box[axis] = part
            yield f"axis {axis}, {name} 5/8", tuple(box)


def crop_table() -> None:
    print("| volume | crop | σ (channel) | ours (per class) | best baseline | ours − best |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loader in (load_hiv_tomogram, load_mni_t1, Q.noisy_mri):
        lv = loader()
        k = lv.n_classes
        for name, box in [("whole", (slice(None),) * 3), *half_boxes(lv.image.shape)]:
            image, gt = np.ascontiguousarray(lv.image[box]), lv.labels[box]
            channel = C.choose_channel(image)
            ours = default_levels(image, channel, [k])
            best = max((dice_scores(run_baseline(b, image, [k])[k], gt).mean, b.name) for b in BASELINES)
            score = dice_scores(ours[k] - 1, gt).mean
            cell = scored(ours, k, gt, np.ones_like(gt, bool))
            print(
                f"| {lv.name} | {name} | {channel.sigma:.3f} ({channel.kind}) | {cell} "
                f"| {best[1]} {best[0]:.3f} | {score - best[0]:+.3f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", action="store_true", help="the fill table instead of the crops")
    parser.add_argument("--crops", action="store_true", help="the crops (the default)")
    args = parser.parse_args()
    if args.fill:
        fill_table()
    else:
        crop_table()


if __name__ == "__main__":
    main()
