"""Gaussian-mixture clustering with a spatial (Potts) prior: the default way levels are made.

Why a mixture and not k-means: k-means assumes equal, spherical clusters and
gives a class holding 2 % of the voxels no chance against a split of a large
noisy one. Tissue classes and cryo-ET densities have very different spreads;
on the same single feature a full-covariance mixture beat k-means by 0.08
mean Dice on a real T1 MRI (0.947 vs 0.870, docs/benchmarks.md).

Why a spatial prior: neighbouring voxels usually share a class. A few
mean-field iterations of a Potts model multiply each voxel's posterior by
``exp(beta * mean posterior of its 3×3×3 neighbourhood)``; this removes
isolated misassignments without moving boundaries much (+0.01 on the MRI,
+0.03 on the tomogram in our measurements).

Why the covariance depends on the noise: on a clean or lightly noisy volume (an MRI) each class
has its own spread (CSF is broad, white matter tight), and a full covariance
per component models it. On a noisy one (a tomogram, the phantoms) the
within-class spread is mostly the acquisition noise, the same for every class;
a covariance per component then lets the broadest one take the tails of all
the others (on the real tomogram the bright-shell component took 4 % of the
background). There the mixture shares one covariance between its components
("tied", linear boundaries): tomogram 0.458 → 0.535, phantom level 3
0.271 → 0.302 (docs/method.md). Tied on the clean MRI costs 0.08.

Each level is fitted on one seeded voxel subsample and then every voxel is
scored, so a 10⁷-voxel volume costs seconds per level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .._errors import UserError
from ..segment_config import COMPARTMENTS
from .channels import Channel
from .compartments import WALL_LEVEL, Compartments, find_compartments, mixture_level, with_compartments
from .local_means import LOCAL_MEANS_PASSES, local_mean_posteriors

#: voxels used to fit each mixture (every voxel is then scored)
FIT_SIZE = 200_000
#: strength of the Potts prior, in units of "mean neighbourhood posterior", on a clean volume
SPATIAL_BETA = 3.0
#: ... and on a noisy one (read through its denoised intensity): the weaker each voxel's own
#: evidence, the more its neighbours should count (docs/method.md has the measurements)
SPATIAL_BETA_NOISY = 6.0
#: covariance model of the components on a clean volume (each class its own spread) ...
COVARIANCE = "full"
#: ... and on a noisy one, read through its denoised intensity (one spread, the noise's, shared)
COVARIANCE_NOISY = "tied"
#: estimated noise σ from which the denoised channel counts as noise-dominated (shared covariance,
#: stronger prior). Between :data:`.channels.DENOISE_FROM_SIGMA` and this, a volume is denoised lightly
#: and keeps a covariance per class: an MRI with 6-9 % Rician noise (σ 0.045-0.065) lost 0.01-0.03
#: with a shared one, the phantoms with less noise (σ 0.095) gained 0.01-0.05 (docs/method.md)
SHARED_FROM_SIGMA = 0.08
#: mean-field iterations
SPATIAL_ITERATIONS = 5
#: EM initialisations per level, one fit each; the best completed likelihood wins (:func:`completed_likelihood`).
#: k-means initialisation splits a wide class in two and hides a small tight one; k-means++
#: seeding often starts a component on it (and sometimes on an outlier): both are tried
INITIALISATIONS = ("kmeans", "k-means++")
#: covariance floor, in units of the standardised features
REG_COVAR = 1e-4
#: EM stops when the mean log-likelihood per voxel gains less than this in one iteration, per covariance
#: model. A shared covariance is run close to convergence: stopped at scikit-learn's 1e-3 after a few
#: iterations, the k = 2 fit of the tomogram with 12 gold beads sat half-way between two solutions and
#: its lumens were lost (0.656, trimmed or not; 0.711 at 1e-4). 1e-4 costs 1.3× the time of 1e-3 at
#: k = 8 on a 50³ phantom, 1e-5 4.9×, for quick-suite scores within 0.011 of each other. A covariance per
#: class is stopped early on purpose: run on, the MRI's broad grey-matter component takes the tight white
#: matter's voxels (0.959 -> 0.892): its maximum likelihood is not the tissue classes (docs/method.md).
EM_TOLERANCE = {"full": 1e-3, "tied": 1e-4}
#: ... and stops after this many iterations in any case
EM_MAX_ITERATIONS = 1000
#: a cluster holding less than this fraction of the voxels after the Potts prior counts as lost
MIN_CLUSTER_FRACTION = 1e-3
#: a shared-covariance fit is refitted without the voxels it finds least likely, this fraction of them
#: (trimmed likelihood): a few hundred extreme voxels (gold beads, 37 sd out) otherwise widen the shared
#: covariance and pull a component's mean (the tomogram with 12 beads, converged but untrimmed: 0.492, its
#: lumens lost). A class this small counts as lost anyway (:data:`MIN_CLUSTER_FRACTION`), so it must not
#: shape the others
TRIM_FRACTION = MIN_CLUSTER_FRACTION
#: trimming rounds: each scores the sample under the last fit, drops the least likely and refits from there
TRIM_ROUNDS = 2
#: the covariance models whose fits are trimmed: not a covariance per class, which :data:`EM_TOLERANCE` stops
#: early on purpose, and which a refit moves on (the MRI 0.959 -> 0.956, with 6 % noise 0.867 -> 0.859)
TRIMMED_COVARIANCES = ("tied",)
#: components added, one at a time, to refit a level on which the prior lost clusters
MAX_EXTRA_COMPONENTS = 3
#: voxels scored per batch
_BATCH = 1 << 20


def noise_dominated(channel: Channel) -> bool:
    """Whether the within-class spread is mostly noise: the denoised channel from σ :data:`SHARED_FROM_SIGMA` on,
    σ allowing for correlated noise (:attr:`.channels.Channel.correlated_sigma`: a low-pass filtered or resampled
    tomogram reads as clean to the face residual alone, and a covariance per class then ruins it)."""
    return channel.kind == "denoised" and channel.correlated_sigma >= SHARED_FROM_SIGMA


def spatial_beta(channel: Channel) -> float:
    """The Potts strength for features read through ``channel``."""
    return SPATIAL_BETA_NOISY if noise_dominated(channel) else SPATIAL_BETA


def covariance_type(channel: Channel) -> str:
    """The covariance model for features read through ``channel``."""
    return COVARIANCE_NOISY if noise_dominated(channel) else COVARIANCE


def local_means_for(channel: Channel) -> bool:
    """Whether a level's boundaries are placed by its classes' local means (:mod:`.local_means`): on the
    denoised channel, not on a clean volume read raw."""
    return channel.kind == "denoised"


def channel_settings(channel: Channel) -> dict:
    """The mixture's settings that follow the intensity channel: ``beta``, ``covariance`` and
    ``local_means``, for :func:`mixture_levels` (``**channel_settings(channel)``)."""
    return {
        "beta": spatial_beta(channel),
        "covariance": covariance_type(channel),
        "local_means": local_means_for(channel),
    }


def describe(channel: Channel) -> str:
    """One line for users: what the mixture clustered, with which covariance and prior."""
    settings = channel_settings(channel)
    name = f"TV-denoised intensity (weight {channel.tv_weight:.2g})" if channel.kind == "denoised" else "raw intensity"
    shared = settings["covariance"] == "tied"
    covariance = "one covariance shared by the clusters" if shared else "a covariance per cluster"
    local = ", boundaries by local class means" if settings["local_means"] else ""
    return f"Gaussian mixture on the {name}, {covariance}, spatial prior β = {settings['beta']:g}{local}"


def component_covariances(mixture) -> np.ndarray:
    """(k, C, C) covariance of every component, whatever the mixture's covariance model (a tied one repeats its own)."""
    cov = np.asarray(mixture.covariances_, np.float64)
    if mixture.covariance_type == "tied":
        return np.repeat(cov[None], mixture.n_components, axis=0)
    if mixture.covariance_type != "full":
        raise UserError(f"unsupported covariance model {mixture.covariance_type!r}")
    return cov


