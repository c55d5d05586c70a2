"""The hyperbolic VAE: configuration, networks, losses and model files.

Names are imported lazily (PEP 562) so that ``ModelConfig`` is available
without importing torch.
"""

import importlib

_EXPORTS = {
    "ModelConfig": ".config",
    "Decoder": ".vae",
    "Encoder": ".vae",
    "HyperbolicVAE": ".vae",
    "hierarchical_triplet_loss": ".losses",
    "negative_elbo": ".losses",
    "load_model": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "encode_block": ".dense",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
