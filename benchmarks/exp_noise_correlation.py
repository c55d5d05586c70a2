"""Experiment of docs/method.md, "Round nineteen": the noise's spatial correlation, and which channel wins.

For the suite's quick phantoms, one phantom per sweep case (pink noise 0.05 / 0.5, blur + white noise
0.15 / 0.3), the real tomogram (and with 12 gold beads), the MRI template at 0-18 % noise and with a
±20 % non-uniformity, and the nuclei stack (+ noise 0.1): the estimated noise σ, the ratio of the spread
(median absolute deviation) of voxel differences at lag 2 to that at lag 1 (1 for white noise, more for
noise with more power at low frequencies), and the default's levels on its own channel beside the same
mixture and prior on the Gaussian-smoothed (σ 1) intensity. One seed; measured, not adopted.

    python benchmarks/exp_noise_correlation.py     # ~5 min on 2 cores
"""

from __future__ import annotations

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality import cases as Q
from napari_hypseg.segmentation import channels as C
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores


def _mad(x: np.ndarray) -> float:
    x = x[x != 0]
    return float(np.median(np.abs(x - np.median(x))))


def lag_ratio(volume: np.ndarray) -> float:
    """Spread of voxel differences at lag 2 over that at lag 1, pooled over the three axes."""
    n = C.normalise(volume)
    lag1 = np.concatenate([np.diff(n, axis=a).ravel() for a in range(3)])
    lag2 = np.concatenate(
        [
            (np.take(n, range(2, n.shape[a]), axis=a) - np.take(n, range(n.shape[a] - 2), axis=a)).ravel()
            for a in range(3)
        ]
    )
    return _mad(lag2) / _mad(lag1)


def volumes():
    out = [(case.name, v) for case in Q.suite_cases(quick=True, log=lambda s: None)[:2] for v in case.volumes]
    for level in (0.05, 0.5):
        out += [
            (c.name, c.volumes[0])
            for c in (Q.phantom_case(irregular=i, n_train=0, n_test=1, noise=level) for i in (False, True))
        ]
    for level in (0.15, 0.3):
        out += [
            (c.name, c.volumes[0])
            for c in (Q.blurred_white_noise_case(irregular=i, n_test=1, level=level) for i in (False, True))
        ]
    loaders = [load_hiv_tomogram, lambda: load_hiv_tomogram(fiducials=12), load_mni_t1]
    loaders += [lambda level=level: load_mni_t1(noise=level) for level in (0.03, 0.06, 0.09, 0.12, 0.18)]
    loaders += [lambda: load_mni_t1(bias=0.2)]
    out += [(c.name, c.volumes[0]) for c in (Q.real_case(loader, "real") for loader in loaders)]
    nuclei = Q.real_case(load_confocal_nuclei, "confocal")
    out += [(c.name, c.volumes[0]) for c in (nuclei, Q.with_gaussian_noise(nuclei, 0.1))]
    return out


def levels_text(points: np.ndarray, vol, channel, **overrides) -> str:
    """The default's mixture and prior (the settings ``channel`` gives, with ``overrides``) on ``points``: mean
    Dice per level."""
    top = max(k for k, _, _ in vol.levels.values())
    settings = {**M.channel_settings(channel), **overrides}
    levels = M.mixture_levels(points, vol.image.shape, range(2, top + 1), seed=0, **settings)
    return " / ".join(f"{dice_scores(levels[k] - 1, gt).mean:.3f}" for k, gt, _ in vol.levels.values())


def main() -> None:
    print("| volume | σ (channel) | lag-2 / lag-1 spread | default channel | Gaussian σ 1 channel |")
    print("| --- | --- | --- | --- | --- |")
    for name, vol in volumes():
        features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
        smoothed = C.gaussian(vol.image, 1.0).reshape(-1, 1)
        smoothed = ((smoothed - smoothed.mean()) / smoothed.std()).astype(np.float32)
        cells = [levels_text(points, vol, channel) for points in (features, smoothed)]
        print(
            f"| {name} | {channel.sigma:.3f} ({channel.kind}) | {lag_ratio(vol.image):.2f} | {cells[0]} | {cells[1]} |"
        )


if __name__ == "__main__":
    main()
