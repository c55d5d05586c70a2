"""``hypseg run``: train on a volume, then segment that same volume (the paper's transductive setting)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import read_volume
from ._outputs import parse_clusters, stem_of
from ._training import add_training_args, configs_from_args, train_with_progress
from .segment import add_segment_args, check_segment_args, plan_outputs, segment_volume


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
    # everything that can fail without training is checked first, outputs included
    config = check_segment_args(args)
    ks = parse_clusters(args.clusters)
    model_config, train_config = configs_from_args(args)
    stem = stem_of(args.volume)
    plan_outputs([args.volume], {args.volume: stem}, model_config, config, ks, args.out_dir, args.format)
    volume = read_volume(args.volume)
    model_path = args.out_dir / f"{stem}_model.pt"
    trainer = train_with_progress([volume.data], model_config, train_config, out=model_path, voxel_size=volume.spacing)
    written, _ = segment_volume(
        volume,
        trainer.model,
        config,
        ks,
        args.out_dir,
        fmt=args.format,
        resample_to_model=args.resample_to_model,
        label=args.volume.name,
        stem=stem,
        model_path=model_path,
    )
    for path in written:
        print(path)
    print(model_path)
    return 0
