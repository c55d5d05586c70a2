"""``hypseg run``: train on a volume, then segment that same volume (the paper's transductive setting)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import read_volume
from ._outputs import stem_of
from ._training import add_training_args, configs_from_args, train_with_progress
from .segment import add_segment_args, segment_volume


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train on a volume and segment it",
        description="Train the hyperbolic VAE on VOLUME, then write labels for each cluster count and the model file.",
    )
    parser.add_argument("volume", type=Path, metavar="VOLUME")
    add_segment_args(parser)
    add_training_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = read_volume(args.volume)
    model_config, train_config = configs_from_args(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / f"{stem_of(args.volume)}_model.pt"
    trainer = train_with_progress([volume.data], model_config, train_config, out=model_path)
    written, _ = segment_volume(volume, trainer.model, args, label=args.volume.name)
    for path in written:
        print(path)
    print(model_path)
    return 0
