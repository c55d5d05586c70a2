"""Experiment of docs/method.md, "Round twenty-two": which class spread the local-means passes score with.

On the volumes of ``exp_noise_correlation.py`` whose channel is denoised (where the passes run), and the
1 mm MRI with 6 % noise and the nuclei stack with noise 0.2 of the sweep, each level with the passes
scoring every voxel against its classes' local means with one spread pooled over the classes (the
default since round twenty-two), each class's own spread about its global mean (round twenty-one's, the
mixture's own with a covariance per class), and each class's spread about its local means. One seed.

    python benchmarks/exp_local_spread.py     # ~10 min on 2 cores
"""

from __future__ import annotations

from unittest.mock import patch

import _common  # noqa: F401 - puts src/ on the path
from exp_noise_correlation import levels_text, volumes
from napari_hypseg.datasets import load_confocal_nuclei, load_mni_t1
from napari_hypseg.quality import cases as Q
from napari_hypseg.segmentation import local_means as L
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features

SPREADS = ("pooled", "class", "residual")


def with_spread(points, vol, channel, spread: str) -> str:
    """The default's levels with the local-means passes scoring with ``spread`` (patched into
    :mod:`.local_means`, read at each call)."""
    with patch.object(L, "LOCAL_SPREAD", spread):
        return levels_text(points, vol, channel)


def sweep_volumes():
    """(name, volume) of ``exp_noise_correlation.volumes`` and two more of the sweep: the 1 mm MRI with 6 %
    noise and the nuclei stack with noise 0.2."""
    nuclei = Q.real_case(load_confocal_nuclei, "confocal")
    more = [Q.real_case(lambda: load_mni_t1(1, noise=0.06), "real"), Q.with_gaussian_noise(nuclei, 0.2)]
    return volumes() + [(c.name, c.volumes[0]) for c in more]


def passes_volumes():
    """(name, volume, features, channel, settings) for the :func:`sweep_volumes` on whose channel the default
    runs the local-means passes."""
    for name, vol in sweep_volumes():
        features, channel = fused_features(vol.image, None, latent_dim=None, config=FusionConfig())
        settings = M.channel_settings(channel)
        if settings["local_means"]:
            yield name, vol, features, channel, settings


def main() -> None:
    print("| volume | covariance | " + " | ".join(f"{s} spreads" for s in SPREADS) + " |")
    print("| --- | --- |" + " --- |" * len(SPREADS))
    for name, vol, features, channel, settings in passes_volumes():
        cells = [with_spread(features, vol, channel, s) for s in SPREADS]
        print(f"| {name} | {settings['covariance']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
