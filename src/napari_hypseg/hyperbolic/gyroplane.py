r"""Gyroplane layer: signed, scaled hyperbolic distances to learned gyroplanes.

The hyperbolic analogue of an affine unit :math:`\langle a, z - p\rangle`
(Ganea et al. 2018; eq. 5-6 of Hsu et al. 2021). A gyroplane through
:math:`p \in \mathbb{B}` with normal :math:`a \in T_p\mathbb{B}` is

.. math::

    H_{a,p} = \{z \in \mathbb{B} : \langle (-p) \oplus z, a \rangle = 0\}
            = \{\exp_p(t) : t \in T_p\mathbb{B},\ \langle t, a \rangle = 0\},

a totally geodesic hypersurface (a geodesic when :math:`d = 2`). The unit is

.. math::

    f_{a,p}(z) = \operatorname{sgn}(\langle (-p) \oplus z, a\rangle)\,
                 \|a\|_p\, d(z, H_{a,p}),
    \qquad
    d(z, H_{a,p}) = \operatorname{arsinh}\left(
        \frac{2 |\langle (-p) \oplus z, a\rangle|}{(1 - \|(-p) \oplus z\|^2) \|a\|}
    \right).

Scale convention: :math:`\|a\|_p = \lambda_p \|a\|` is the *Riemannian* norm of
the normal, as in eq. 5 and in Ganea et al. (not the Euclidean :math:`\|a\|`
of its ambient coordinates, which would shrink the unit as :math:`p` nears the
boundary for no geometric reason). Hence :math:`f(\exp_p(t a)) = t \|a\|_p^2`.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_hypseg.hyperbolic.ball import expmap0, lambda_x, mobius_add, project, transp0

__all__ = ["GyroplaneLayer", "gyroplane_distance"]

_LAMBDA0 = 2.0


def gyroplane_distance(z: torch.Tensor, p: torch.Tensor, a: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Signed distances of points to ``n`` gyroplanes, scaled by :math:`\|a\|_p`.

    Parameters
    ----------
    z : torch.Tensor, shape (..., d, ...)
        Points on the ball, coordinates along ``dim``.
    p : torch.Tensor, shape (n, d)
        A point of each gyroplane (on the ball).
    a : torch.Tensor, shape (n, d)
        Normal of each gyroplane, a non-zero tangent vector at ``p``
        (ambient coordinates).
    dim : int
        Axis of ``z`` holding the coordinates.

    Returns
    -------
    torch.Tensor, shape (..., n, ...)
        ``z``'s shape with axis ``dim`` of size ``n``: entry ``j`` is
        :math:`f_{a_j, p_j}(z)`, positive on the side :math:`a_j` points to.

    Notes
    -----
    Memory is :math:`O(\text{points} \cdot n \cdot d)`; fine for the latent
    dimensions used here (2 to a few tens).
    """
    if p.ndim != 2 or a.shape != p.shape:
        raise ValueError(f"p and a must both have shape (n, d), got {tuple(p.shape)} and {tuple(a.shape)}")
    dim = dim % z.ndim
    if z.shape[dim] != p.shape[1]:
        raise ValueError(f"z has {z.shape[dim]} coordinates along axis {dim}, the gyroplanes {p.shape[1]}")
    zc = z.movedim(dim, -1).unsqueeze(-2)  # (..., 1, d) against (n, d)
    diff = mobius_add(-p, zc)  # (..., n, d)
    a_norm = a.norm(dim=-1).clamp_min(1e-15)  # a = 0 is a degenerate plane
    num = 2.0 * (diff * a).sum(-1)
    # 1 - ||diff||^2 > 0 in exact arithmetic; rounding in float32 can reach 0
    # for points on opposite edges of the ball. Clamping keeps the result
    # finite (and on the right side) there.
    den = (1.0 - diff.pow(2).sum(-1)).clamp_min(1e-15) * a_norm
    # torch.asinh, not geoopt's log(x + sqrt(1 + x^2)): the latter cancels
    # catastrophically for large negative x, i.e. on the negative side.
    signed = torch.asinh(num / den)
    return (signed * (lambda_x(p) * a_norm)).movedim(-1, dim)


class GyroplaneLayer(nn.Module):
    r"""Per-voxel gyroplane units: ball-valued channels in, Euclidean channels out.

    Unit :math:`j` has a weight :math:`w_j \in \mathbb{R}^d` and an offset
    :math:`b_j \in \mathbb{R}`, both read in Riemannian units at the origin:

    .. math::

        p_j = \exp_0\!\left(\frac{b_j}{\lambda_0} \frac{w_j}{\|w_j\|}\right), \qquad
        a_j = P_{0 \to p_j}\!\left(\frac{w_j}{\lambda_0}\right),

    so the gyroplane is orthogonal to the direction :math:`w_j` and crosses it
    at signed geodesic distance :math:`b_j` from the origin, and
    :math:`\|a_j\|_{p_j} = \|w_j\|` scales the output. Every gyroplane is
    reachable this way (take :math:`p` the point of :math:`H` nearest the
    origin, where the normal is radial). The authors' code uses
    :math:`p = \exp_0(w b)` instead, which ties the offset to :math:`\|w\|`;
    the family of functions is the same.

    Parameters
    ----------
    in_dim : int
        Dimension ``d`` of the ball.
    out_channels : int
        Number of gyroplanes ``n``.

    Shape
    -----
    Input ``(B, d, *spatial)`` or ``(B, d)``, points on the ball;
    output ``(B, n, *spatial)`` or ``(B, n)``.
    """

    def __init__(self, in_dim: int, out_channels: int):
        super().__init__()
        if in_dim < 1 or out_channels < 1:
            raise ValueError(f"in_dim and out_channels must be positive, got {in_dim} and {out_channels}")
        self.in_dim = int(in_dim)
        self.out_channels = int(out_channels)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_dim))
        self.offset = nn.Parameter(torch.empty(self.out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random normal directions of norm about 1; offsets uniform in (-1, 1).

        A standard wrapped-normal prior puts most codes within about one unit
        of geodesic distance of the origin, so the planes start among them.
        """
        if self.weight.is_meta:
            # counted, not used (checkpoint.check_model_size): torch draws normals on "meta" through its
            # reference kernels, whose first call imports torch._dynamo (2-4 s for every model loaded)
            return
        with torch.no_grad():
            nn.init.normal_(self.weight, std=self.in_dim**-0.5)
            nn.init.uniform_(self.offset, -1.0, 1.0)

    def gyroplanes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The points ``p`` and normals ``a`` of the gyroplanes, each of shape ``(n, d)``."""
        w_unit = self.weight / self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        # tanh(b/2) rounds to 1 in float32 for |b| > ~18: keep p inside.
        p = project(expmap0(w_unit * (self.offset.unsqueeze(-1) / _LAMBDA0)))
        a = transp0(p, self.weight / _LAMBDA0)
        return p, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"GyroplaneLayer expects input of shape (B, {self.in_dim}, ...), got {tuple(x.shape)}")
        p, a = self.gyroplanes()
        # Encoder outputs from expmap0 can round onto the boundary in float32.
        return gyroplane_distance(project(x, dim=1), p, a, dim=1)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_channels={self.out_channels}"
