"""The paper's synthetic-benchmark protocol (Tables 1 and 2) on our recreated phantom set.

Protocol: train each model on the training phantoms, segment each test phantom
at k = 2 / 4 / 8 (levels 1 / 2 / 3), match clusters to classes with the
Hungarian algorithm and report the mean class Dice, mean ± sd over test
volumes. Baselines without learning (k-means on raw or smoothed intensities)
are measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

from .model.config import ModelConfig
from .synthetic import CLASS_NAMES, make_phantom, phantom_seeds

# torch-heavy modules are imported where used: ``hypseg demo`` reads LEVEL_K and PUBLISHED at CLI start-up
if TYPE_CHECKING:
    from .model.vae import HyperbolicVAE
    from .training import TrainConfig

#: phantom level -> clusters it is segmented into: its number of ground-truth classes (2 / 4 / 8)
LEVEL_K = {level: len(names) for level, names in CLASS_NAMES.items()}

#: published mean Dice, levels 1/2/3 (regular / irregular variant where reported)
PUBLISHED = {
    "Hsu et al. 2021 (paper, full model)": {"regular": (0.952, 0.541, 0.216), "irregular": (0.953, 0.488, 0.199)},
    "Hsu et al. 2021, Euclidean base": {"regular": (0.784, 0.322, 0.109)},
    "Hsu et al. 2021, hyperbolic base": {"regular": (0.832, 0.352, 0.135)},
    "Hsu et al. 2021, + gyroplane": {"regular": (0.905, 0.473, 0.204)},
    "Hsu et al. 2021, + triplet": {"regular": (0.945, 0.534, 0.222)},
    "k-means (Tursynbek & Niethammer 2023)": {"regular": (0.808, 0.326, 0.149), "irregular": (0.771, 0.299, 0.118)},
    "BM4D + k-means (ibid.)": {"regular": (0.949, 0.529, 0.335), "irregular": (0.950, 0.533, 0.324)},
    "diffusion features (ibid., best published)": {
        "regular": (0.986, 0.577, 0.397),
        "irregular": (0.967, 0.565, 0.382),
    },
}


@dataclass(frozen=True)
class Method:
    """One row of the table: how features are made and clustered."""

    name: str
    model: ModelConfig | None = None  # None: cluster intensities directly
    triplet: bool = True
    intensity_sigma: float = 0.0  # Gaussian smoothing of intensities (baselines)
    window: int | tuple[int, ...] | None = None
    embedding_sigma: float = 0.0  # Gaussian smoothing of the embedding's tangent vectors before clustering
    mode: str = "flat"


HYP = ModelConfig()
METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("k-means on intensities"),
        Method("Gaussian-smoothed (σ=1) k-means", intensity_sigma=1.0),
        Method("Gaussian-smoothed (σ=2) k-means", intensity_sigma=2.0),
        Method("Euclidean VAE", model=ModelConfig(manifold="euclidean", gyroplane=False), triplet=False),
        Method("Euclidean VAE + triplet", model=ModelConfig(manifold="euclidean", gyroplane=False)),
        Method("hyperbolic VAE base", model=ModelConfig(gyroplane=False), triplet=False),
        Method("+ gyroplane", model=HYP, triplet=False),
        Method("+ triplet", model=ModelConfig(gyroplane=False)),
        Method("full model (gyroplane + triplet)", model=HYP),
        Method("ours: full model + fused windows (17, 9)", model=HYP, window=(17, 9)),
    ]
}


@dataclass
class MethodResult:
    name: str
    dice: dict[int, list[float]] = field(default_factory=lambda: {1: [], 2: [], 3: []})
    train_s: float = 0.0
    segment_s: float = 0.0

    def mean_sd(self, level: int) -> tuple[float, float]:
        values = np.asarray(self.dice[level])
        return float(values.mean()), float(values.std())


def _smooth_tangent(points: np.ndarray, metric: str, sigma: float) -> tuple[np.ndarray, str]:
    """Gaussian-smooth an embedding spatially, in the tangent space at the origin when on the ball."""
    import torch

    from . import hyperbolic as hyp

    if metric == "poincare":
        t = hyp.logmap0(torch.from_numpy(np.ascontiguousarray(points)), dim=-1).numpy()
    else:
        t = points
    t = np.stack([gaussian_filter(t[..., i], sigma) for i in range(t.shape[-1])], axis=-1)
    if metric == "poincare":
        t = hyp.expmap0(torch.from_numpy(t), dim=-1).numpy()
    return t.astype(np.float32), metric


def features_for(method: Method, image: np.ndarray, model: HyperbolicVAE | None, device) -> tuple[np.ndarray, str]:
    """Per-voxel features ``(Z, Y, X, f)`` and the metric to cluster them with."""
    from .segmentation.embed import embed
    from .segmentation.pipeline import clustering_space

    if model is None:
        img = gaussian_filter(image, method.intensity_sigma) if method.intensity_sigma else image
        return img[..., None].astype(np.float32), "euclidean"
    emb = embed(image, model, window=method.window, device=device)
    points, metric = clustering_space(emb, model)
    if method.embedding_sigma:
        points, metric = _smooth_tangent(points, metric, method.embedding_sigma)
    return points, metric


def segment_levels(points: np.ndarray, metric: str, mode: str, seed: int, device) -> dict[int, np.ndarray]:
    from .segmentation.hierarchy import build_hierarchy
    from .segmentation.kmeans import poincare_kmeans

    shape = points.shape[:-1]
    if mode == "nested":
        hierarchy = build_hierarchy(
            points, k_min=2, k_max=max(LEVEL_K.values()), mode="nested", metric=metric, seed=seed
        )
        return {level: hierarchy.labels(k) for level, k in LEVEL_K.items()}
    flat = points.reshape(-1, points.shape[-1])
    return {
        level: poincare_kmeans(flat, k, metric=metric, seed=seed, device=device).labels.reshape(shape)
        for level, k in LEVEL_K.items()
    }


def make_split(n_train: int, n_test: int, *, size: int = 50, irregular: bool = False, seed: int = 0):
    """Training images and test phantoms, from the same seeds as ``hypseg sample`` (80/20/20 of 120).

    Training phantoms are the first ``n_train`` of the 80 training seeds and
    test phantoms the first ``n_test`` of the 20 test seeds, so a bench run and
    a dataset written with the same ``--seed`` hold the same volumes.
    """
    if not (1 <= n_train <= 80 and 1 <= n_test <= 20):
        raise ValueError("n_train must be in 1..80 and n_test in 1..20 (the paper's split)")
    seeds = phantom_seeds(seed, 120)
    train = [make_phantom(size, irregular=irregular, seed=s).image for s in seeds[:n_train]]
    test = [make_phantom(size, irregular=irregular, seed=s) for s in seeds[100 : 100 + n_test]]
    return train, test


def run_method(
    method: Method,
    train: Sequence[np.ndarray],
    test,
    *,
    train_config: TrainConfig,
    device="auto",
    seed: int = 0,
    log: Callable[[str], None] = print,
    trained: dict | None = None,
) -> MethodResult:
    """Train (once per distinct model/triplet setting, cached in ``trained``) and score on ``test``."""
    from .segmentation.metrics import dice_scores
    from .training import Trainer

    result = MethodResult(method.name)
    model = None
    if method.model is not None:
        key = (method.model, method.triplet)
        if trained is not None and key in trained:
            model, result.train_s = trained[key]
        else:
            t0 = time.perf_counter()
            trainer = Trainer(
                list(train),
                model_config=method.model,
                train_config=train_config.with_(triplet=method.triplet, preview_every=0, seed=seed),
            )
            model = trainer.fit()
            result.train_s = time.perf_counter() - t0
            if trained is not None:
                trained[key] = (model, result.train_s)
    t0 = time.perf_counter()
    for phantom in test:
        points, metric = features_for(method, phantom.image, model, device)
        labels = segment_levels(points, metric, method.mode, seed, device if device != "auto" else None)
        for level in LEVEL_K:
            result.dice[level].append(dice_scores(labels[level], phantom.levels[level]).mean)
    result.segment_s = time.perf_counter() - t0
    log(
        f"{method.name}: "
        + " / ".join(f"{result.mean_sd(level)[0]:.3f}" for level in LEVEL_K)
        + f"  (train {result.train_s:.0f} s, segment {result.segment_s:.0f} s)"
    )
    return result


def markdown_table(results: Sequence[MethodResult], variant: str) -> str:
    """Our rows (mean ± sd) then the published rows for the same variant."""
    lines = [
        "| method | level 1 (k=2) | level 2 (k=4) | level 3 (k=8) | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in (r.mean_sd(level) for level in LEVEL_K)]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " | measured here |")
    for name, rows in PUBLISHED.items():
        if variant in rows:
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in rows[variant]) + " | published |")
    return "\n".join(lines)
