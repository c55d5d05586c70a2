"""Experiment of docs/method.md, "Round nineteen": how far EM runs, and trimming its least likely voxels.

The default's Gaussian mixture was fitted with scikit-learn's stopping rule
(the mean log-likelihood gaining less than 1e-3 per iteration), which stops a
fit after a handful of iterations. This script scores the default's levels
with other stopping tolerances, with and without trimming (each
shared-covariance fit refitted without the 0.1 % of its sample it finds least
likely, twice), on the real tomogram with 0 / 4 / 12 gold beads
(``load_hiv_tomogram(fiducials=…)``), the MRI template clean and with 6 % /
9 % Rician noise, and the confocal nuclei stack; ``--phantoms`` adds the quick
suite's phantoms (levels k = 2 / 4 / 8). The variants are set on the module's
constants, as the product reads them at each fit.

    python benchmarks/exp_em_convergence.py [--phantoms]     # ~3 min on 2 cores (+2 min)
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import DatasetUnavailable, load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality.cases import suite_cases
from napari_hypseg.segmentation import mixture as mx
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores

#: name -> (tolerance of the per-class fits, of the shared ones, trimming rounds of the shared ones, trim the
#: per-class fits too)
VARIANTS = {
    "scikit-learn's 1e-3 everywhere, no trimming (the default until round nineteen)": (1e-3, 1e-3, 0, False),
    "shared fits to 1e-5, no trimming": (1e-3, 1e-5, 0, False),
    "shared fits to 1e-3, trimmed": (1e-3, 1e-3, 2, False),
    "shared fits to 1e-5, trimmed": (1e-3, 1e-5, 2, False),
    "**shared fits to 1e-4, trimmed (the default)**": (1e-3, 1e-4, 2, False),
    "shared fits to 1e-4, trimmed; per-class fits trimmed too": (1e-3, 1e-4, 2, True),
    "every fit to 1e-5, shared ones trimmed": (1e-5, 1e-5, 2, False),
}


def volumes(with_phantoms: bool):
    """(name, image, {k: ground truth}) of every volume scored."""
    loaders = [lambda n=n: load_hiv_tomogram(fiducials=n) for n in (0, 4, 12)]
    loaders += [load_mni_t1, lambda: load_mni_t1(noise=0.06), lambda: load_mni_t1(noise=0.09), load_confocal_nuclei]
    for loader in loaders:
        try:
            lv = loader()
        except DatasetUnavailable as exc:
            print(f"skipped: {exc}")
            continue
        yield lv.name, lv.image, {lv.n_classes: lv.labels}
    if with_phantoms:
        for case in suite_cases(quick=True, log=print)[:2]:
            for i, vol in enumerate(case.volumes):
                yield f"{case.name} #{i + 1}", vol.image, {k: truth for k, truth, _ in vol.levels.values()}


def set_variant(full_tol: float, tied_tol: float, rounds: int, trim_full: bool) -> None:
    mx.EM_TOLERANCE = {"full": full_tol, "tied": tied_tol}
    mx.TRIM_ROUNDS = rounds
    mx.TRIMMED_COVARIANCES = ("tied", "full") if trim_full else ("tied",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", action="store_true", help="also the quick suite's phantoms")
    args = parser.parse_args()
    scored = list(volumes(args.phantoms))
    print("| variant | " + " | ".join(name for name, _, _ in scored) + " | seconds |")
    print("| --- " * (len(scored) + 2) + "|")
    for variant, settings in VARIANTS.items():
        set_variant(*settings)
        cells, start = [], time.perf_counter()
        for _, image, truths in scored:
            features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
            ks = sorted(truths)
            settings = mx.channel_settings(channel)
            levels = mx.mixture_levels(features, image.shape, range(2, ks[-1] + 1), seed=0, **settings)
            cells.append(" / ".join(f"{dice_scores(levels[k] - 1, truths[k]).mean:.3f}" for k in ks))
        print(f"| {variant} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
