"""Hyperbolic geometry for the latent space: the Poincaré ball of curvature -1.

* :mod:`.ball` -- exp/log maps, Möbius addition, parallel transport and
  distances, as thin wrappers over geoopt's stereographic math.
* :mod:`.wrapped_normal` -- the wrapped normal distribution (reparameterised
  sampling, exact log-density).
* :mod:`.gyroplane` -- signed distances to gyroplanes and the per-voxel
  gyroplane layer that opens the decoder.
"""

from napari_hypseg.hyperbolic.ball import (
    dist,
    dist0,
    expmap,
    expmap0,
    lambda_x,
    logmap,
    logmap0,
    mobius_add,
    project,
    transp,
    transp0,
    transp0back,
)
from napari_hypseg.hyperbolic.gyroplane import GyroplaneLayer, gyroplane_distance
from napari_hypseg.hyperbolic.wrapped_normal import (
    WrappedNormal,
    wrapped_normal_log_prob,
    wrapped_normal_rsample,
)

__all__ = [
    "GyroplaneLayer",
    "WrappedNormal",
    "dist",
    "dist0",
    "expmap",
    "expmap0",
    "gyroplane_distance",
    "lambda_x",
    "logmap",
    "logmap0",
    "mobius_add",
    "project",
    "transp",
    "transp0",
    "transp0back",
    "wrapped_normal_log_prob",
    "wrapped_normal_rsample",
]
