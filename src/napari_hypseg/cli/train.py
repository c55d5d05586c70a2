"""``hypseg train``: fit the hyperbolic VAE on one or more volumes and save the model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import read_volume
from ._training import add_training_args, configs_from_args, train_with_progress


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on volumes (MRC/NIfTI)",
        description="Train the hyperbolic VAE on one or more volumes. Ctrl-C stops cleanly and keeps the checkpoint.",
    )
    parser.add_argument("volumes", nargs="+", type=Path, metavar="VOLUME")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.pt", help="model file to write")
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from this checkpoint")
    add_training_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volumes = [read_volume(p).data for p in args.volumes]
    model_config, train_config = configs_from_args(args)
    trainer = train_with_progress(volumes, model_config, train_config, out=args.out, resume=args.resume)
    print(f"wrote {args.out} (step {trainer.step})")
    return 0
