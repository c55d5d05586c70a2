"""Experiment of docs/method.md, "Round seventeen": a level on which the spatial prior lost clusters, refitted wider.

On a noisy volume the Potts prior can leave one of a level's k components with
no voxels (or a handful): the user asked for k clusters and sees k − 1. The
default (``mixture.mixture_labels``) then refits that level with k + 1 …
k + ``MAX_EXTRA_COMPONENTS`` components until k of them hold at least
``MIN_CLUSTER_FRACTION`` of the voxels, and dissolves the smallest into the
rest. This script prints, per case and level, the Dice of the level without the
refit (``MAX_EXTRA_COMPONENTS = 0``) and with it at two thresholds, how
often it changed the level, how many of those gained and lost, and the worst
loss. One seed, intensity features (the default trains 0 steps).

    python benchmarks/exp_lost_clusters.py            # 6 + 6 phantoms at 5 noise levels (~5 min on 2 cores)
    python benchmarks/exp_lost_clusters.py --real     # the suite's and the sweep's real volumes (~3 min)
    python benchmarks/exp_lost_clusters.py --quick    # one phantom of each kind at the suite's noise (~10 s)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.quality.cases import phantom_case, suite_cases, sweep_cases
from napari_hypseg.segmentation import mixture as mx
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores

#: noise levels of the phantom scan, around the generator's default (0.25)
NOISE_LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3)
#: (name, MAX_EXTRA_COMPONENTS, MIN_CLUSTER_FRACTION) of the variants compared
VARIANTS = (("no refit", 0, 0.0), ("frac 1e-4", 3, 1e-4), ("frac 1e-3", 3, 1e-3))


def level_dice(features, shape, k, settings, gt, variant) -> tuple[float, np.ndarray]:
    """Dice of one level under a variant (its two constants), and its labels."""
    names = ("MAX_EXTRA_COMPONENTS", "MIN_CLUSTER_FRACTION")
    saved = [getattr(mx, name) for name in names]
    for name, value in zip(names, variant, strict=True):
        setattr(mx, name, value)
    try:
        labels, _ = mx.mixture_labels(features, shape, k, seed=0, **settings)
    finally:
        for name, value in zip(names, saved, strict=True):
            setattr(mx, name, value)
    return dice_scores(labels, gt).mean, labels


def run(cases) -> None:
    for case in cases:
        t0 = time.perf_counter()
        scores: dict = {}
        fired: dict = {}
        for vol in case.volumes:
            shape = vol.image.shape
            features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
            settings = mx.channel_settings(channel)
            for level, (k, gt, _) in sorted(vol.levels.items()):
                base = None
                for name, *variant in VARIANTS:
                    dice, labels = level_dice(features, shape, k, settings, gt, variant)
                    scores.setdefault(name, {}).setdefault(level, []).append(dice)
                    if base is None:
                        base, base_dice = labels, dice
                    elif not np.array_equal(base, labels):
                        fired.setdefault(name, {}).setdefault(level, []).append(dice - base_dice)
        print(f"{case.name}: {len(case.volumes)} volumes ({time.perf_counter() - t0:.0f} s)", flush=True)
        for name, levels in scores.items():
            cells = []
            for level, values in sorted(levels.items()):
                cell = f"L{level} {np.mean(values):.3f} ± {np.std(values):.3f}"
                if name != VARIANTS[0][0]:
                    gains = np.array(fired.get(name, {}).get(level, []))
                    cell += f" (changed {len(gains)}/{len(values)}"
                    if len(gains):
                        cell += f": {np.sum(gains > 0)} up, {np.sum(gains < 0)} down, worst {gains.min():+.3f}"
                    cell += ")"
                cells.append(cell)
            print(f"  {name:>10}: " + "; ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="the suite's and the sweep's real volumes instead")
    parser.add_argument("--quick", action="store_true", help="one phantom of each kind at the suite's noise")
    args = parser.parse_args()
    if args.real:
        cases = [c for c in suite_cases(quick=False) + sweep_cases(quick=False) if c.kind != "synthetic"]
    elif args.quick:
        cases = [phantom_case(irregular=irregular, n_train=0, n_test=1, noise=0.25) for irregular in (False, True)]
    else:
        cases = [
            phantom_case(irregular=irregular, n_train=0, n_test=6, noise=noise)
            for noise in NOISE_LEVELS
            for irregular in (False, True)
        ]
    run(cases)


if __name__ == "__main__":
    main()
