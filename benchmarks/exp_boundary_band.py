"""Experiment of docs/method.md, "Round twelve": fitting each finer level away from a coarser level's boundaries.

Every level of the default is its own mixture fit on all voxels. At a boundary
between a dark and a bright class the voxels hold intermediate intensities
(partial volume, blur, the denoiser's ramp) and a finer level can spend a
component on them: the shells along the cell outline of issue 11. Here each
level above k = 2 is fitted on the voxels farther than ``r`` from a boundary of
the k = 2 level ("coarse") or of the level just below ("prev"), and every
voxel is then scored and smoothed as the default does. One seed; the suite's
quick volumes and the generality sweep's (without the nuclei stack: it is
scored at k = 2 only, where nothing changes).

For every level it also prints, for the default's labels, the cluster that lies
most in the k = 2 boundary band: the fraction of its voxels in the band, and the
fraction that survive one erosion (how thick it is). A partial-volume shell and
a thin real class (the MRI's CSF) both come out thin and in the band.

    python benchmarks/exp_boundary_band.py            # ~12 min on 2 CPU cores
    python benchmarks/exp_boundary_band.py --quick    # the suite's quick volumes only, ~3 min
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.quality.cases import suite_cases, sweep_cases
from napari_hypseg.quality.suite import _score
from napari_hypseg.segmentation import mixture as mx
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features

#: (radius, reference level): 0 is the default (every voxel fitted)
VARIANTS = ((0, "coarse"), (1, "coarse"), (2, "coarse"), (1, "prev"), (2, "prev"))


def boundary_band(labels: np.ndarray, radius: int) -> np.ndarray:
    """Voxels within ``radius`` (a cube) of a label change."""
    size = 2 * radius + 1
    high = ndimage.maximum_filter(labels, size=size, mode="nearest")
    return high != ndimage.minimum_filter(labels, size=size, mode="nearest")


def levels_away_from_band(features, shape, ks, *, beta, covariance, radius, reference, seed=0):
    """Labels per k; levels after the first fitted on voxels outside the reference level's boundary band."""
    out, previous, coarse = {}, None, None
    for k in ks:
        fit_on = features
        if radius and previous is not None:
            ref = coarse if reference == "coarse" else previous.reshape(shape)
            fit_on = features[~boundary_band(ref, radius).reshape(-1)]
        mixture = mx.fit_mixture(fit_on, k, seed=seed, covariance=covariance)
        post = mx.potts_mean_field(mx.posteriors(mixture, features).reshape(*shape, k), beta=beta)
        labels = np.argmax(post, axis=-1).reshape(-1)
        labels = mx.match_level_ids(labels, previous, k)[labels]
        out[k] = labels.reshape(shape)
        previous = labels
        if coarse is None:
            coarse = labels.reshape(shape)
    return out


def thinnest_in_band(labels: np.ndarray, band: np.ndarray) -> tuple[float, float]:
    """(fraction in the band, fraction surviving one erosion) of the cluster lying most in the band."""
    best = (0.0, 1.0)
    for c in np.unique(labels):
        mask = labels == c
        n = mask.sum()
        in_band = float((mask & band).sum() / n)
        if in_band > best[0]:
            best = (in_band, float(ndimage.binary_erosion(mask).sum() / n))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the suite's quick volumes only")
    parser.add_argument("--json", help="write the scores here")
    args = parser.parse_args()
    cases = suite_cases(quick=True)
    if not args.quick:
        cases += [c for c in sweep_cases(quick=False) if c.kind != "confocal"]
    scores: dict = {}
    for case in cases:
        t0 = time.perf_counter()
        for vol in case.volumes:
            features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
            settings = mx.channel_settings(channel)
            # the product computes every k from 2, so the coarser levels exist even where only one is scored
            ks = range(2, max(k for k, _, _ in vol.levels.values()) + 1)
            for radius, reference in VARIANTS:
                labels = levels_away_from_band(
                    features, vol.image.shape, ks, radius=radius, reference=reference, **settings
                )
                name = "default" if radius == 0 else f"r={radius} {reference}"
                for level, (k, gt, _) in vol.levels.items():
                    scores.setdefault(case.name, {}).setdefault(name, {}).setdefault(level, []).append(
                        _score(labels[k], gt).mean
                    )
                if radius == 0:
                    band = boundary_band(labels[2], 1)
                    for k, _, _ in vol.levels.values():
                        if k > 2:
                            in_band, deep = thinnest_in_band(labels[k], band)
                            print(
                                f"  {case.name} (σ {channel.sigma:.3f}) k={k}: cluster most in the band: "
                                f"{in_band:.2f} of it in the band, {deep:.2f} survives one erosion"
                            )
        print(f"{case.name} ({time.perf_counter() - t0:.0f} s)")
        for name, levels in scores[case.name].items():
            print(f"  {name:>12}: " + " / ".join(f"{np.mean(v):.3f}" for _, v in sorted(levels.items())))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(scores, fh, indent=1)


if __name__ == "__main__":
    main()
