"""Experiment of docs/method.md, "Round twenty-three": a covariance per class shrunk towards the pooled one
inside EM.

Round twenty-two shrank a per-class fit's covariances after EM, for the decision only, and found that the
per-class fit's means and weights decide. Here every M-step shrinks: Σ_c ← (1 − λ) Σ_c + λ Σ_pooled
(Σ_pooled: the weight-averaged class covariances; regularised discriminant analysis, Friedman 1989), so
the means and weights are fitted under the shrunk covariances. λ = 1 is the shared covariance, λ = 0 a
covariance per class. On the volumes of ``exp_local_spread.py`` that the noise gate sends to a shared
covariance (``--clean``: those it gives a covariance per class), the default's levels (local means
included) with the shrunk fit. EM stops at ``--tol`` (10⁻⁴, the shared fits' rule); ``--trim`` trims the
shrunk fits as the shared ones are. One seed.

    python benchmarks/exp_shrunk_em.py --trim --lambdas 0.9 0.8 0.5    # docs/method.md; ~4 min per λ on 2 cores
    python benchmarks/exp_shrunk_em.py --clean --tol 1e-3 --lambdas 0 0.3 0.6    # ~2 min per λ
"""

from __future__ import annotations

import argparse
from unittest.mock import patch

import numpy as np
from sklearn.mixture import GaussianMixture

import _common  # noqa: F401 - puts src/ on the path
from exp_local_spread import passes_volumes
from exp_noise_correlation import levels_text
from exp_shrunk_covariance import shrunk_covariances
from napari_hypseg.segmentation import mixture as M


class ShrunkMixture(GaussianMixture):
    """A full-covariance mixture whose every M-step shrinks the class covariances towards their pooled mean."""

    def __init__(self, shrinkage: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.shrinkage = shrinkage

    def _initialize(self, X, resp, xp=None):
        super()._initialize(X, resp)
        if self.precisions_init is None:
            self._shrink()

    def _m_step(self, X, log_resp, xp=None):
        super()._m_step(X, log_resp)
        self._shrink()

    def _shrink(self):
        self.covariances_ = shrunk_covariances(self.weights_, self.covariances_, self.shrinkage)
        self.precisions_cholesky_ = np.stack([np.linalg.cholesky(np.linalg.inv(c)) for c in self.covariances_])


def shrunk_em(lam: float, tolerance: float):
    """A stand-in for :func:`.mixture._em` that returns a :class:`ShrunkMixture` for a covariance per class."""
    em = M._em

    def make(k, covariance, **start):
        if covariance != "full":
            return em(k, covariance, **start)
        params = em(k, covariance, **start).get_params()
        params["tol"] = tolerance
        return ShrunkMixture(shrinkage=lam, **params)

    return make


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clean", action="store_true", help="the volumes with a covariance per class")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--only", help="volumes whose name contains this")
    parser.add_argument("--trim", action="store_true", help="trim the shrunk fits as the shared ones are")
    args = parser.parse_args()
    wanted = "full" if args.clean else "tied"
    print("| volume | " + " | ".join(f"shrunk in EM, λ {lam:g}" for lam in args.lambdas) + " |")
    print("| --- |" + " --- |" * len(args.lambdas))
    for name, vol, features, channel, settings in passes_volumes():
        if settings["covariance"] != wanted or (args.only and args.only not in name):
            continue
        cells = []
        for lam in args.lambdas:
            trimmed = (*M.TRIMMED_COVARIANCES, "full") if args.trim else M.TRIMMED_COVARIANCES
            with patch.object(M, "_em", shrunk_em(lam, args.tol)), patch.object(M, "TRIMMED_COVARIANCES", trimmed):
                cells.append(levels_text(features, vol, channel, covariance="full"))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