def fit_mixture(points: np.ndarray, k: int, *, seed: int = 0, fit_size: int = FIT_SIZE, covariance: str = COVARIANCE):
    """A :class:`sklearn.mixture.GaussianMixture` (``covariance`` "full" or "tied") fitted on a seeded subsample
    of ``points`` (N, C): the best :func:`completed_likelihood` of :data:`INITIALISATIONS`, a shared covariance
    then trimmed of its least likely voxels (:func:`_trimmed`)."""
    points = np.asarray(points)
    if points.ndim != 2:
        raise UserError(f"expected points of shape (N, C), got {points.shape}")
    n = len(points)
    if n < k:
        raise UserError(f"cannot make {k} clusters from {n} voxels")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    sample = points if n <= fit_size else points[np.sort(rng.choice(n, fit_size, replace=False))]
    sample = sample.astype(np.float64, copy=False)
    best, best_score = None, -np.inf
    for i, init in enumerate(INITIALISATIONS):
        random_state = int(np.random.SeedSequence(seed, spawn_key=(1, k, i)).generate_state(1)[0])
        mixture = _em(k, covariance, **_start(sample, k, covariance, init, random_state)).fit(sample)
        score = completed_likelihood(mixture, sample)
        if best is None or score > best_score:
            best, best_score = mixture, score
    return _trimmed(best, sample) if covariance in TRIMMED_COVARIANCES else best


