"""Experiments of docs/method.md, rounds fourteen and fifteen: what a thin wall encloses, and closing the wall.

What a thin wall of the k = 2 level encloses becomes a cluster; the wall is closed around it where it is missing.

Four tables:

- ``--volumes`` (default): the rule on every volume of the full suite and the full generality
  sweep (the tomogram with 2 seeds): whether it fires, and the scored levels with and without it.
- ``--opening``: the tomogram's k = 3 Dice for opening radii 0-3 of the enclosed voxels, with and without
  closing the wall around them.
- ``--shells``: synthetic hollow shells (64×96×96, five shells of radius 9-11 whose lumen is the
  medium's intensity; closed, or open along z with the caps left out of the truth too, a cup) at four noise
  levels, and shells imaged through a missing wedge (±60° tilt, blurred, the truth closed) 2-4 voxels thick:
  k = 3 with and without the rule, and the wall's closure.
- ``--crowds``: synthetic crowds of small solid particles (64³, radius 2 / 3 / 4, 10 % and 17 % fill,
  2 seeds): the fraction of the volume enclosed for the same opening radii, where no voxel should be, how
  much of its border is wall, and whether the rule fires.

    python benchmarks/exp_compartments.py             # ~6 min on 2 CPU cores
    python benchmarks/exp_compartments.py --opening   # ~20 s
    python benchmarks/exp_compartments.py --shells    # ~1 min
    python benchmarks/exp_compartments.py --crowds    # ~1 min
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_hiv_tomogram
from napari_hypseg.quality.cases import suite_cases, sweep_cases
from napari_hypseg.segmentation import compartments as cp
from napari_hypseg.segmentation import mixture as mx
from napari_hypseg.segmentation.channels import fill_mask
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores

OPENINGS = (0, 1, 2, 3)


def coarse_level(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """The default's k = 2 level as :func:`~napari_hypseg.segmentation.compartments.find_compartments` sees it:
    the mixture's, before compartments and local means, the volume's constant fill left out of the fit."""
    features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
    settings = {key: value for key, value in mx.channel_settings(channel).items() if key != "local_means"}
    return mx.mixture_levels(
        features, image.shape, [2], seed=seed, compartments=False, fill=fill_mask(image), **settings
    )[2]


def enclosed_by_thin_clusters(level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels enclosed (before the opening) by the thinnest cluster of ``level``, as ``find_compartments`` asks
    it, and that cluster (both empty when it is not thin)."""
    wall = level == cp.thinnest_cluster(level)
    if not cp.is_thin(wall):
        return np.zeros(level.shape, bool), np.zeros(level.shape, bool)
    return cp.enclosed_by(wall), wall


def crowd(radius: float, fill: float, seed: int, shape=(64, 64, 64)) -> np.ndarray:
    """Solid bright balls of ``radius`` at random centres filling about ``fill`` of the volume, noise 0.3."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    truth = np.zeros(shape, bool)
    for centre in rng.uniform(0, min(shape), size=(int(fill * truth.size / (4.19 * radius**3)), 3)):
        lo = np.maximum(0, (centre - radius - 1).astype(int))
        hi = np.minimum(shape, (centre + radius + 2).astype(int))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        truth[box] |= np.linalg.norm(grid[box] - centre, axis=-1) < radius
    return truth.astype(np.float32) + rng.normal(scale=0.3, size=shape).astype(np.float32)


def shells(noise: float, *, wedge: bool, shape=(64, 96, 96)):
    """Image and truth (0 medium, 1 shell, 2 lumen) of five shells; ``wedge`` opens their caps along z."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    truth = np.zeros(shape, np.uint8)
    for centre in ((20, 25, 25), (44, 70, 30), (30, 48, 72), (40, 20, 75), (22, 72, 60)):
        r = np.sqrt(sum((axis - c) ** 2 for axis, c in zip(grid, centre)))
        shell = (r >= 9) & (r < 11)
        if wedge:
            shell &= np.abs(grid[0] - centre[0]) < 7
        truth[shell] = 1
        truth[r < 9] = 2
    rng = np.random.default_rng(0)
    return (truth == 1).astype(np.float32) + rng.normal(scale=noise, size=shape).astype(np.float32), truth


def wedge_shells(noise: float, thickness: int, *, shape=(64, 96, 96), tilt: float = 60.0):
    """Five closed shells (outer radius 10, ``thickness`` voxels) imaged through a missing wedge: blurred (σ 0.8),
    the Fourier components within 90° − ``tilt`` of the z axis removed (single-axis tilt about y), wall contrast 1,
    Gaussian noise. The truth stays closed (0 medium, 1 shell, 2 lumen): the caps exist, the image lost them."""
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    truth = np.zeros(shape, np.uint8)
    for centre in ((20, 25, 25), (44, 70, 30), (30, 48, 72), (40, 20, 75), (22, 72, 60)):
        r = np.sqrt(sum((axis - c) ** 2 for axis, c in zip(grid, centre)))
        truth[(r >= 10 - thickness) & (r < 10)] = 1
        truth[r < 10 - thickness] = 2
    spectrum = np.fft.fftn(ndimage.gaussian_filter((truth == 1).astype(np.float64), 0.8))
    kz, _, kx = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij", sparse=True)
    spectrum[np.broadcast_to(np.abs(kx) < np.abs(kz) * np.tan(np.deg2rad(90.0 - tilt)), shape)] = 0
    image = np.real(np.fft.ifftn(spectrum))
    image /= image[truth == 1].mean() - image[truth == 0].mean()
    rng = np.random.default_rng(0)
    return (image + rng.normal(scale=noise, size=shape)).astype(np.float32), truth


