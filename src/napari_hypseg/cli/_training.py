"""Training options and the progress-reporting training run shared by train, run, demo and bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.config import ModelConfig
from ..training.config import TrainConfig
from ._progress import ProgressLine, interrupt_cancels, train_detail

if TYPE_CHECKING:
    from ..training.trainer import Trainer


def add_training_args(parser: argparse.ArgumentParser, *, default_steps: int | None = None) -> None:
    defaults = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=default_steps or defaults.steps, help="optimisation steps (default %(default)s)")
    group.add_argument("--max-minutes", type=float, default=None, help="stop training after this wall-clock time")
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda (default %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="triplets per step (default %(default)s)")
    group.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default %(default)s)")
    group.add_argument("--latent-dim", type=int, default=ModelConfig().latent_dim, help="latent dimension d (default %(default)s)")
    group.add_argument("--euclidean", action="store_true", help="Euclidean latent space (ablation)")
    group.add_argument("--no-gyroplane", action="store_true", help="decoder without the gyroplane layer (ablation)")
    group.add_argument("--no-triplet", action="store_true", help="train on the ELBO alone (ablation)")


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    model_config = ModelConfig(
        latent_dim=args.latent_dim,
        manifold="euclidean" if args.euclidean else "poincare",
        gyroplane=not args.no_gyroplane,
    )
    train_config = TrainConfig(
        steps=args.steps,
        max_minutes=args.max_minutes,
        device=args.device,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        triplet=not args.no_triplet,
    )
    return model_config, train_config


def train_with_progress(
    volumes,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    out: Path | None = None,
    resume: Path | None = None,
    quiet: bool = False,
) -> Trainer:
    """Train with a progress line; Ctrl-C stops cleanly and still writes the checkpoint."""
    from ..training.trainer import Trainer

    trainer = Trainer(
        volumes, model_config=model_config, train_config=train_config.with_(preview_every=0),
        checkpoint_path=out, resume=resume,
    )
    bar = None if quiet else ProgressLine("train")
    with interrupt_cancels(trainer.cancel, "training"):
        for event in trainer.run():
            if event.kind == "start" and not quiet:
                print(f"{event.message}; {trainer.model.patch_size}^3 patches", file=sys.stderr)
            elif event.kind == "step" and bar is not None:
                bar.update(event.step, event.total_steps, train_detail(event))
            elif event.finished:
                if bar is not None:
                    bar.close()
                if not quiet or event.kind != "done":
                    print(f"{event.message} in {event.elapsed_s:.1f} s", file=sys.stderr)
    return trainer