def completed_likelihood(mixture, sample: np.ndarray) -> float:
    """Mean log-likelihood per point less the mean entropy of its assignment: the integrated completed
    likelihood (Biernacki, Celeux & Govaert 2000) without its penalty on the number of parameters, equal for
    fits of one k. Of two fits of near-equal likelihood it prefers the one whose components overlap less, the
    better partition rather than the better density (docs/method.md, round twenty)."""
    post = mixture.predict_proba(sample)
    entropy = -np.sum(post * np.log(np.maximum(post, 1e-300)), axis=1).mean()
    return float(mixture.score(sample) - entropy)


def _start(sample: np.ndarray, k: int, covariance: str, init: str, random_state: int) -> dict:
    """The ``start`` of :func:`_em` for one of :data:`INITIALISATIONS`.

    Why k-means++ is not left to scikit-learn: it starts a mixture from k seed points, each the sole member of its
    component, and estimates a shared covariance from the scatter of *every* point about those k seeds divided by
    k, some N / k times the data's variance. Every component then explains every voxel alike and EM stops at once
    with all k means at the data's mean (checked on a phantom at k = 2, 3, 4 and 8, scikit-learn 1.9). So a shared
    covariance here starts from the seeds' cells instead: each voxel goes to its nearest seed, and the cells'
    weights, means and covariance start EM (docs/method.md, round twenty-three). A covariance per class keeps
    scikit-learn's own start, which is sound for it.
    """
    if init != "k-means++" or covariance != "tied":
        return {"init_params": init, "random_state": random_state}
    from sklearn.cluster import kmeans_plusplus  # noqa: PLC0415 - heavy import, needed only here
    from sklearn.metrics import pairwise_distances_argmin  # noqa: PLC0415

    seeds, _ = kmeans_plusplus(sample, k, random_state=random_state)
    nearest = pairwise_distances_argmin(sample, seeds)
    counts = np.bincount(nearest, minlength=k)
    sums = np.stack([np.bincount(nearest, weights=sample[:, c], minlength=k) for c in range(sample.shape[1])], 1)
    # a seed's cell holds the seed unless another seed has the same value: an empty cell starts at its seed
    sizes = np.maximum(counts, 1)
    means = np.where(counts[:, None] > 0, sums / sizes[:, None], seeds)
    centred = sample - means[nearest]
    cov = centred.T @ centred / len(sample) + REG_COVAR * np.eye(sample.shape[1])
    return {"weights_init": sizes / sizes.sum(), "means_init": means, "precisions_init": np.linalg.inv(cov)}


def _em(k: int, covariance: str, **start):
    """An unfitted :class:`sklearn.mixture.GaussianMixture` with this module's floor and stopping rule;
    ``start``: its initialisation (``init_params`` and ``random_state``, or a whole start: the ``*_init`` of an
    earlier fit or of :func:`_start`)."""
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415 - heavy import, needed only here

    if "means_init" in start:  # the start is complete: skip scikit-learn's k-means, whose result it would discard
        start = {"init_params": "random_from_data", "random_state": 0, **start}
    return GaussianMixture(
        n_components=k,
        covariance_type=covariance,
        reg_covar=REG_COVAR,
        tol=EM_TOLERANCE[covariance],
        max_iter=EM_MAX_ITERATIONS,
        **start,
    )


