r"""Wrapped normal distribution on the Poincaré ball (curvature :math:`-1`).

The wrapped normal of Mathieu et al. (2019) and Nagano et al. (2019) pushes a
centred Gaussian in the tangent space at the origin onto the ball: transport
it to :math:`\mu`, then follow the exponential map.

Units of ``scale``
------------------
``scale`` is in **Riemannian** units: the Gaussian vector
:math:`v \sim \mathcal{N}(0, \operatorname{diag}\sigma^2)` is written in an
orthonormal basis of :math:`T_0\mathbb{B}` for the hyperbolic metric, so the
geodesic distance of a sample from its mean is exactly :math:`\|v\|`. In
geoopt's ambient coordinates that tangent vector is :math:`v / \lambda_0`,
:math:`\lambda_0 = 2`. This is the convention of the authors' code (which
divides by :math:`\lambda_0` when sampling and multiplies by it in the
density), and it makes :math:`\sigma` read as a distance on the ball: the prior
:math:`\mathcal{N}_{\mathbb{B}}(0, 1)` spreads its mass over about one unit of
geodesic radius. The axes of an anisotropic ``scale`` are the coordinate axes
at the origin, carried to :math:`\mu` by parallel transport.

Sampling
--------
.. math::

    v \sim \mathcal{N}(0, \operatorname{diag}\sigma^2), \quad
    u = P_{0 \to \mu}(v / \lambda_0), \quad
    z = \exp_\mu(u)

Density
-------
With respect to the Riemannian volume of the ball,

.. math::

    \log \mathcal{N}_{\mathbb{B}}(z \mid \mu, \sigma)
    = \log \mathcal{N}(v \mid 0, \operatorname{diag}\sigma^2)
      - (d - 1) \log\frac{\sinh r}{r},
    \qquad v = \lambda_0\, P_{\mu \to 0}(\log_\mu z), \quad r = \|v\| = d(\mu, z),

the second term being the log-Jacobian of :math:`\exp_\mu` (eq. 4 of Hsu et
al. 2021, written for general :math:`d`).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

from napari_hypseg.hyperbolic.ball import expmap, logmap, project, transp0, transp0back

__all__ = ["WrappedNormal", "wrapped_normal_log_prob", "wrapped_normal_rsample"]

# Conformal factor at the origin: ambient tangent coordinates are 1/λ₀ of
# Riemannian ones there.
_LAMBDA0 = 2.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Below this radius log(sinh r / r) comes from its Taylor series; above it from
# the closed form. At r = 0.1 the series truncated after r¹⁰ is exact to
# ~1e-22, and the closed form has lost only ~1e-13 (float64) / ~2e-7 (float32)
# to cancellation.
_SERIES_RADIUS = 0.1


def _check_shapes(loc: torch.Tensor, scale: torch.Tensor) -> None:
    if loc.ndim < 1:
        raise ValueError(f"loc must have a last axis of coordinates, got shape {tuple(loc.shape)}")
    if scale.ndim < 1 or scale.shape[-1] not in (1, loc.shape[-1]):
        raise ValueError(
            f"scale must end in an axis of size 1 or {loc.shape[-1]} (the dimension of loc), "
            f"got shape {tuple(scale.shape)}"
        )


def log_sinhc(r2: torch.Tensor) -> torch.Tensor:
    r"""Compute :math:`\log(\sinh r / r)` from :math:`r^2`, stable from 0 to large r.

    Taking :math:`r^2` keeps the function and its gradient smooth at
    :math:`r = 0`, where :math:`\|v\|` has no derivative.

    Parameters
    ----------
    r2 : torch.Tensor
        Squared radii, non-negative.

    Returns
    -------
    torch.Tensor
        Same shape as ``r2``.
    """
    small = r2 < _SERIES_RADIUS**2
    # Each branch is fed harmless values where it is not selected, so that
    # torch.where does not mix a NaN/inf gradient from the discarded branch in.
    x = torch.where(small, r2, torch.zeros_like(r2))
    series = x * (1 / 6 + x * (-1 / 180 + x * (1 / 2835 + x * (-1 / 37800 + x * (1 / 467775)))))
    r = torch.where(small, torch.ones_like(r2), r2).sqrt()
    # log sinh r = r + log(1 - e^{-2r}) - log 2, which never overflows.
    closed = r + torch.log(-torch.expm1(-2.0 * r)) - math.log(2.0) - torch.log(r)
    return torch.where(small, series, closed)


def wrapped_normal_rsample(
    loc: torch.Tensor,
    scale: torch.Tensor,
    sample_shape: torch.Size | tuple[int, ...] = (),
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Draw reparameterised samples from the wrapped normal.

    Gradients flow to ``loc`` and ``scale`` (except for the rare samples that
    :func:`~napari_hypseg.hyperbolic.project` pulls back from the boundary).

    Parameters
    ----------
    loc : torch.Tensor, shape (..., d)
        Means, points on the ball.
    scale : torch.Tensor, shape (..., d) or (..., 1)
        Positive standard deviations in Riemannian units (see the module
        docstring). Not checked here: this function sits in the training loop,
        where a check would cost a device synchronisation.
    sample_shape : tuple of int
        Leading shape of independent draws.
    generator : torch.Generator, optional
        Source of the Gaussian noise, for reproducible draws.

    Returns
    -------
    torch.Tensor, shape sample_shape + broadcast(loc, scale).shape
        Points strictly inside the ball.
    """
    _check_shapes(loc, scale)
    shape = torch.Size(sample_shape) + torch.broadcast_shapes(loc.shape, scale.shape)
    eps = torch.randn(shape, dtype=loc.dtype, device=loc.device, generator=generator)
    v = eps * scale
    u = transp0(loc, v / _LAMBDA0)
    # tanh in exp_μ rounds to 1 for far samples in float32: keep them inside.
    return project(expmap(loc, u))


