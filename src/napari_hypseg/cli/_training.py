"""Training options and the progress-reporting training run shared by train, run, demo and bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import Interrupted, SettingError, UserError
from ..io import READ_SUFFIXES
from ..io.atomic import full_suffix
from ..model.config import ModelConfig
from ..training.config import TrainConfig
from ._options import add_device_and_seed, as_option_error
from ._progress import ProgressLine, interrupt_cancels, train_detail

if TYPE_CHECKING:
    from ..training.trainer import Trainer


def add_training_args(parser: argparse.ArgumentParser, *, default_steps: int | None = None) -> None:
    defaults = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument(
        "--steps", type=int, default=default_steps or defaults.steps, help="optimisation steps (default %(default)s)"
    )
    group.add_argument("--max-minutes", type=float, default=None, help="stop training after this wall-clock time")
    add_device_and_seed(group, defaults)
    group.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="triplets per step (default %(default)s)"
    )
    group.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default %(default)s)")
    # None = not given, so that --resume can tell a conflicting request from the default
    group.add_argument(
        "--latent-dim", type=int, default=None, help=f"latent dimension d (default {ModelConfig().latent_dim})"
    )
    group.add_argument("--euclidean", action="store_true", help="Euclidean latent space (ablation)")
    group.add_argument("--no-gyroplane", action="store_true", help="decoder without the gyroplane layer (ablation)")
    group.add_argument("--no-triplet", action="store_true", help="train on the ELBO alone (ablation)")
    group.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        metavar="STEPS",
        help="also save the model every STEPS steps (default %(default)s = off)",
    )
    group.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=defaults.checkpoint_minutes,
        metavar="MIN",
        help="save the model at least every MIN minutes, so a killed run keeps its progress "
        "(default %(default)s; 0 = off)",
    )


def configs_from_args(
    args: argparse.Namespace, *, resume_config: ModelConfig | None = None
) -> tuple[ModelConfig | None, TrainConfig]:
    """Configs from the options; with ``resume_config`` (the checkpoint's) the model config is None.

    Every value is checked here, before any file is read, and reported with
    the option's name. Architecture options that contradict the resumed
    model are refused rather than silently ignored.
    """
    from .._device import resolve_device

    try:
        train_config = TrainConfig(
            steps=args.steps,
            max_minutes=args.max_minutes,
            device=args.device,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            triplet=not args.no_triplet,
            checkpoint_every=getattr(args, "checkpoint_every", TrainConfig.checkpoint_every),
            checkpoint_minutes=getattr(args, "checkpoint_minutes", TrainConfig.checkpoint_minutes),
        )
        model_config = ModelConfig(
            latent_dim=ModelConfig.latent_dim if args.latent_dim is None else args.latent_dim,
            manifold="euclidean" if args.euclidean else "poincare",
            gyroplane=not args.no_gyroplane,
        )
    except SettingError as exc:
        raise as_option_error(exc) from None
    resolve_device(args.device)  # CUDA asked for on a machine without it: say so before reading volumes
    if resume_config is None:
        return model_config, train_config
    conflicts = []
    if args.latent_dim is not None and args.latent_dim != resume_config.latent_dim:
        conflicts.append(f"--latent-dim {args.latent_dim}")
    if args.euclidean and resume_config.hyperbolic:
        conflicts.append("--euclidean")
    if args.no_gyroplane and resume_config.hyperbolic and resume_config.gyroplane:
        conflicts.append("--no-gyroplane")
    if conflicts:
        from ..training.trainer import describe_config

        raise UserError(
            f"{' '.join(conflicts)} contradicts the model being resumed ({describe_config(resume_config)}); "
            "drop the option, or train a new model without --resume"
        )
    return None, train_config


def check_model_out(out: Path, inputs: list[Path]) -> None:
    """Refuse a model path that would overwrite an input volume, or that looks like one."""
    resolved = out.resolve()
    for path in inputs:
        if path.resolve() == resolved:
            raise UserError(f"--out {out} is one of the input volumes; the model would overwrite it")
    suffix = full_suffix(out)
    if suffix in READ_SUFFIXES:
        raise UserError(
            f"--out {out} has the volume suffix {suffix}; a model file would hide under a tomogram's name "
            "(use e.g. model.pt)"
        )


def train_with_progress(
    volumes,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    out: Path | None = None,
    resume: Path | None = None,
    quiet: bool = False,
    voxel_size=None,
) -> Trainer:
    """Train with a progress line.

    Ctrl-C or SIGTERM stops cleanly, writes the checkpoint, then raises :class:`Interrupted`.

    A diverged run raises :class:`UserError` and does not overwrite ``out``.
    ``voxel_size`` (z, y, x) of the volumes is recorded in the model file.
    """
    from ..training.trainer import Trainer

    trainer = Trainer(
        volumes,
        model_config=model_config,
        train_config=train_config.with_(preview_every=0),
        checkpoint_path=out,
        resume=resume,
        voxel_size=voxel_size,
    )
    bar = None if quiet else ProgressLine("train")
    last = None
    with interrupt_cancels(trainer.cancel, "training") as caught:
        for event in trainer.run():
            last = event
            if event.kind == "start" and not quiet:
                print(f"{event.message}; {trainer.model.patch_size}^3 patches", file=sys.stderr)
            elif event.kind == "step" and bar is not None:
                bar.update(event.step, event.total_steps, train_detail(event))
            elif event.finished:
                if bar is not None:
                    bar.close()
                # a diverged run is reported once, as the error below
                if (not quiet or event.kind != "done") and event.kind != "nonfinite":
                    print(f"{event.message} in {event.elapsed_s:.1f} s", file=sys.stderr)
    if last is not None and last.kind == "nonfinite":
        kept = ""
        if out is not None and trainer.saved_step is not None:
            kept = f" The last healthy checkpoint (step {trainer.saved_step}) is in {out}."
        raise UserError(last.message + kept)
    # a signal that arrives after the last step changes nothing: the run is complete and saved
    if last is not None and last.kind == "cancelled":
        kept = f"; the model at step {trainer.step} is in {out} (continue with --resume {out})" if out else ""
        raise Interrupted(f"{caught.name or 'cancelled'} at step {trainer.step}{kept}")
    return trainer
