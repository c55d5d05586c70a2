"""``hypseg sample``: write a benchmark dataset of hierarchical cell phantoms as MRC files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import UserError
from ..synthetic import MIN_SIZE, make_dataset, phantom_shape, split_counts
from ._progress import ProgressLine

PAPER_N = 120
PAPER_SPLIT = (80, 20, 20)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="write a dataset of synthetic cell phantoms (image + 3 levels of ground truth) as MRC files",
        description=(
            "Write hierarchical cell phantoms (a cell; vesicles and mitochondria; four kinds of protein "
            "aggregates) under pink noise, after the synthetic benchmark of Hsu et al. 2021. Each volume "
            "comes with ground truth for level 1 (2 classes), 2 (4) and 3 (8). Volumes are split "
            "80/20/20 into train/, val/ and test/ (in proportion when N is not 120); dataset.json "
            "records sizes, seeds and class names."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into (new or empty)")
    parser.add_argument("--n", type=int, default=PAPER_N, metavar="N", help="number of volumes (default %(default)s)")
    parser.add_argument(
        "--size",
        default="50",
        metavar="S",
        help=f"edge in voxels, or Z,Y,X for a box; at least {MIN_SIZE} (default %(default)s)",
    )
    parser.add_argument("--irregular", action="store_true", help="the harder variant with perturbed boundaries")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="base seed (default %(default)s)")
    parser.set_defaults(func=run)


def parse_size(text: str) -> int | tuple[int, int, int]:
    """``"50"`` -> 50, ``"32,64,64"`` -> (32, 64, 64); anything else is a UserError."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--size must be one whole number or three (Z,Y,X), got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 3:
        return tuple(values)
    raise UserError(f"--size must be one whole number or three (Z,Y,X), got {text!r}")


def run(args: argparse.Namespace) -> int:
    size = phantom_shape(parse_size(args.size))
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    out: Path = args.out
    counts = split_counts(args.n, PAPER_SPLIT)
    variant = "irregular" if args.irregular else "regular"
    bar = ProgressLine("phantoms")

    def progress(i: int, n: int, path: Path) -> None:
        if i == 1:  # the folder passed make_dataset's checks
            print(
                f"writing {n} {variant} phantoms of {'x'.join(map(str, size))} voxels to {out}/ "
                f"(train {counts[0]}, val {counts[1]}, test {counts[2]}; seed {args.seed})",
                file=sys.stderr,
            )
        bar.update(i, n, path.name)

    try:
        written = make_dataset(
            out, n=args.n, size=size, irregular=args.irregular, seed=args.seed, split=PAPER_SPLIT, progress=progress
        )
    finally:
        bar.close()
    for part, count in zip(("train", "val", "test"), counts):
        if count:
            noun = "volume" if count == 1 else "volumes"
            print(f"{out / part}/: {count} {noun}, phantom_NNN.mrc with phantom_NNN_level1/2/3.mrc")
    print(f"{out / 'dataset.json'}: sizes, seeds and class names ({len(written)} files written in all)")
    return 0