def _trimmed(mixture, sample: np.ndarray):
    """``mixture`` refitted :data:`TRIM_ROUNDS` times, each without the :data:`TRIM_FRACTION` of ``sample`` it
    finds least likely, starting from the last fit."""
    for _ in range(TRIM_ROUNDS):
        density = mixture.score_samples(sample)
        mixture = _em(
            mixture.n_components,
            mixture.covariance_type,
            weights_init=mixture.weights_,
            means_init=mixture.means_,
            precisions_init=mixture.precisions_,
        ).fit(sample[density >= np.quantile(density, TRIM_FRACTION)])
    return mixture


def posteriors(mixture, points: np.ndarray) -> np.ndarray:
    """(N, k) float32 posterior of every point, scored in batches."""
    out = np.empty((len(points), mixture.n_components), dtype=np.float32)
    for s in range(0, len(points), _BATCH):
        out[s : s + _BATCH] = mixture.predict_proba(points[s : s + _BATCH])
    return out


def potts_mean_field(
    post: np.ndarray, *, beta: float = SPATIAL_BETA, iterations: int = SPATIAL_ITERATIONS
) -> np.ndarray:
    """Mean-field Potts smoothing of per-voxel posteriors ``(Z, Y, X, k)``; returns new posteriors.

    q ← softmax(log p + beta · mean_{3×3×3}(q)), ``iterations`` times, with
    mirror-reflected borders (a face voxel sees its own side, not a zero class).
    """
    if beta <= 0 or iterations <= 0:
        return post
    log_p = np.log(np.maximum(post, 1e-12, dtype=np.float32))
    q = post.astype(np.float32, copy=True)
    neighbours = np.empty_like(q)
    for _ in range(iterations):
        for c in range(q.shape[-1]):
            ndimage.uniform_filter(q[..., c], size=3, output=neighbours[..., c], mode="reflect")
        np.multiply(neighbours, np.float32(beta), out=q)
        q += log_p
        q -= q.max(axis=-1, keepdims=True)
        np.exp(q, out=q)
        q /= q.sum(axis=-1, keepdims=True)
    return q


@dataclass
class LevelFits:
    """What the levels of one volume share: a fit depends only on the points, the seed and its number of
    components, so the k + 1 fit of a refitted level k is level k + 1's own, and so are its labels after the
    prior (kept only for numbers of components above the last level asked for: levels come in rising k)."""

    mixtures: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    #: k -> the number of components of the wider fit a level short of clusters was made from
    refitted: dict = field(default_factory=dict)


