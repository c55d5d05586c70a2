r"""Poincaré ball of curvature :math:`-1`: thin wrappers over geoopt.

Every function here forwards to :mod:`geoopt.manifolds.stereographic.math`
with :math:`\kappa = -1`; nothing is re-derived. The wrappers exist so the
rest of the package never handles a curvature tensor and never has to know
geoopt's keyword conventions.

Conventions (those of geoopt):

* A point is a vector :math:`x` with :math:`\|x\|_2 < 1`, stored along ``dim``.
* A tangent vector :math:`u \in T_x\mathbb{B}` is stored in the ambient
  (Euclidean) coordinates. Its Riemannian norm is
  :math:`\|u\|_x = \lambda_x \|u\|_2` with the conformal factor
  :math:`\lambda_x = 2 / (1 - \|x\|_2^2)`; at the origin :math:`\lambda_0 = 2`.
* All functions broadcast over leading dimensions.

The curvature is passed to geoopt as a 0-dim *CPU* tensor. PyTorch lets a 0-dim
CPU tensor combine with tensors on any device, and geoopt's kernels branch on
the sign of the curvature with ``if torch.all(...)``: keeping the curvature on
the CPU keeps those branches from forcing a host-device synchronisation when
the data live on a GPU.
"""

from __future__ import annotations

import functools

import torch
from geoopt.manifolds.stereographic import math as _gm

__all__ = [
    "dist",
    "dist0",
    "expmap",
    "expmap0",
    "lambda_x",
    "logmap",
    "logmap0",
    "mobius_add",
    "project",
    "transp",
    "transp0",
    "transp0back",
]


@functools.cache
def _curvature(dtype: torch.dtype) -> torch.Tensor:
    # Matching the data dtype keeps type promotion from ever widening a result.
    return torch.tensor(-1.0, dtype=dtype)


def _k(x: torch.Tensor) -> torch.Tensor:
    return _curvature(x.dtype)


def mobius_add(x: torch.Tensor, y: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Möbius addition :math:`x \oplus y`.

    .. math::

        x \oplus y = \frac{(1 + 2\langle x, y\rangle + \|y\|^2)\, x + (1 - \|x\|^2)\, y}
                          {1 + 2\langle x, y\rangle + \|x\|^2 \|y\|^2}

    Parameters
    ----------
    x, y : torch.Tensor, shape (..., d)
        Points on the ball (broadcastable).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
    """
    return _gm.mobius_add(x, y, k=_k(x), dim=dim)


def lambda_x(x: torch.Tensor, *, keepdim: bool = False, dim: int = -1) -> torch.Tensor:
    r"""Conformal factor :math:`\lambda_x = 2 / (1 - \|x\|^2)`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., d)
        Points on the ball.
    keepdim : bool
        Keep the reduced axis (size 1).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (...) or (..., 1)
    """
    return _gm.lambda_x(x, k=_k(x), keepdim=keepdim, dim=dim)


def expmap0(u: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Exponential map at the origin, :math:`\exp_0(u) = \tanh(\|u\|)\, u / \|u\|`.

    ``u`` is in ambient coordinates, so the point lands at geodesic distance
    :math:`\|u\|_0 = 2\|u\|` from the origin.

    Parameters
    ----------
    u : torch.Tensor, shape (..., d)
        Tangent vectors at the origin.
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Points on the ball. In float32 :math:`\tanh` rounds to 1 beyond
        :math:`\|u\| \approx 9`: follow with :func:`project` when ``u`` can be
        large.
    """
    return _gm.expmap0(u, k=_k(u), dim=dim)