def wrapped_normal_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""Log-density of the wrapped normal w.r.t. the Riemannian volume of the ball.

    Parameters
    ----------
    z : torch.Tensor, shape (..., d)
        Points on the ball; leading sample dimensions broadcast against
        ``loc`` as in :meth:`torch.distributions.Distribution.log_prob`.
    loc : torch.Tensor, shape (..., d)
        Means, points on the ball.
    scale : torch.Tensor, shape (..., d) or (..., 1)
        Positive standard deviations in Riemannian units.

    Returns
    -------
    torch.Tensor, shape broadcast(z, loc, scale).shape[:-1]

    Notes
    -----
    Exact up to rounding, including the log-determinant
    :math:`-(d - 1)\log(\sinh r / r)` of the exponential map; integrates to 1
    against :math:`\lambda_x^d\, dx`.
    """
    _check_shapes(loc, scale)
    d = loc.shape[-1]
    v = _LAMBDA0 * transp0back(loc, logmap(loc, z))
    scale = scale.expand(torch.broadcast_shapes(v.shape, scale.shape))
    gauss = (-0.5 * (v / scale).pow(2) - scale.log() - _LOG_SQRT_2PI).sum(-1)
    return gauss - (d - 1) * log_sinhc(v.pow(2).sum(-1))


class _OpenUnitBall(constraints.Constraint):
    """Vectors of Euclidean norm below 1 (the Poincaré ball)."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return value.norm(dim=-1) < 1


poincare_ball = _OpenUnitBall()


class WrappedNormal(Distribution):
    r"""Wrapped normal distribution on the Poincaré ball (curvature :math:`-1`).

    Parameters
    ----------
    loc : torch.Tensor, shape (..., d)
        Mean, a point on the ball.
    scale : torch.Tensor, shape (..., d) or (..., 1)
        Positive standard deviation in Riemannian units: a sample lies at
        geodesic distance :math:`\|v\|`, :math:`v \sim \mathcal{N}(0,
        \operatorname{diag}\sigma^2)`, from ``loc``.
    validate_args : bool, optional
        As for :class:`torch.distributions.Distribution`. Validation reads
        values back from the device; pass ``False`` in a GPU training loop.

    Examples
    --------
    >>> import torch
    >>> q = WrappedNormal(torch.tensor([0.3, -0.2]), torch.tensor([0.5]))
    >>> z = q.rsample((4,))
    >>> z.shape, q.log_prob(z).shape
    (torch.Size([4, 2]), torch.Size([4]))
    """

    arg_constraints = {"loc": poincare_ball, "scale": constraints.positive}
    support = poincare_ball
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, *, validate_args: bool | None = None):
        _check_shapes(loc, scale)
        self.loc = loc
        self.scale = scale
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale.shape[:-1])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        """Reparameterised samples, shape ``sample_shape + batch_shape + event_shape``."""
        return wrapped_normal_rsample(self.loc, self.scale, sample_shape)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> torch.Tensor:
        """Samples without a gradient."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density w.r.t. the Riemannian volume, shape ``sample_shape + batch_shape``."""
        if self._validate_args:
            self._validate_sample(value)
        return wrapped_normal_log_prob(value, self.loc, self.scale)