def mixture_labels(
    points: np.ndarray,
    shape: tuple[int, ...],
    k: int,
    *,
    seed: int = 0,
    beta: float = SPATIAL_BETA,
    covariance: str = COVARIANCE,
    fit_size: int = FIT_SIZE,
    fit_points: np.ndarray | None = None,
    shared: LevelFits | None = None,
) -> tuple[np.ndarray, float]:
    """Labels 0..k-1 (int64, ``shape``) of a k-component mixture with the Potts prior, and the mean confidence.

    The mean confidence is the average of each voxel's largest posterior
    before the spatial prior: an unsupervised measure of how well separated
    the clusters are.

    Why a level can be refitted: on a noisy volume the prior can leave a
    component with (almost) no voxels, a level of k that shows k − 1 or fewer
    clusters. Such a level is refitted with k + 1 … k + :data:`MAX_EXTRA_COMPONENTS`
    components until k of them hold at least :data:`MIN_CLUSTER_FRACTION` of the
    voxels, and the smallest are then dissolved into the rest (their posterior
    dropped, the prior run again) until k remain. A level the prior leaves whole
    is never refitted (docs/method.md, round seventeen).

    ``fit_points`` (default: ``points``) are the points the mixtures are fitted on: the volume without its fill
    (:func:`.channels.fill_mask`). ``shared`` is what :func:`mixture_levels` keeps between the levels of one
    volume (same points, seed, covariance and prior); the labels are the same with it or without.
    """
    shared = LevelFits() if shared is None else shared
    for n in [n for n in shared.labels if n < k]:
        del shared.labels[n]

    def fitted(n: int):
        if n not in shared.mixtures:
            fit_on = points if fit_points is None else fit_points
            shared.mixtures[n] = fit_mixture(fit_on, n, seed=seed, fit_size=fit_size, covariance=covariance)
        return shared.mixtures[n]

    def smoothed(post: np.ndarray) -> np.ndarray:
        n = post.shape[1]
        if n not in shared.labels:
            shared.labels[n] = _potts_labels(post, shape, beta).astype(np.uint8 if n <= 256 else np.uint16)
        return shared.labels[n].astype(np.int64)

    post = posteriors(fitted(k), points)
    confidence = float(post.max(axis=1).mean())
    labels = smoothed(post)
    del post  # a wider fit's posteriors take its place: one (N, n) array at a time
    if _clusters_held(labels, k) < k:
        for n in range(k + 1, min(k + MAX_EXTRA_COMPONENTS, len(points)) + 1):
            wider = posteriors(fitted(n), points)
            wider_labels = smoothed(wider)
            if _clusters_held(wider_labels, n) >= k:
                labels = _dissolve_smallest(wider, wider_labels, shape, k, beta)
                shared.refitted[k] = n
                break
            del wider
    return labels.reshape(shape), confidence


def _potts_labels(post: np.ndarray, shape: tuple[int, ...], beta: float) -> np.ndarray:
    """Flat argmax labels of (N, n) posteriors after the Potts prior on ``shape``."""
    return np.argmax(potts_mean_field(post.reshape(*shape, post.shape[1]), beta=beta), axis=-1).reshape(-1)


def refine_by_local_means(
    points: np.ndarray, labels: np.ndarray, shape: tuple[int, ...], k: int, *, beta: float
) -> np.ndarray:
    """Flat labels 0..k-1 after :data:`.local_means.LOCAL_MEANS_PASSES` passes of local-mean posteriors and
    the Potts prior."""
    for _ in range(LOCAL_MEANS_PASSES):
        post = local_mean_posteriors(points, labels, shape, k)
        labels = _potts_labels(post, shape, beta)
    return labels


def _clusters_held(labels: np.ndarray, n: int) -> int:
    """How many of the ``n`` clusters hold at least :data:`MIN_CLUSTER_FRACTION` of the voxels (and one voxel)."""
    return int((np.bincount(labels, minlength=n) >= max(1.0, MIN_CLUSTER_FRACTION * len(labels))).sum())


def _dissolve_smallest(post: np.ndarray, labels: np.ndarray, shape: tuple[int, ...], k: int, beta: float) -> np.ndarray:
    """Drop the smallest cluster's posterior (renormalise, prior again) until at most ``k`` clusters are left;
    labels renumbered 0..k-1 in component order."""
    kept = np.arange(post.shape[1])
    while len(np.unique(labels)) > k:
        smallest = int(np.argmin(np.bincount(labels, minlength=len(kept))))
        kept = np.delete(kept, smallest)
        sub = post[:, kept]
        sub = sub / np.maximum(sub.sum(axis=1, keepdims=True), np.float32(1e-12))
        labels = _potts_labels(sub, shape, beta)
    present = np.unique(labels)
    compact = np.zeros(len(kept), dtype=np.int64)
    compact[present] = np.arange(len(present))
    return compact[labels]


class MixtureLevels(dict):
    """k -> labels (ids 1…k), the :class:`.compartments.Compartments` the levels hold (None: no wall found),
    and ``refitted``: k -> the number of components of the wider fit behind a level the prior left short."""

    compartments: Compartments | None = None
    refitted: dict[int, int]


