"""Experiment of docs/method.md, "Round twenty-six": walls more than three voxels thick.

The real tomogram binned 2× more (8× in all: its shell under two voxels thick), and as a less-binned one would
show it: resampled 1.5× and 2× finer (trilinear) with white noise of 0.3 and 0.45 of its 1st–99th percentile
range added (binning 8 voxels into one divides white noise by √8, so a tomogram binned 2× instead of 4×
carries about 2.8× the noise per voxel), and the same without the added noise and low-pass filtered (σ 0.7
voxel), as in round twenty-five. For each: the thinnest k = 2
cluster's erosion survival (``compartments.survival``), whether compartments fire, and the default beside
the best of the 12 intensity baselines (one seed), with per-class Dice (background, shell, lumen).

``--volumes``: the erosion survival of both k = 2 clusters on every volume of the full suite and sweep, and
whether compartments fire (the margin between walls and thick clusters).

    python benchmarks/exp_thick_walls.py             # ~20 min on 2 cores
    python benchmarks/exp_thick_walls.py --volumes   # ~4 min
"""

from __future__ import annotations

import argparse

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from exp_compartments import coarse_level
from napari_hypseg.datasets import load_hiv_tomogram
from napari_hypseg.quality import cases as Q
from napari_hypseg.quality.suite import OURS, default_pipeline, run_case
from napari_hypseg.segmentation import compartments as W
from napari_hypseg.training import TrainConfig


def binned(case: Q.Case, factor: int) -> Q.Case:
    """``case`` mean-binned by ``factor`` along each axis (cropped to a multiple of it), the labels sampled at
    every ``factor``-th voxel: a tomogram binned 8× instead of 4×, its shell under two voxels thick."""
    volumes = []
    for vol in case.volumes:
        z, y, x = (n // factor for n in vol.image.shape)
        image = vol.image[: z * factor, : y * factor, : x * factor].reshape(z, factor, y, factor, x, factor)
        step = (slice(0, z * factor, factor), slice(0, y * factor, factor), slice(0, x * factor, factor))
        levels = {level: (k, gt[step], names) for level, (k, gt, names) in vol.levels.items()}
        volumes.append(Q.CaseVolume(image.mean(axis=(1, 3, 5)).astype(np.float32), levels))
    return Q.Case(f"{case.name}, binned {factor}× more", case.kind, volumes, case.train, source=case.source)


def variants(tomogram: Q.Case) -> list[Q.Case]:
    return [
        tomogram,
        binned(tomogram, 2),
        Q.with_gaussian_noise(Q.resampled_finer(tomogram, 1.5), 0.3),
        Q.with_gaussian_noise(Q.resampled_finer(tomogram, 2.0), 0.45),
        Q.resampled_finer(tomogram, 1.5),
        Q.resampled_finer(tomogram, 2.0),
        Q.low_passed(tomogram, 0.7),
    ]


def thinnest_survival(image: np.ndarray) -> tuple[float, bool]:
    """The erosion survival of the thinnest cluster of the default's k = 2 level, and whether it is a wall that
    encloses compartments."""
    level = coarse_level(image)
    return W.survival(level == W.thinnest_cluster(level)), W.find_compartments(level) is not None


def volumes_table() -> None:
    for case in Q.suite_cases(quick=False) + Q.sweep_cases(quick=False):
        for index, vol in enumerate(case.volumes):
            level = coarse_level(vol.image)
            survivals = ", ".join(f"{W.survival(level == c):.2f} ({np.mean(level == c):.0%})" for c in (1, 2))
            fires = W.find_compartments(level) is not None
            print(f"{case.name} [{index}]: survival {survivals}; {'fires' if fires else 'does not fire'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", action="store_true", help="k = 2 survivals on every suite and sweep volume")
    if parser.parse_args().volumes:
        volumes_table()
        return
    ours = default_pipeline(TrainConfig())
    for case in variants(Q.real_case(load_hiv_tomogram, "cryo-ET")):
        image = case.volumes[0].image
        survival, fires = thinnest_survival(image)
        result = run_case(case, ours, seeds=[0], log=lambda s: None)
        best = result.best_baseline(1)
        per_class = " ".join(f"{v:.2f}" for v in result.per_class_mean(OURS, 1).values())
        best_per_class = " ".join(f"{v:.2f}" for v in result.per_class_mean(best, 1).values())
        wall = "fires" if fires else "does not fire"
        score = result.mean_sd(OURS, 1)[0]
        print(
            f"{case.name} {image.shape}: thinnest survival {survival:.2f}, {wall}; ours {score:.3f} "
            f"({per_class}) | best {best} {result.mean_sd(best, 1)[0]:.3f} ({best_per_class})",
            flush=True,
        )


if __name__ == "__main__":
    main()
