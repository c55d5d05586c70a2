"""Experiment of docs/method.md, "Round twenty-six": walls more than three voxels thick.

The real tomogram as a less-binned one would show it: resampled 1.5× and 2× finer (trilinear) with white noise
of 0.3 and 0.45 of its 1st–99th percentile range added (binning 8 voxels into one divides white noise by
√8, so a tomogram binned 2× instead of 4× carries about 2.8× the noise per voxel), and the same without the
added noise and low-pass filtered (σ 0.7 voxel), as in round twenty-five. For each: the thinnest k = 2
cluster's erosion survival (``compartments.survival``), whether compartments fire, and the default beside
the best of the 12 intensity baselines (one seed), with per-class Dice (background, shell, lumen).

    python benchmarks/exp_thick_walls.py     # ~20 min on 2 cores
"""

from __future__ import annotations

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_hiv_tomogram
from napari_hypseg.quality import cases as Q
from napari_hypseg.quality.suite import OURS, default_pipeline, run_case
from napari_hypseg.segmentation import compartments as W
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.channels import fill_mask
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.training import TrainConfig


def variants(tomogram: Q.Case) -> list[Q.Case]:
    return [
        tomogram,
        Q.with_gaussian_noise(Q.resampled_finer(tomogram, 1.5), 0.3),
        Q.with_gaussian_noise(Q.resampled_finer(tomogram, 2.0), 0.45),
        Q.resampled_finer(tomogram, 1.5),
        Q.resampled_finer(tomogram, 2.0),
        Q.low_passed(tomogram, 0.7),
    ]


def thinnest_survival(image: np.ndarray) -> float:
    """The erosion survival of the thinnest cluster of the default's k = 2 mixture level (before compartments)."""
    features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
    settings = {key: value for key, value in M.channel_settings(channel).items() if key != "local_means"}
    level = M.mixture_levels(features, image.shape, [2], compartments=False, fill=fill_mask(image), **settings)[2]
    return min(W.survival(level == cluster) for cluster in np.unique(level))


def main() -> None:
    ours = default_pipeline(TrainConfig())
    for case in variants(Q.real_case(load_hiv_tomogram, "cryo-ET")):
        image = case.volumes[0].image
        survival = thinnest_survival(image)
        result = run_case(case, ours, seeds=[0], log=lambda s: None)
        best = result.best_baseline(1)
        per_class = " ".join(f"{v:.2f}" for v in result.per_class_mean(OURS, 1).values())
        best_per_class = " ".join(f"{v:.2f}" for v in result.per_class_mean(best, 1).values())
        print(
            f"{case.name} {image.shape}: thinnest survival {survival:.2f}; ours {result.mean_sd(OURS, 1)[0]:.3f} "
            f"({per_class}) | best {best} {result.mean_sd(best, 1)[0]:.3f} ({best_per_class})",
            flush=True,
        )


if __name__ == "__main__":
    main()
