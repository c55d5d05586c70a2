"""Training: multi-scale triplet sampling and the event-driven Trainer.

Names are imported lazily (PEP 562) so that reading the configs, e.g. for
CLI help, does not import torch.
"""

import importlib

_EXPORTS = {
    "SamplerConfig": ".config",
    "TrainConfig": ".config",
    "Preview": ".events",
    "TrainEvent": ".events",
    "TripletBatch": ".sampler",
    "TripletSampler": ".sampler",
    "Trainer": ".trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
