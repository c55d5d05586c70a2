"""Training objectives: the ELBO on the latent manifold and the hierarchical triplet loss."""

from __future__ import annotations

import torch

from .vae import HyperbolicVAE


def negative_elbo(
    model: HyperbolicVAE,
    patches: torch.Tensor,
    *,
    n_samples: int = 1,
    beta: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Monte-Carlo negative ELBO of normalised patches, averaged over the batch.

    The likelihood is Gaussian with unit variance, so the reconstruction term
    is half the summed squared error of each patch (constants dropped). The KL
    term is estimated from the same samples as ``log q(z|x) - log p(z)``
    because no closed form exists between wrapped normals.

    Returns
    -------
    loss : scalar tensor
        ``recon + beta * kl``.
    parts : dict
        ``{"recon": ..., "kl": ...}`` detached, for logging.
    loc : (B, d) tensor
        Posterior locations (reused by the triplet loss).
    """
    recon, loc, scale, z = model(patches, n_samples=n_samples)
    sq_err = (recon.float() - patches.unsqueeze(0).float()).pow(2)
    recon_term = 0.5 * sq_err.flatten(2).sum(-1).mean()
    posterior = model.posterior(loc.double(), scale.double())
    prior = model.prior(z[0])
    log_q = posterior.log_prob(z)
    log_p = prior.log_prob(z)
    if not model.config.hyperbolic:  # Normal.log_prob is per coordinate
        log_q, log_p = log_q.sum(-1), log_p.sum(-1)
    kl = (log_q - log_p).mean().float()
    loss = recon_term + beta * kl
    return loss, {"recon": recon_term.detach(), "kl": kl.detach()}, loc


def hierarchical_triplet_loss(
    model: HyperbolicVAE,
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    margin: float = 0.2,
) -> torch.Tensor:
    """``mean(max(0, d(anchor, positive) - d(anchor, negative) + margin))``.

    Inputs are posterior locations ``(B, d)``; ``d`` is the latent geodesic
    distance (Poincaré distance on the ball, as in eq. 8 of the paper). The
    loss is exactly zero when every triplet satisfies the margin.
    """
    d_pos = model.latent_distance(anchor, positive)
    d_neg = model.latent_distance(anchor, negative)
    return torch.relu(d_pos - d_neg + margin).mean()
