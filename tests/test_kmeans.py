"""Poincaré k-means: recovery, Fréchet-mean centroids, determinism, inits, empty clusters."""

import numpy as np
import pytest
import torch
from geoopt.manifolds.stereographic import math as gmath

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import (
    KMeansResult,
    assign_clusters,
    dice_scores,
    frechet_mean,
    pairwise_distance,
    poincare_kmeans,
)

K = torch.tensor(-1.0, dtype=torch.float64)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ball_blobs(n_per=150, spread=0.15, seed=0):
    """Four hyperbolic Gaussian-ish blobs: wrapped tangent noise at centres in four
    directions, two of them close to the boundary (norm 0.95 and 0.97)."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, -0.8]], dtype=torch.float64)
    centres = dirs * torch.tensor([0.8, 0.8, 0.95, 0.97], dtype=torch.float64)[:, None]
    points, truth = [], []
    for i, c in enumerate(centres):
        v = torch.randn(n_per, 2, generator=gen, dtype=torch.float64) * spread
        # a tangent vector of Riemannian length |v| at c has Euclidean length |v| / lambda_c
        v = v * (1 - c.square().sum()) / 2
        points.append(gmath.expmap(c.expand(n_per, 2), v, k=K))
        truth += [i] * n_per
    return torch.cat(points).numpy(), np.array(truth)


def riemannian_grad_norm(c, points):
    """|grad_R sum_i d(c, x_i)^2| / (2 sum_i d(c, x_i)) with geoopt's distance and autograd."""
    c = torch.as_tensor(c, dtype=torch.float64).clone().requires_grad_(True)
    x = torch.as_tensor(points, dtype=torch.float64)
    d = gmath.dist(c.expand_as(x), x, k=K)
    d.square().sum().backward()
    lam = 2 / (1 - c.detach().square().sum())
    # Riemannian gradient = egrad / lambda^2; its Riemannian norm = lambda * |.|
    return float((c.grad / lam).norm() / (2 * d.detach().sum()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_distance_matches_geoopt(dtype):
    gen = torch.Generator().manual_seed(1)
    # expmap0 of moderate tangent vectors: norms up to ~0.99, exactly representable enough
    # in float32 for the comparison to be about the formula, not the input rounding
    x = gmath.expmap0(torch.randn(50, 3, generator=gen, dtype=torch.float64) * 0.8, k=K)
    c = gmath.expmap0(torch.randn(7, 3, generator=gen, dtype=torch.float64) * 0.8, k=K)
    expected = gmath.dist(x[:, None, :], c[None, :, :], k=K)
    got = pairwise_distance(x.to(dtype), c.to(dtype))
    assert got.shape == (50, 7) and got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    assert torch.allclose(pairwise_distance(x, x).diagonal(), torch.zeros(50, dtype=torch.float64))
    eu = pairwise_distance(x.to(dtype), c.to(dtype), metric="euclidean")
    torch.testing.assert_close(eu.double(), torch.cdist(x, c), rtol=tol, atol=tol)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_recovers_well_separated_blobs(as_tensor):
    x, truth = ball_blobs()
    x = x.astype(np.float32)
    data = torch.from_numpy(x) if as_tensor else x
    res = poincare_kmeans(data, 4, n_init=2, seed=0)
    assert isinstance(res, KMeansResult)
    assert res.labels.dtype == np.int64 and res.labels.shape == (len(x),)
    assert res.centroids.shape == (4, 2)
    assert dice_scores(res.labels, truth).mean == 1.0
    assert np.all(np.linalg.norm(res.centroids, axis=1) < 1)


def test_recovers_blobs_when_fitting_on_a_subsample():
    x, truth = ball_blobs(n_per=400)
    res = poincare_kmeans(x.astype(np.float32), 4, n_init=2, fit_size=300, batch_size=257)
    assert dice_scores(res.labels, truth).mean == 1.0
    # the inertia covers all points, not only the sample
    d = pairwise_distance(torch.from_numpy(x), torch.from_numpy(res.centroids).double())
    expected = float(d.min(1).values.square().sum())
    assert res.inertia == pytest.approx(expected, rel=1e-4)


def test_each_centroid_is_a_frechet_mean():
    x, _ = ball_blobs()
    res = poincare_kmeans(x.astype(np.float32), 4, n_init=1, seed=3)
    for j in range(4):
        assert riemannian_grad_norm(res.centroids[j], x[res.labels == j]) < 1e-3


def test_frechet_mean_function():
    x, truth = ball_blobs()
    pts = x[truth == 3]  # the blob nearest the boundary
    m = frechet_mean(pts)
    assert m.shape == (2,) and m.dtype == torch.float64
    assert riemannian_grad_norm(m, pts) < 1e-6
    # float32 input: float32 result, still a stationary point to float32 precision
    m32 = frechet_mean(torch.from_numpy(pts).float())
    assert m32.dtype == torch.float32
    assert riemannian_grad_norm(m32, pts) < 1e-4
    # weights: equivalent to repeating points
    w = np.arange(1, len(pts) + 1) % 3
    mw = frechet_mean(pts, weights=w.astype(float))
    m_rep = frechet_mean(np.repeat(pts, w, axis=0))
    torch.testing.assert_close(mw, m_rep, rtol=1e-7, atol=1e-7)
    # symmetric pair: the mean is the origin; a single point is its own mean
    p = np.array([[0.7, 0.1], [-0.7, -0.1]])
    torch.testing.assert_close(frechet_mean(p), torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(frechet_mean(p[:1]), torch.from_numpy(p[0]), atol=1e-9, rtol=0)


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = (rng.uniform(-0.6, 0.6, size=(2000, 2))).astype(np.float32)
    a = poincare_kmeans(x, 5, n_init=2, seed=7, fit_size=800)
    b = poincare_kmeans(x, 5, n_init=2, seed=7, fit_size=800)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia and a.n_iter == b.n_iter


def test_n_init_keeps_the_lowest_inertia():
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.65, 0.65, size=(1500, 2)).astype(np.float32)  # no true clusters
    res = poincare_kmeans(x, 7, n_init=6, seed=11)
    assert len(res.init_inertias) == 6
    assert len(set(res.init_inertias)) > 1  # the choice matters
    assert res.inertia == min(res.init_inertias)
    # the first initialisation is the same as a single-init run with the same seed
    single = poincare_kmeans(x, 7, n_init=1, seed=11)
    assert single.inertia == res.init_inertias[0]
    assert res.inertia <= single.inertia


def test_no_empty_cluster_with_duplicated_points():
    # 3 distinct points repeated: k-means++ must reuse a duplicate, ties would leave
    # clusters empty, and the repair still fills every one of the 5 clusters
    base = np.array([[0.1, 0.2], [-0.5, 0.3], [0.4, -0.7]], dtype=np.float32)
    x = np.repeat(base, 10, axis=0)
    res = poincare_kmeans(x, 5, n_init=2)
    assert np.bincount(res.labels, minlength=5).min() >= 1
    # same when fitting on a subsample and assigning the rest
    big = np.repeat(base, 400, axis=0)
    res = poincare_kmeans(big, 5, n_init=1, fit_size=50, batch_size=100)
    assert np.bincount(res.labels, minlength=5).min() >= 1
    # N == k distinct points: one point per cluster
    res = poincare_kmeans(base, 3)
    assert sorted(res.labels.tolist()) == [0, 1, 2]
    assert res.inertia == pytest.approx(0.0, abs=1e-10)


def test_assign_clusters_is_the_nearest_centroid():
    x, _ = ball_blobs(n_per=60)
    c = np.array([[0.5, 0.0], [0.0, -0.5], [-0.3, 0.3]])
    labels = assign_clusters(x, c, batch_size=17)
    expected = pairwise_distance(torch.from_numpy(x), torch.from_numpy(c)).argmin(1).numpy()
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.int64


def test_euclidean_metric_uses_arithmetic_means():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [5.0, 5.0], [-4.0, 6.0]])  # far outside the ball: fine
    truth = np.repeat(np.arange(3), 100)
    x = (centres[truth] + rng.normal(0, 0.3, size=(300, 2))).astype(np.float64)
    res = poincare_kmeans(x, 3, metric="euclidean", n_init=2)
    assert dice_scores(res.labels, truth).mean == 1.0
    for j in range(3):
        np.testing.assert_allclose(res.centroids[j], x[res.labels == j].mean(0), atol=1e-10)


def test_rejects_bad_input():
    ok = np.zeros((10, 2), dtype=np.float32)
    with pytest.raises(UserError, match="inside the unit Poincaré ball"):
        poincare_kmeans(np.full((10, 2), 0.9, dtype=np.float32), 2)
    with pytest.raises(UserError, match="cannot make 11 clusters from 10 points"):
        poincare_kmeans(ok, 11)
    with pytest.raises(UserError, match="NaN"):
        poincare_kmeans(np.full((10, 2), np.nan, dtype=np.float32), 2)
    with pytest.raises(UserError, match=r"shape \(N, d\)"):
        poincare_kmeans(np.zeros(10, dtype=np.float32), 2)
    with pytest.raises(UserError, match="metric"):
        poincare_kmeans(ok, 2, metric="cosine")
    with pytest.raises(UserError, match="dimension"):
        assign_clusters(ok, np.zeros((2, 3)))
