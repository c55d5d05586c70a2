"""``hypseg train``: fit the hyperbolic VAE on one or more volumes and save the model file."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ..io import read_volume
from ._training import add_training_args, check_model_out, configs_from_args, train_with_progress


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on volumes (MRC/NIfTI)",
        description="Train the hyperbolic VAE on one or more volumes. Ctrl-C or SIGTERM stops cleanly, keeps the "
        "checkpoint and exits 130; the model is also saved periodically (--checkpoint-minutes).",
    )
    parser.add_argument("volumes", nargs="+", type=Path, metavar="VOLUME")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL.pt", help="model file to write")
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from this checkpoint")
    add_training_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # every check that needs no volume comes first: options, then the output, then the inputs
    check_model_out(args.out, args.volumes)
    resume_config = None
    if args.resume is not None:
        from ..model.checkpoint import read_checkpoint

        resume_config = read_checkpoint(args.resume)["config"]
    model_config, train_config = configs_from_args(args, resume_config=resume_config)
    from ..segmentation.resample import format_voxel_size, voxel_size_differs

    read = [read_volume(p) for p in args.volumes]
    spacing = read[0].spacing  # recorded in the model file; segmenting at another voxel size warns
    for path, volume in zip(args.volumes[1:], read[1:]):
        if voxel_size_differs(volume.spacing, spacing):
            warnings.warn(
                f"{path.name}: voxel size {format_voxel_size(volume.spacing)} differs from "
                f"{args.volumes[0].name}'s {format_voxel_size(spacing)}; the model records the latter",
                UserWarning,
                stacklevel=2,
            )
    trainer = train_with_progress(
        [v.data for v in read], model_config, train_config, out=args.out, resume=args.resume, voxel_size=spacing
    )
    print(f"wrote {args.out} (step {trainer.step})")
    return 0
