"""Experiment of docs/method.md, "Round twenty-three": the k-means++ start of a shared-covariance mixture.

scikit-learn starts a k-means++ mixture from k seed points, each the sole member of its component, and with a
shared covariance estimates that covariance from the scatter of every point about the seeds divided by k: EM
then stops at once with all means at the data's mean, so until round twenty-three the second of the two
starts (:data:`.mixture.INITIALISATIONS`) never counted on a noisy volume. On the volumes of
``exp_local_spread.py`` that the noise gate sends to a shared covariance, the default's levels (local means
included) from scikit-learn's start and from the seeds' cells (:func:`.mixture._start`, the default since
round twenty-three). One seed.

    python benchmarks/exp_tied_start.py     # ~10 min on 2 cores
"""

from __future__ import annotations

from unittest.mock import patch

import _common  # noqa: F401 - puts src/ on the path
from exp_local_spread import passes_volumes
from exp_noise_correlation import levels_text
from napari_hypseg.segmentation import mixture as M


def scikit_learn_start(sample, k, covariance, init, random_state) -> dict:
    """Round twenty-two's start: scikit-learn's own for every initialisation."""
    return {"init_params": init, "random_state": random_state}


def main() -> None:
    print("| volume | scikit-learn's k-means++ start | the seeds' cells (default) |")
    print("| --- | --- | --- |")
    for name, vol, features, channel, settings in passes_volumes():
        if settings["covariance"] != "tied":
            continue
        with patch.object(M, "_start", scikit_learn_start):
            before = levels_text(features, vol, channel)
        print(f"| {name} | {before} | {levels_text(features, vol, channel)} |", flush=True)


if __name__ == "__main__":
    main()
