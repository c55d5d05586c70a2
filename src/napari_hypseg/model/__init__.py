"""The hyperbolic VAE: configuration, networks, losses and model files."""

from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .config import ModelConfig
from .losses import hierarchical_triplet_loss, negative_elbo
from .vae import Decoder, Encoder, HyperbolicVAE

__all__ = [
    "Decoder",
    "Encoder",
    "HyperbolicVAE",
    "ModelConfig",
    "hierarchical_triplet_loss",
    "load_model",
    "negative_elbo",
    "read_checkpoint",
    "save_checkpoint",
]
