"""Experiment of docs/method.md, "Round twenty-two": a covariance per class shrunk towards the pooled one.

On the volumes of ``exp_local_spread.py`` that the noise gate sends to a shared covariance, the default's
levels (local means included) with the mixture fitted with a covariance per class and then, for the
decision, each class's covariance replaced by (1 - λ) Σ_c + λ Σ_pooled (Σ_pooled: the weight-averaged
class covariances; in the manner of regularised discriminant analysis, Friedman 1989). λ = 1 is close to
the shared covariance (the means stay the per-class fit's), λ = 0 is the per-class fit. One seed.

    python benchmarks/exp_shrunk_covariance.py     # ~12 min on 2 cores
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from exp_local_spread import passes_volumes
from exp_noise_correlation import levels_text
from napari_hypseg.segmentation import mixture as M

LAMBDAS = (0.0, 0.5, 1.0)


def shrunk_covariances(weights: np.ndarray, covariances: np.ndarray, lam: float) -> np.ndarray:
    """(k, C, C) class covariances shrunk by ``lam`` towards their weight-averaged (pooled) mean."""
    pooled = np.tensordot(weights, covariances, axes=1)
    return (1 - lam) * covariances + lam * pooled[None]


def shrunk_fit(lam: float):
    """A stand-in for :func:`.mixture.fit_mixture` that fits a covariance per class and shrinks it by ``lam``."""
    fit = M.fit_mixture

    def fit_shrunk(points, k, *, covariance=M.COVARIANCE, **kwargs):
        mixture = fit(points, k, covariance="full", **kwargs)
        cov = shrunk_covariances(mixture.weights_, np.asarray(mixture.covariances_, np.float64), lam)
        mixture.covariances_ = cov
        mixture.precisions_ = np.stack([np.linalg.inv(c) for c in cov])
        mixture.precisions_cholesky_ = np.stack([np.linalg.cholesky(p) for p in mixture.precisions_])
        return mixture

    return fit_shrunk


def main() -> None:
    print("| volume | shared (the default) | " + " | ".join(f"per class, λ {lam:g}" for lam in LAMBDAS) + " |")
    print("| --- | --- |" + " --- |" * len(LAMBDAS))
    for name, vol, features, channel, settings in passes_volumes():
        if settings["covariance"] != "tied":
            continue
        cells = [levels_text(features, vol, channel)]
        for lam in LAMBDAS:
            with patch.object(M, "fit_mixture", shrunk_fit(lam)):
                cells.append(levels_text(features, vol, channel))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
