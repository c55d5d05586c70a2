"""Experiment of docs/method.md, "Round twenty-two": can the Bayesian information criterion choose the
mixture's covariance model (shared or one per class) instead of the noise gate?

On every volume of ``exp_local_spread.py`` (those read through the denoised channel), for each level's k:
the BIC of a shared-covariance and of a per-class-covariance mixture fitted on the same seeded subsample
(scikit-learn, k-means start), and the default's levels with the covariance forced to each. One seed.

    python benchmarks/exp_covariance_bic.py     # ~12 min on 2 cores
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

import _common  # noqa: F401 - puts src/ on the path
from exp_local_spread import passes_volumes
from exp_noise_correlation import levels_text
from napari_hypseg.segmentation import mixture as M


def bic_choice(points: np.ndarray, k: int, seed: int = 0) -> str:
    """ "tied" or "full", whichever mixture of ``k`` components has the lower BIC on a subsample."""
    rng = np.random.default_rng(seed)
    sample = points[rng.choice(len(points), min(len(points), M.FIT_SIZE), replace=False)]
    fits = {c: GaussianMixture(k, covariance_type=c, random_state=seed).fit(sample) for c in ("tied", "full")}
    bics = {c: fit.bic(sample) for c, fit in fits.items()}
    return min(bics, key=bics.get)


def main() -> None:
    print("| volume | noise gate | BIC's choice per level | levels, shared | levels, per class |")
    print("| --- | --- | --- | --- | --- |")
    for name, vol, features, channel, settings in passes_volumes():
        choices = " / ".join(bic_choice(features, k) for k, _, _ in vol.levels.values())
        cells = [levels_text(features, vol, channel, covariance=c) for c in ("tied", "full")]
        print(f"| {name} | {settings['covariance']} | {choices} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