def mixture_levels(
    points: np.ndarray,
    shape: tuple[int, ...],
    ks,
    *,
    seed: int = 0,
    beta: float = SPATIAL_BETA,
    covariance: str = COVARIANCE,
    fit_size: int = FIT_SIZE,
    compartments: bool = COMPARTMENTS,
    local_means: bool = False,
    fill: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MixtureLevels:
    """Labels (1..k, uint8/uint16, ``shape``) for every k in ``ks``, ids matched level to level.

    Each level is its own mixture fit (a tree merged from an over-clustered
    mixture lost badly on the real MRI: docs/method.md). Ids follow
    the coarser level: each cluster of level k takes the id of the level
    k−1 cluster it overlaps most (Hungarian matching on the overlap counts),
    the remaining cluster takes id k, so colours stay put as k moves.

    With ``compartments``, the k = 2 level (fitted even when ``ks`` starts
    higher) is tested for a wall (:mod:`.compartments`); when one encloses
    something, every level k above it is the mixture's level k − 1 plus the
    enclosed voxels as a cluster of their own.

    ``fill`` (``shape``, bool: :func:`.channels.fill_mask`) marks voxels left out of every fit; they are labelled
    like the others, and then all take the label most of them have.

    With ``local_means`` each finished level's boundaries (its compartments included) are then placed by
    its classes' local means (:func:`refine_by_local_means`); ids stay. Placed before the wall is looked
    for, they moved the tomogram's k = 2 wall and lost its lumens (0.714 -> 0.697, docs/method.md).
    """
    ks = sorted(int(k) for k in ks)
    dtype = np.uint8 if ks[-1] <= 255 else np.uint16
    fitted: dict[int, np.ndarray] = {}  # k -> 0-based ids, matched to the level fitted before it
    shared = LevelFits()
    fill_voxels = None if fill is None or not np.any(fill) else np.asarray(fill, bool).reshape(shape)
    fit_points = None if fill_voxels is None else points[~fill_voxels.reshape(-1)]

    def fit(k: int, previous: np.ndarray | None) -> np.ndarray:
        labels, _ = mixture_labels(
            points,
            shape,
            k,
            seed=seed,
            beta=beta,
            covariance=covariance,
            fit_size=fit_size,
            fit_points=fit_points,
            shared=shared,
        )
        labels = labels.reshape(-1)
        return match_level_ids(labels, previous, k)[labels]

    found = None
    if compartments and ks[-1] > WALL_LEVEL:
        fitted[WALL_LEVEL] = fit(WALL_LEVEL, None)
        found = find_compartments(fitted[WALL_LEVEL].reshape(shape) + 1)
    needed = sorted({mixture_level(k, found is not None) for k in ks})
    steps = len(needed) + 1
    previous = None
    for done, k in enumerate(needed, start=1):
        if k not in fitted:
            fitted[k] = fit(k, previous)
        previous = fitted[k]
        if progress:
            progress(done, steps)

    levels = MixtureLevels()
    levels.compartments = None if found is None else found[0]
    levels.refitted = {}
    for k in ks:
        mixture_k = mixture_level(k, found is not None)
        labels = (fitted[mixture_k] + 1).astype(dtype).reshape(shape)
        levels[k] = with_compartments(labels, found[1]) if mixture_k != k else labels
        if local_means:
            refined = refine_by_local_means(points, levels[k].reshape(-1) - 1, shape, k, beta=beta)
            levels[k] = (refined + 1).astype(dtype).reshape(shape)
        if fill_voxels is not None:  # padding is one thing: it takes the label most of it has
            levels[k][fill_voxels] = np.bincount(levels[k][fill_voxels]).argmax()
        if mixture_k in shared.refitted:
            levels.refitted[k] = shared.refitted[mixture_k]
    if progress:
        progress(steps, steps)
    return levels


def match_level_ids(labels: np.ndarray, previous: np.ndarray | None, k: int) -> np.ndarray:
    """Component -> id: largest first at the first level, then each follows the coarser level's
    cluster it overlaps most."""
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415

    ids = np.full(k, -1, dtype=np.int64)
    sizes = np.bincount(labels, minlength=k)
    if previous is None:
        ids[np.argsort(-sizes, kind="stable")] = np.arange(k)
        return ids
    kp = int(previous.max()) + 1
    overlap = np.bincount(previous * k + labels, minlength=kp * k).reshape(kp, k)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    ids[cols] = rows
    rest = [j for j in np.argsort(-sizes, kind="stable") if ids[j] < 0]
    ids[rest] = np.arange(len(rows), len(rows) + len(rest))
    return ids