def logmap0(y: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Logarithmic map at the origin, :math:`\log_0(y) = \operatorname{artanh}(\|y\|)\, y / \|y\|`.

    Parameters
    ----------
    y : torch.Tensor, shape (..., d)
        Points on the ball.
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Tangent vectors at the origin (ambient coordinates).
    """
    return _gm.logmap0(y, k=_k(y), dim=dim)


def expmap(x: torch.Tensor, u: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Exponential map at ``x``, :math:`\exp_x(u) = x \oplus \tanh(\lambda_x\|u\|/2)\, u/\|u\|`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., d)
        Base points on the ball.
    u : torch.Tensor, shape (..., d)
        Tangent vectors at ``x`` (ambient coordinates).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        The points at geodesic distance :math:`\lambda_x \|u\|` from ``x``.
    """
    return _gm.expmap(x, u, k=_k(x), dim=dim)


def logmap(x: torch.Tensor, y: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Logarithmic map at ``x``: the tangent vector with :math:`\exp_x(\log_x(y)) = y`.

    .. math::

        \log_x(y) = \frac{2}{\lambda_x} \operatorname{artanh}(\|(-x) \oplus y\|)
                    \frac{(-x) \oplus y}{\|(-x) \oplus y\|}

    Parameters
    ----------
    x, y : torch.Tensor, shape (..., d)
        Points on the ball (broadcastable).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Tangent vectors at ``x`` (ambient coordinates).
    """
    return _gm.logmap(x, y, k=_k(x), dim=dim)


def transp(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Parallel transport of ``v`` from :math:`T_x` to :math:`T_y` along the geodesic.

    .. math::

        P_{x \to y}(v) = \operatorname{gyr}[y, -x]\, v \; \lambda_x / \lambda_y

    Parameters
    ----------
    x, y : torch.Tensor, shape (..., d)
        Start and end points.
    v : torch.Tensor, shape (..., d)
        Tangent vectors at ``x``.
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Tangent vectors at ``y``; Riemannian norms are preserved.
    """
    return _gm.parallel_transport(x, y, v, k=_k(x), dim=dim)


def transp0(y: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Parallel transport from the origin to ``y``, :math:`P_{0 \to y}(v) = (1 - \|y\|^2)\, v`.

    Parameters
    ----------
    y : torch.Tensor, shape (..., d)
        End points.
    v : torch.Tensor, shape (..., d)
        Tangent vectors at the origin.
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Tangent vectors at ``y``.
    """
    return _gm.parallel_transport0(y, v, k=_k(y), dim=dim)


def transp0back(x: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Parallel transport from ``x`` back to the origin, :math:`P_{x \to 0}(v) = v / (1 - \|x\|^2)`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., d)
        Start points.
    v : torch.Tensor, shape (..., d)
        Tangent vectors at ``x``.
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., d)
        Tangent vectors at the origin.
    """
    return _gm.parallel_transport0back(x, v, k=_k(x), dim=dim)


def dist(x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False, dim: int = -1) -> torch.Tensor:
    r"""Geodesic distance :math:`d(x, y) = 2 \operatorname{artanh}(\|(-x) \oplus y\|)`.

    Equal to :math:`\operatorname{arcosh}\left(1 + 2\frac{\|x - y\|^2}{(1 - \|x\|^2)(1 - \|y\|^2)}\right)`
    (eq. 1 of Hsu et al. 2021).

    Parameters
    ----------
    x, y : torch.Tensor, shape (..., d)
        Points on the ball (broadcastable).
    keepdim : bool
        Keep the reduced axis (size 1).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (...) or (..., 1)
    """
    return _gm.dist(x, y, k=_k(x), keepdim=keepdim, dim=dim)


def dist0(x: torch.Tensor, *, keepdim: bool = False, dim: int = -1) -> torch.Tensor:
    r"""Geodesic distance to the origin, :math:`d(0, x) = 2 \operatorname{artanh}(\|x\|)`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., d)
        Points on the ball.
    keepdim : bool
        Keep the reduced axis (size 1).
    dim : int
        Axis holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (...) or (..., 1)
    """
    return _gm.dist0(x, k=_k(x), keepdim=keepdim, dim=dim)


def project(x: torch.Tensor, *, dim: int = -1, eps: float | None = None) -> torch.Tensor:
    r"""Pull points back inside the ball, to Euclidean norm at most :math:`1 - \epsilon`.

    Parameters
    ----------
    x : torch.Tensor, shape (..., d)
        Points, possibly rounded onto or past the boundary.
    dim : int
        Axis holding the coordinates.
    eps : float, optional
        Margin from the boundary. By default geoopt's dtype-aware margin:
        ``4e-3`` in float32 (geodesic radius about 6.2, where
        :math:`1 - \|x\|^2` still has three significant digits) and ``1e-5``
        in float64 (radius about 12.2).

    Returns
    -------
    torch.Tensor, shape (..., d)
        ``x`` where it is inside the margin, else rescaled onto it.
    """
    return _gm.project(x, k=_k(x), dim=dim, eps=-1.0 if eps is None else float(eps))
