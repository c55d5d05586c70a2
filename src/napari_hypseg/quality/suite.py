"""``hypseg bench --suite``: our default pipeline beside the strongest simple baselines, one run.

For every case (phantoms, real cryo-ET, real MRI), every level and every
seed, each baseline of :mod:`.baselines` and our default pipeline
(train the hyperbolic VAE, embed every voxel, fuse with intensity, mixture
with a spatial prior — exactly what ``hypseg run`` does) produce labels that
are scored by Hungarian-matched Dice. The report gives mean ± sd over
volumes and seeds, per-class Dice, how many small classes were found
(Dice > 0.3) and, per case and level, the best baseline: the bar to beat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..segmentation.metrics import dice_scores
from .baselines import BASELINES, run_baseline
from .cases import SMALL_CLASS_FRACTION, Case

OURS = "ours: default (mixture + spatial prior on the chosen intensity channel)"
#: the same pipeline with the hyperbolic embedding fused in (what lost; shown so the loss stays visible)
FUSED = "ours + hyperbolic embedding fused (weight 0.5)"
#: a class counts as found when its matched cluster reaches this Dice
FOUND_DICE = 0.3


@dataclass
class Score:
    """Dice of one method on one volume, level and seed."""

    mean: float
    per_class: dict[int, float]


@dataclass
class CaseResult:
    """All scores of one case: ``scores[method][level]`` is a list over volumes × seeds."""

    case: Case
    scores: dict[str, dict[int, list[Score]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    budget: dict[str, str] = field(default_factory=dict)

    def add(self, method: str, level: int, score: Score) -> None:
        self.scores.setdefault(method, {}).setdefault(level, []).append(score)

    def mean_sd(self, method: str, level: int) -> tuple[float, float]:
        values = np.array([s.mean for s in self.scores[method][level]])
        return float(values.mean()), float(values.std())

    def per_class_mean(self, method: str, level: int) -> dict[int, float]:
        runs = self.scores[method][level]
        return {c: float(np.mean([r.per_class.get(c, 0.0) for r in runs])) for c in runs[0].per_class}

    def levels(self) -> list[int]:
        return sorted(self.case.volumes[0].levels)

    def best_baseline(self, level: int) -> str:
        names = [m for m in self.scores if m not in (OURS, FUSED)]
        return max(names, key=lambda m: self.mean_sd(m, level)[0])

    def small_classes(self, level: int) -> list[int]:
        """Ground-truth classes under :data:`SMALL_CLASS_FRACTION` of the voxels (in any scored volume)."""
        small = set()
        for vol in self.case.volumes:
            _, gt, _ = vol.levels[level]
            fractions = np.bincount(gt.reshape(-1)) / gt.size
            small.update(int(c) for c in np.nonzero((fractions > 0) & (fractions < SMALL_CLASS_FRACTION))[0])
        return sorted(small)

    def small_found(self, method: str, level: int) -> float:
        """Mean number of small classes found (Dice > 0.3) per run."""
        small = self.small_classes(level)
        runs = self.scores[method][level]
        return float(np.mean([sum(r.per_class.get(c, 0.0) > FOUND_DICE for c in small) for r in runs]))


def _score(labels: np.ndarray, gt: np.ndarray) -> Score:
    r = dice_scores(labels, gt)
    return Score(r.mean, dict(r.per_class))


OursFn = Callable[[list[np.ndarray], list[np.ndarray], list[int], int], list[dict[int, np.ndarray]]]


def run_case(case: Case, ours: dict[str, tuple[OursFn, list[int]]] | OursFn, *, seeds, log=print) -> CaseResult:
    """Score every baseline and our pipeline(s) on ``case``.

    ``ours`` maps a row name to ``(fn, seeds)``; ``fn(train_volumes,
    test_volumes, ks, seed)`` returns labels per k for each test volume (it
    trains once per seed, on ``case.train`` or, when that is None, on each
    test volume itself). A bare function is the default row over ``seeds``.
    """
    if callable(ours):
        ours = {OURS: (ours, list(seeds))}
    result = CaseResult(case)
    for baseline in BASELINES:
        t0 = time.perf_counter()
        for seed in seeds:
            for vol in case.volumes:
                ks = sorted({k for k, _, _ in vol.levels.values()})
                labels = run_baseline(baseline, vol.image, ks, seed=seed)
                for level, (k, gt, _) in vol.levels.items():
                    result.add(baseline.name, level, _score(labels[k], gt))
        result.seconds[baseline.name] = time.perf_counter() - t0
        log(
            f"  {case.name} | {baseline.name}: "
            + " / ".join(f"{result.mean_sd(baseline.name, lv)[0]:.3f}" for lv in result.levels())
        )
    ks = sorted({k for vol in case.volumes for k, _, _ in vol.levels.values()})
    images = [vol.image for vol in case.volumes]
    for name, (fn, row_seeds) in ours.items():
        t0 = time.perf_counter()
        for seed in row_seeds:
            labels = fn(case.train, images, ks, seed)
            for vol, lab in zip(case.volumes, labels):
                for level, (k, gt, _) in vol.levels.items():
                    result.add(name, level, _score(lab[k], gt))
        result.seconds[name] = time.perf_counter() - t0
        log(
            f"  {case.name} | {name}: "
            + " / ".join(f"{result.mean_sd(name, lv)[0]:.3f}" for lv in result.levels())
            + f" ({result.seconds[name]:.0f} s)"
        )
    return result


def default_pipeline(train_config, *, fusion=None, device="auto", log=print) -> OursFn:
    """Our pipeline as ``hypseg run`` runs it: train on the volume(s), embed, fuse, mixture per level.

    When ``fusion`` leaves the embedding out of the clustering (the default),
    the labels do not depend on the model, so the suite skips training and
    computes exactly the clustering ``segment()`` would.
    """
    from ..segmentation.channels import fill_mask  # noqa: PLC0415
    from ..segmentation.fusion import FusionConfig, fused_features  # noqa: PLC0415
    from ..segmentation.mixture import channel_settings, mixture_levels  # noqa: PLC0415
    from ..segmentation.pipeline import segment  # noqa: PLC0415 - torch-heavy
    from ..training import Trainer  # noqa: PLC0415

    fusion = fusion or FusionConfig()

    def train(volumes, seed):
        t0 = time.perf_counter()
        trainer = Trainer(
            list(volumes), train_config=train_config.with_(seed=seed, preview_every=0, device=str(device))
        )
        model = trainer.fit()
        log(f"    trained {trainer.step} steps in {time.perf_counter() - t0:.0f} s")
        return model

    def ours(train_volumes, test_volumes, ks, seed):
        if fusion.embedding_weight == 0:
            out = []
            for image in test_volumes:
                features, channel = fused_features(image, None, latent_dim=None, config=fusion)
                levels = mixture_levels(
                    features,
                    image.shape,
                    range(min(ks), max(ks) + 1),
                    seed=seed,
                    fill=fill_mask(image),
                    **channel_settings(channel),
                )
                out.append({k: levels[k] for k in ks})
            return out
        shared = train(train_volumes, seed) if train_volumes is not None else None
        out = []
        for image in test_volumes:
            model = shared if shared is not None else train([image], seed)
            result = segment(image, model, k_min=min(ks), k_max=max(ks), seed=seed, device=device, fusion=fusion)
            out.append({k: result.labels(k) for k in ks})
        return out

    return ours
