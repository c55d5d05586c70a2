"""Training: multi-scale triplet sampling and the event-driven Trainer."""

from .config import TrainConfig
from .events import Preview, TrainEvent
from .sampler import SamplerConfig, TripletBatch, TripletSampler
from .trainer import Trainer

__all__ = ["Preview", "SamplerConfig", "TrainConfig", "TrainEvent", "Trainer", "TripletBatch", "TripletSampler"]
