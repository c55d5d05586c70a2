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
    python benchmarks/exp_boundary_band.py --k2       # the second table: k = 2 decided at the midpoint, ~5 min
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality.cases import phantom_case, real_case, suite_cases, sweep_cases, with_gaussian_noise
from napari_hypseg.segmentation import mixture as mx
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores

#: (radius, reference level): 0 is the default (every voxel fitted)
VARIANTS = ((0, "coarse"), (1, "coarse"), (2, "coarse"), (1, "prev"), (2, "prev"))


def boundary_band(labels: np.ndarray, radius: int) -> np.ndarray:
    """Voxels within ``radius`` (a cube) of a label change."""
    size = 2 * radius + 1
    high = ndimage.maximum_filter(labels, size=size, mode="nearest")
    return high != ndimage.minimum_filter(labels, size=size, mode="nearest")


def smoothed_labels(mixture, features, shape, beta) -> np.ndarray:
    """(N,) labels of every voxel: the mixture's posteriors after the default's Potts prior."""
    post = mx.potts_mean_field(mx.posteriors(mixture, features).reshape(*shape, mixture.n_components), beta=beta)
    return np.argmax(post, axis=-1).reshape(-1)


def levels_away_from_band(features, shape, ks, *, beta, covariance, radius, reference, seed=0):
    """Labels per k; levels after the first fitted on voxels outside the reference level's boundary band."""
    out, previous = {}, None
    for k in ks:
        fit_on = features
        if radius and previous is not None:
            ref = out[ks[0]] if reference == "coarse" else previous.reshape(shape)
            fit_on = features[~boundary_band(ref, radius).reshape(-1)]
        labels = smoothed_labels(mx.fit_mixture(fit_on, k, seed=seed, covariance=covariance), features, shape, beta)
        labels = mx.match_level_ids(labels, previous, k)[labels]
        out[k] = labels.reshape(shape)
        previous = labels
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


def k2_volumes():
    """(name, image, two-class ground truth) of the k = 2 comparison."""
    for irregular in (False, True):
        for noise in (0.05, 0.1, None, 0.5):
            case = phantom_case(irregular=irregular, n_train=0, n_test=2, **({} if noise is None else {"noise": noise}))
            yield from ((case.name, v.image, v.levels[1][1]) for v in case.volumes)
    nuclei = real_case(load_confocal_nuclei, "confocal")
    for level in (0, 0.1, 0.2):
        case = with_gaussian_noise(nuclei, level) if level else nuclei
        yield case.name, case.volumes[0].image, case.volumes[0].levels[1][1]
    for noise in (0, 0.06, 0.12, 0.18):
        mri = load_mni_t1(noise=noise) if noise else load_mni_t1()
        yield f"{mri.name} (background / brain)", mri.image, (mri.labels > 0).astype(np.uint8)
    tomogram = load_hiv_tomogram()
    shell = tomogram.class_names.index("protein shell")
    yield f"{tomogram.name} (shell / rest)", tomogram.image, (tomogram.labels == shell).astype(np.uint8)


def midpoint_k2() -> None:
    """k = 2: the default's mixture against a shared-covariance one with weights ½ in the decision, both + Potts."""
    for name, image, gt in k2_volumes():
        features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
        settings = mx.channel_settings(channel)
        row = []
        for variant in ("default", "equal weights"):
            covariance = settings["covariance"] if variant == "default" else "tied"
            mixture = mx.fit_mixture(features, 2, covariance=covariance)
            if variant != "default":
                mixture.weights_ = np.full(2, 0.5)
            labels = smoothed_labels(mixture, features, image.shape, settings["beta"])
            row.append(f"{variant} {dice_scores(labels.reshape(image.shape), gt).mean:.3f}")
        print(f"{name} (σ {channel.sigma:.3f}): " + ", ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the suite's quick volumes only")
    parser.add_argument("--k2", action="store_true", help="the k = 2 comparison (decided at the midpoint) instead")
    parser.add_argument("--json", help="write the scores here")
    args = parser.parse_args()
    if args.k2:
        midpoint_k2()
        return
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
                        dice_scores(labels[k], gt).mean
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
