"""Experiment of docs/method.md, "Round twenty-one": boundaries placed by each class's local mean.

On the volumes of ``exp_noise_correlation.py`` (one phantom per sweep case, the tomograms, the MRIs, the
nuclei), the default's channel, covariance and prior, each level without and with the local-means passes
(``segmentation/local_means.py``: every voxel scored against the Gaussian-weighted mean of each class
around it, with the mixture's class spreads, then the Potts prior; twice). The default runs them on the
denoised channel only; the last column runs them on every volume, the clean ones read raw included, and
the one before it with the local-means σ at 1.5 and 3 voxels (the default: 2). One seed.

    python benchmarks/exp_local_means.py     # ~8 min on 2 cores
"""

from __future__ import annotations

from unittest.mock import patch

import _common  # noqa: F401 - puts src/ on the path
from exp_noise_correlation import levels_text, volumes
from napari_hypseg.segmentation import local_means as L
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features


def with_sigma(points, vol, channel, sigma: float) -> str:
    """The levels with the local-means passes at ``sigma``, patched into :mod:`.local_means` (read at each call)."""
    with patch.object(L, "LOCAL_MEANS_SIGMA", sigma):
        return levels_text(points, vol, channel, local_means=True)


def main() -> None:
    print("| volume | channel, covariance | without | with (σ 2) | σ 1.5; σ 3 | on every channel |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, vol in volumes():
        features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
        settings = M.channel_settings(channel)
        without = levels_text(features, vol, channel, local_means=False)
        forced = levels_text(features, vol, channel, local_means=True)
        if settings["local_means"]:
            other = "; ".join(with_sigma(features, vol, channel, s) for s in (1.5, 3.0))
            cells = [without, forced, other, "(the same)"]
        else:
            cells = [without, without, "—", forced]
        print(f"| {name} | {channel.kind}, {settings['covariance']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
