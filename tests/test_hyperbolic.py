"""Poincaré-ball geometry, wrapped normal and gyroplane layer.

Geometry is checked by identities and by independent computations (closed
formulas of the paper, autograd Jacobians, brute-force nearest points),
crossed over seeds and float32/float64 with tolerances that respect float32.
"""

import math

import pytest
import torch

from napari_hypseg.hyperbolic import (
    GyroplaneLayer,
    WrappedNormal,
    dist,
    dist0,
    expmap,
    expmap0,
    gyroplane_distance,
    lambda_x,
    logmap,
    logmap0,
    mobius_add,
    project,
    transp,
    transp0,
    transp0back,
    wrapped_normal_log_prob,
    wrapped_normal_rsample,
)

DTYPES = [torch.float32, torch.float64]
SEEDS = [0, 1, 2]
TOL = {
    torch.float32: dict(atol=2e-5, rtol=1e-4),
    torch.float64: dict(atol=1e-10, rtol=1e-9),
}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def random_points(n, d, *, max_radius, dtype, seed):
    """Points spread over the ball up to Euclidean norm ``max_radius``."""
    g = _gen(seed)
    direction = torch.randn(n, d, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = max_radius * torch.rand(n, 1, generator=g, dtype=torch.float64)
    return (direction * radius).to(dtype)


def random_vectors(n, d, *, dtype, seed, scale=1.0):
    return (scale * torch.randn(n, d, generator=_gen(seed + 100), dtype=torch.float64)).to(dtype)


# --------------------------------------------------------------------------
# ball
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_logmap0_inverts_expmap0(seed, dtype):
    # |u| <= ~1.7 keeps tanh away from its float32 plateau.
    u = random_vectors(64, 3, dtype=dtype, seed=seed, scale=0.6)
    torch.testing.assert_close(logmap0(expmap0(u)), u, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_expmap_inverts_logmap(seed, dtype):
    x = random_points(64, 3, max_radius=0.8, dtype=dtype, seed=seed)
    y = random_points(64, 3, max_radius=0.8, dtype=dtype, seed=seed + 7)
    tol = dict(atol=2e-4, rtol=1e-4) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(expmap(x, logmap(x, y)), y, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_mobius_left_cancellation(seed, dtype):
    x = random_points(64, 2, max_radius=0.8, dtype=dtype, seed=seed)
    y = random_points(64, 2, max_radius=0.8, dtype=dtype, seed=seed + 7)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(mobius_add(-x, mobius_add(x, y)), y, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_dist_symmetric_zero_and_matches_arcosh_formula(seed, dtype):
    x = random_points(64, 3, max_radius=0.9, dtype=dtype, seed=seed)
    y = random_points(64, 3, max_radius=0.9, dtype=dtype, seed=seed + 7)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(dist(x, y), dist(y, x), **tol)
    zero_tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(dist(x, x), torch.zeros(64, dtype=dtype), atol=zero_tol, rtol=0)
    # eq. 1 of the paper, computed independently in float64
    x64, y64 = x.double(), y.double()
    arg = 1 + 2 * (x64 - y64).pow(2).sum(-1) / ((1 - x64.pow(2).sum(-1)) * (1 - y64.pow(2).sum(-1)))
    torch.testing.assert_close(dist(x, y).double(), torch.acosh(arg), **tol)
    torch.testing.assert_close(dist0(x), dist(torch.zeros_like(x), x), **tol)
    assert dist(x, y, keepdim=True).shape == (64, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_transport_preserves_riemannian_norm(seed, dtype):
    x = random_points(32, 3, max_radius=0.8, dtype=dtype, seed=seed)
    y = random_points(32, 3, max_radius=0.8, dtype=dtype, seed=seed + 7)
    v = random_vectors(32, 3, dtype=dtype, seed=seed)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else TOL[dtype]
    moved = transp(x, y, v)
    torch.testing.assert_close(lambda_x(y) * moved.norm(dim=-1), lambda_x(x) * v.norm(dim=-1), **tol)
    torch.testing.assert_close(transp0back(y, transp0(y, v)), v, **tol)
    torch.testing.assert_close(transp(torch.zeros_like(y), y, v), transp0(y, v), **tol)
    torch.testing.assert_close(lambda_x(x), 2 / (1 - x.pow(2).sum(-1)), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_pulls_points_strictly_inside(dtype):
    x = torch.tensor([[3.0, 4.0], [0.6, 0.0], [1.0, 0.0]], dtype=dtype)
    out = project(x)
    assert (out.norm(dim=-1) < 1).all()
    torch.testing.assert_close(out[1], x[1])
    assert out.norm(dim=-1).max() <= 1 - 1e-5
    torch.testing.assert_close(project(x, eps=0.1).norm(dim=-1)[0], torch.tensor(0.9, dtype=dtype))


# --------------------------------------------------------------------------
# wrapped normal
# --------------------------------------------------------------------------

WN_CASES_2D = [
    ((0.0, 0.0), (1.0,)),
    ((0.5, -0.3), (0.4,)),
    ((-0.2, 0.6), (0.3, 0.8)),  # anisotropic, off-centre
    ((0.85, 0.0), (0.2,)),  # near the boundary, narrow
]


@pytest.mark.parametrize("loc, scale", WN_CASES_2D)
def test_wrapped_normal_density_integrates_to_one(loc, scale):
    # Polar midpoint rule over the unit disk against the Riemannian area
    # element lambda(x)^2 dx dy = lambda(s)^2 s ds dtheta.
    n_s, n_t = 400, 256  # mass exact to ~1e-6 for these cases
    s = (torch.arange(n_s, dtype=torch.float64) + 0.5) / n_s
    t = (torch.arange(n_t, dtype=torch.float64) + 0.5) * (2 * math.pi / n_t)
    ss, tt = torch.meshgrid(s, t, indexing="ij")
    x = torch.stack([ss * torch.cos(tt), ss * torch.sin(tt)], dim=-1)
    loc, scale = torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64)
    logp = wrapped_normal_log_prob(x, loc, scale)
    area = (2 / (1 - ss**2)) ** 2 * ss * (1 / n_s) * (2 * math.pi / n_t)
    mass = (logp.exp() * area).sum().item()
    assert mass == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_wrapped_normal_log_prob_matches_change_of_variables(seed, d):
    # Density of z = exp_mu(P_{0->mu}(v / 2)) from the Jacobian of v -> z,
    # converted from Lebesgue to Riemannian measure (dvol = lambda^d dx).
    dtype = torch.float64
    g = _gen(seed)
    loc = random_points(1, d, max_radius=0.7, dtype=dtype, seed=seed)[0]
    scale = 0.2 + torch.rand(d, generator=g, dtype=dtype)

    def push(v):
        return expmap(loc, transp0(loc, v / 2))

    def log_normal(v):
        return (-0.5 * (v / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum()

    for v in (scale * torch.randn(6, d, generator=g, dtype=dtype)).unbind(0):
        z = push(v)
        jac = torch.autograd.functional.jacobian(push, v)
        expected = log_normal(v) - torch.linalg.slogdet(jac).logabsdet - d * torch.log(lambda_x(z))
        torch.testing.assert_close(wrapped_normal_log_prob(z, loc, scale), expected, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("seed", SEEDS)
def test_wrapped_normal_log_prob_float32_agrees_with_float64(seed):
    loc = random_points(8, 3, max_radius=0.8, dtype=torch.float64, seed=seed)
    scale = torch.full((8, 1), 0.7, dtype=torch.float64)
    z = wrapped_normal_rsample(loc, scale, (16,), generator=_gen(seed))
    lp64 = wrapped_normal_log_prob(z, loc, scale)
    lp32 = wrapped_normal_log_prob(z.float(), loc.float(), scale.float())
    torch.testing.assert_close(lp32.double(), lp64, atol=2e-3, rtol=1e-3)


def _chi_mean(d):
    return math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [2, 3])
def test_wrapped_normal_samples_concentrate_linearly_in_scale(d, dtype):
    # sigma is in Riemannian units: d(mu, z) = |v| with v ~ N(0, sigma^2 I),
    # so the mean distance is sigma times the mean of a chi_d variable.
    loc = torch.zeros(d, dtype=dtype)
    loc[0] = 0.8
    means = []
    for i, sigma in enumerate([0.02, 0.2, 1.0]):
        scale = torch.tensor([sigma], dtype=dtype)
        z = wrapped_normal_rsample(loc, scale, (20000,), generator=_gen(i))
        means.append(dist(loc, z).double().mean().item())
        assert means[-1] == pytest.approx(sigma * _chi_mean(d), rel=3e-2)
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrapped_normal_samples_stay_inside_the_ball(dtype):
    loc = torch.tensor([[0.0, 0.0], [0.99, 0.0], [0.0, -0.999]], dtype=dtype)
    scale = torch.tensor([[20.0], [5.0], [1.0]], dtype=dtype)
    z = wrapped_normal_rsample(loc, scale, (500,), generator=_gen(0))
    assert z.shape == (500, 3, 2)
    assert torch.isfinite(z).all()
    assert (z.norm(dim=-1) < 1).all()
    assert torch.isfinite(wrapped_normal_log_prob(z, loc, scale)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrapped_normal_gradients_reach_loc_and_scale(dtype):
    raw_loc = torch.tensor([[0.3, -0.5], [0.1, 0.2]], dtype=dtype, requires_grad=True)
    raw_scale = torch.tensor([[0.1], [-0.4]], dtype=dtype, requires_grad=True)
    loc = expmap0(raw_loc)
    scale = torch.nn.functional.softplus(raw_scale) + 1e-5
    z = wrapped_normal_rsample(loc, scale, (8,), generator=_gen(0))
    (z.pow(2).sum() + wrapped_normal_log_prob(z, loc, scale).sum()).backward()
    for grad in (raw_loc.grad, raw_scale.grad):
        assert torch.isfinite(grad).all()
        assert (grad.abs() > 0).all()


def test_wrapped_normal_gradients_are_correct():
    dtype = torch.float64
    loc = torch.tensor([[0.3, -0.4], [-0.6, 0.1]], dtype=dtype, requires_grad=True)
    scale = torch.tensor([[0.5, 0.2], [1.1, 0.7]], dtype=dtype, requires_grad=True)
    torch.autograd.gradcheck(lambda m, s: wrapped_normal_rsample(m, s, (3,), generator=_gen(0)), (loc, scale))
    # one point far from its mean, one within the series radius (r < 0.1)
    z = torch.tensor([[0.1, 0.5], [-0.6, 0.13]], dtype=dtype, requires_grad=True)
    assert (dist(z, loc) < 0.1).tolist() == [False, True]
    torch.autograd.gradcheck(wrapped_normal_log_prob, (z, loc, scale))


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrapped_normal_log_prob_at_its_mean(dtype):
    # r = 0: only the Gaussian normaliser remains, and the gradient is finite.
    loc = torch.tensor([0.4, -0.3, 0.2], dtype=dtype, requires_grad=True)
    scale = torch.tensor([0.5], dtype=dtype)
    lp = wrapped_normal_log_prob(loc.detach().clone(), loc, scale)
    expected = -3 * (math.log(0.5) + 0.5 * math.log(2 * math.pi))
    assert lp.item() == pytest.approx(expected, rel=1e-6)
    lp.backward()
    assert torch.isfinite(loc.grad).all()


def test_wrapped_normal_distribution_object():
    loc = expmap0(torch.tensor([[0.2, 0.1], [-0.5, 0.3], [0.0, 0.0]]))
    q = WrappedNormal(loc, torch.full((3, 1), 0.5))
    assert q.batch_shape == (3,) and q.event_shape == (2,)
    z = q.rsample((5,))
    assert z.shape == (5, 3, 2) and z.requires_grad is False  # no grad-requiring inputs
    assert q.log_prob(z).shape == (5, 3)
    torch.testing.assert_close(q.log_prob(z), wrapped_normal_log_prob(z, loc, q.scale))
    # isotropic scale given per axis gives the same density
    q2 = WrappedNormal(loc, torch.full((3, 2), 0.5))
    torch.testing.assert_close(q.log_prob(z), q2.log_prob(z))
    assert q.sample((2,)).shape == (2, 3, 2)
    # one distribution at the origin scores every batch member
    prior = WrappedNormal(torch.zeros(2), torch.ones(1))
    assert prior.log_prob(z).shape == (5, 3)


def test_wrapped_normal_seeded_sampling_is_reproducible():
    loc, scale = torch.tensor([0.1, 0.2]), torch.tensor([0.3])
    a = wrapped_normal_rsample(loc, scale, (4,), generator=_gen(5))
    b = wrapped_normal_rsample(loc, scale, (4,), generator=_gen(5))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_wrapped_normal_rejects_bad_parameters():
    with pytest.raises(ValueError, match="scale must end in an axis of size 1 or 2"):
        WrappedNormal(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError):
        WrappedNormal(torch.zeros(2), -torch.ones(1), validate_args=True)
    with pytest.raises(ValueError):
        WrappedNormal(torch.tensor([1.5, 0.0]), torch.ones(1), validate_args=True)
    with pytest.raises(ValueError, match="scale must end"):
        wrapped_normal_log_prob(torch.zeros(2), torch.zeros(2), torch.ones(3))


# --------------------------------------------------------------------------
# gyroplane
# --------------------------------------------------------------------------


def _random_plane(d, *, dtype, seed):
    p = random_points(1, d, max_radius=0.8, dtype=dtype, seed=seed)
    a = random_vectors(1, d, dtype=dtype, seed=seed)
    return p, a


def _riemannian_norm(p, a):
    return lambda_x(p) * a.norm(dim=-1)


@pytest.mark.parametrize("seed", SEEDS)
def test_gyroplane_distance_matches_brute_force_nearest_point_2d(seed):
    # In d = 2 the gyroplane is the geodesic through p orthogonal to a:
    # walk it at unit speed, t in [-10, 10], take the nearest sample, and
    # refine the grid around it.
    dtype = torch.float64
    p, a = _random_plane(2, dtype=dtype, seed=seed)
    z = random_points(8, 2, max_radius=0.95, dtype=dtype, seed=seed + 11)
    a_perp = torch.stack([-a[:, 1], a[:, 0]], dim=-1)
    unit_perp = a_perp / _riemannian_norm(p, a_perp)[:, None]
    nearest = []
    for zi in z:
        t = torch.linspace(-10, 10, 4001, dtype=dtype)
        for _ in range(3):
            dd = dist(zi, expmap(p, t[:, None] * unit_perp))
            i, step = int(dd.argmin()), t[1] - t[0]
            t = torch.linspace(t[i] - 2 * step, t[i] + 2 * step, 201, dtype=dtype)
        nearest.append(dd.min())
    nearest = torch.stack(nearest)
    side = torch.sign((logmap(p, z) * a).sum(-1))  # sign of <log_p z, a>_p
    expected = side * _riemannian_norm(p, a) * nearest
    torch.testing.assert_close(gyroplane_distance(z, p, a)[:, 0], expected, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_gyroplane_distance_matches_brute_force_nearest_point_3d(seed):
    # In d = 3 the gyroplane is the surface exp_p(a^perp): search it on a
    # polar grid of geodesic radius and angle, then refine around the best cell.
    dtype = torch.float64
    p, a = _random_plane(3, dtype=dtype, seed=seed)
    basis = torch.linalg.svd(a).Vh[1:]  # orthonormal basis of a^perp (2, 3)
    lam = lambda_x(p)

    def surface(r, theta):
        u = r[..., None] * (torch.cos(theta)[..., None] * basis[0] + torch.sin(theta)[..., None] * basis[1])
        return expmap(p, u / lam)

    z = random_points(4, 3, max_radius=0.9, dtype=dtype, seed=seed + 11)
    got = gyroplane_distance(z, p, a)[:, 0]
    for zi, fi in zip(z, got):
        # the distance to z has a single minimum on the surface: coarse grid, then zoom in
        r = torch.linspace(0, 8, 121, dtype=dtype)
        th = torch.linspace(-math.pi, math.pi, 121, dtype=dtype)
        for _ in range(5):
            rr, tt = torch.meshgrid(r, th, indexing="ij")
            dd = dist(zi, surface(rr, tt))
            i, j = divmod(int(dd.argmin()), dd.shape[1])
            dr, dt = r[1] - r[0], th[1] - th[0]
            r = torch.linspace(max(r[i] - 2 * dr, 0), r[i] + 2 * dr, 41, dtype=dtype)
            th = torch.linspace(th[j] - 2 * dt, th[j] + 2 * dt, 41, dtype=dtype)
        expected = torch.sign((logmap(p, zi) * a).sum()) * _riemannian_norm(p, a)[0] * dd.min()
        torch.testing.assert_close(fi, expected, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gyroplane_distance_along_the_normal_and_on_the_plane(seed, dtype):
    p, a = _random_plane(3, dtype=dtype, seed=seed)
    norm_p = _riemannian_norm(p, a)
    # The unit-speed geodesic along a meets the plane perpendicularly at p:
    # at time t it is at distance |t| from the plane, on the side sign(t).
    t = torch.tensor([-1.5, -0.3, -1e-3, 1e-3, 0.3, 1.5], dtype=dtype)[:, None]
    z = expmap(p, t * a / norm_p[:, None])
    expected = t[:, 0] * norm_p
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(gyroplane_distance(z, p, a)[:, 0], expected, **tol)
    # points of the plane itself
    a_perp = torch.linalg.svd(a.double()).Vh[1:].to(dtype)
    on_plane = expmap(p, 0.7 * a_perp / lambda_x(p))
    zeros = torch.zeros(2, 1, dtype=dtype)
    torch.testing.assert_close(gyroplane_distance(on_plane, p, a), zeros, atol=tol["atol"], rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gyroplane_layer_equals_function_per_voxel(seed, dtype):
    torch.manual_seed(seed)
    layer = GyroplaneLayer(3, 7).to(dtype)
    u = random_vectors(2 * 3 * 4 * 5, 3, dtype=dtype, seed=seed, scale=0.5)
    x = expmap0(u).reshape(2, 3, 4, 5, 3).movedim(-1, 1)  # (B, d, 3, 4, 5)
    out = layer(x)
    assert out.shape == (2, 7, 3, 4, 5)
    p, a = layer.gyroplanes()
    for b in range(2):
        for i in range(3):
            for j in range(4):
                for k in range(5):
                    voxel = gyroplane_distance(x[b, :, i, j, k][None], p, a)[0]
                    torch.testing.assert_close(out[b, :, i, j, k], voxel, **TOL[dtype])
    flat = x[:, :, 1, 2, 3]
    torch.testing.assert_close(layer(flat), out[:, :, 1, 2, 3], **TOL[dtype])


@pytest.mark.parametrize("seed", SEEDS)
def test_gyroplane_layer_parameterisation(seed):
    # p lies on the ray of w at geodesic distance |b|; the normal's Riemannian norm is |w|.
    torch.manual_seed(seed)
    layer = GyroplaneLayer(2, 5).double()
    with torch.no_grad():
        layer.offset[0] = -0.8
    p, a = layer.gyroplanes()
    w, b = layer.weight.detach(), layer.offset.detach()
    torch.testing.assert_close(dist0(p), b.abs())
    torch.testing.assert_close((p * w).sum(-1).sign(), b.sign())
    torch.testing.assert_close(lambda_x(p) * a.norm(dim=-1), w.norm(dim=-1))
    # the origin's side: f(0) = -|w| b
    torch.testing.assert_close(layer(torch.zeros(1, 2, dtype=torch.float64))[0], -w.norm(dim=-1) * b)


def test_gyroplane_layer_gradients_reach_all_parameters():
    torch.manual_seed(0)
    layer = GyroplaneLayer(2, 6)
    x = expmap0(0.5 * torch.randn(4, 2, 3, 3, 3), dim=1)
    layer(x).pow(2).sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert (param.grad.abs() > 0).all(), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_gyroplane_layer_is_finite_near_the_boundary(dtype):
    layer = GyroplaneLayer(2, 4).to(dtype)
    with torch.no_grad():
        layer.offset.copy_(torch.tensor([30.0, -30.0, 5.0, 0.0]))
    # on, just inside and past the boundary, as float32 rounding produces
    angles = torch.linspace(0, 2 * math.pi, 16, dtype=dtype)
    ring = torch.stack([torch.cos(angles), torch.sin(angles)], dim=0)  # (2, 16)
    x = torch.stack([ring, (1 - 1e-7) * ring, 1.01 * ring], dim=0).requires_grad_(True)  # (3, 2, 16)
    out = layer(x)
    assert out.shape == (3, 4, 16)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(prm.grad).all() for prm in layer.parameters())


def test_gyroplane_rejects_mismatched_shapes():
    layer = GyroplaneLayer(2, 3)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 2, \.\.\.\)"):
        layer(torch.zeros(4, 3, 5))
    with pytest.raises(ValueError):
        GyroplaneLayer(0, 3)
    with pytest.raises(ValueError, match="p and a"):
        gyroplane_distance(torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(2, 2))