def _with_and_without(name: str, image: np.ndarray, truth: np.ndarray) -> None:
    features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
    settings = mx.channel_settings(channel)
    runs = {flag: mx.mixture_levels(features, image.shape, [2, 3], compartments=flag, **settings) for flag in (0, 1)}
    off, on = (dice_scores(runs[flag][3], truth) for flag in (0, 1))
    found = runs[1].compartments
    print(
        f"{name}: k = 3 {off.mean:.3f} -> {on.mean:.3f} (shell {off.per_class[1]:.3f} -> {on.per_class[1]:.3f}, "
        f"lumen {off.per_class[2]:.3f} -> {on.per_class[2]:.3f}); "
        + (f"closure {found.closed:.2%} of the voxels" if found else "does not fire"),
        flush=True,
    )


def shells_table() -> None:
    for wedge in (False, True):
        for noise in (0.2, 0.4, 0.6, 0.8):
            _with_and_without(f"{'open' if wedge else 'closed'} shells, noise {noise}", *shells(noise, wedge=wedge))
    for thickness in (2, 3, 4):
        for noise in (0.3, 0.6):
            _with_and_without(f"missing-wedge shells {thickness} thick, noise {noise}", *wedge_shells(noise, thickness))


def volumes_table() -> None:
    for case in suite_cases(quick=False) + sweep_cases(quick=False):
        for index, vol in enumerate(case.volumes):
            for seed in (0, 1) if case.kind == "cryo-ET" else (0,):
                features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
                ks = range(2, max(3, *(k for k, _, _ in vol.levels.values())) + 1)
                runs = {
                    flag: mx.mixture_levels(
                        features, vol.image.shape, ks, seed=seed, compartments=flag, **mx.channel_settings(channel)
                    )
                    for flag in (False, True)
                }
                fired = runs[True].compartments
                scores = " ".join(
                    f"L{level} {dice_scores(runs[False][k], gt).mean:.3f} -> {dice_scores(runs[True][k], gt).mean:.3f}"
                    for level, (k, gt, _) in sorted(vol.levels.items())
                )
                note = "fires: " + fired.describe() if fired else "does not fire"
                print(f"{case.name} #{index} seed {seed}: {scores}; {note}", flush=True)


def opening_table() -> None:
    tomogram = load_hiv_tomogram()
    level = coarse_level(tomogram.image)
    enclosed, wall = enclosed_by_thin_clusters(level)
    for radius in OPENINGS:
        inside = ndimage.binary_opening(enclosed, iterations=radius) if radius else enclosed
        row = []
        for closure in (np.zeros_like(inside), cp.wall_closure(inside, wall)):
            labels = cp.with_compartments(level, cp.CompartmentMasks(inside, closure, wall))
            result = dice_scores(labels, tomogram.labels)
            shell, lumen = (result.per_class[tomogram.class_names.index(name)] for name in ("protein shell", "lumen"))
            row.append(f"{result.mean:.3f} (shell {shell:.3f}, lumen {lumen:.3f})")
        print(f"opening {radius}: tomogram k = 3 {row[0]}; with the wall closed {row[1]}", flush=True)


def crowds_table() -> None:
    for fill in (0.1, 0.17):
        for radius in (2, 3, 4):
            row = []
            for seed in (1, 2):
                level = coarse_level(crowd(radius, fill, seed))
                enclosed, wall = enclosed_by_thin_clusters(level)
                opened = [ndimage.binary_opening(enclosed, iterations=r) if r else enclosed for r in OPENINGS]
                fractions = "/".join(f"{mask.mean():.4f}" for mask in opened)
                bounded = cp.wall_bounded(opened[OPENINGS.index(cp.COMPARTMENT_OPENING)], wall)
                fires = cp.find_compartments(level) is not None
                row.append(f"{fractions}, wall-bounded {bounded:.2f}{', fires' if fires else ''}")
            print(f"fill {fill:.2f} radius {radius}: enclosed at openings {OPENINGS}: {' | '.join(row)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--opening", action="store_true", help="the tomogram's Dice per opening radius")
    group.add_argument("--shells", action="store_true", help="synthetic hollow shells, closed and open")
    group.add_argument("--crowds", action="store_true", help="enclosed fraction on synthetic crowds")
    args = parser.parse_args()
    if args.opening:
        opening_table()
    elif args.shells:
        shells_table()
    elif args.crowds:
        crowds_table()
    else:
        volumes_table()


if __name__ == "__main__":
    main()
