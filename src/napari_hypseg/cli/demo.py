"""``hypseg demo``: the whole pipeline on the bundled phantom, scored against its ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..io import write_image, write_labels
from ..io.volume import Volume
from ..synthetic import make_phantom
from ._training import add_training_args, configs_from_args, train_with_progress
from .segment import add_segment_args, segment_volume

# best published unsupervised mean Dice per level (Tursynbek & Niethammer 2023) and the paper's (Hsu et al. 2021)
PUBLISHED = {
    "diffusion features": (0.986, 0.577, 0.397),
    "Hsu et al. 2021": (0.952, 0.541, 0.216),
}
LEVEL_K = {1: 2, 2: 4, 3: 8}
DEMO_MINUTES = 2.5


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the full pipeline on the synthetic phantom (about 3 min on 2 CPU cores)",
        description="Make the hierarchical cell phantom, train on it, segment it at k = 2/4/8, print Dice per "
        "level against its ground truth, and write the labels and a Poincaré-disk picture.",
    )
    parser.add_argument("--size", type=int, default=50, help="phantom edge in voxels (default %(default)s)")
    parser.add_argument("--irregular", action="store_true", help="phantom with perturbed boundaries")
    add_segment_args(parser)
    add_training_args(parser)
    # fused 17³ + 9³ windows scored best on the phantom (docs/benchmarks.md)
    parser.set_defaults(out_dir=Path("hypseg-demo"), clusters="2,4,8", window="17,9", func=run)
    for action in parser._actions:  # --out-dir is optional here, with a default folder
        if action.dest == "out_dir":
            action.required = False
            action.help = "output folder (default hypseg-demo)"


def run(args: argparse.Namespace) -> int:
    from ..disk_plot import save_disk_plot
    from ..segmentation.metrics import dice_scores

    t0 = time.perf_counter()
    if args.max_minutes is None and args.device != "cuda":
        args.max_minutes = DEMO_MINUTES
    phantom = make_phantom(args.size, irregular=args.irregular, seed=args.seed)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    geometry = Volume(phantom.image, affine=np.diag([*phantom.voxel_size, 1.0]), format="mrc", source=out / "phantom.mrc")
    write_image(out / "phantom.mrc", phantom.image, like=geometry)
    for level, labels in phantom.levels.items():
        write_labels(out / f"phantom_truth_level{level}.mrc", labels, like=geometry)
    print(f"phantom {phantom.image.shape} written to {out}", file=sys.stderr)

    model_config, train_config = configs_from_args(args)
    trainer = train_with_progress([phantom.image], model_config, train_config, out=out / "phantom_model.pt",
                                  voxel_size=geometry.spacing)
    args.clusters = ",".join(str(LEVEL_K[level]) for level in sorted(LEVEL_K))
    _, result = segment_volume(geometry, trainer.model, args, label="segment")

    print("\nmean Dice after Hungarian matching (higher is better)")
    header = f"{'level':>5} {'k':>3} {'ours':>7}" + "".join(f" {name:>20}" for name in PUBLISHED)
    print(header)
    embedding = result.embedding.reshape(-1, result.embedding.shape[-1])
    for level, k in LEVEL_K.items():
        labels = result.labels(k)
        score = dice_scores(labels, phantom.levels[level]).mean
        row = f"{level:>5} {k:>3} {score:7.3f}" + "".join(f" {ref[level - 1]:20.3f}" for ref in PUBLISHED.values())
        print(row)
        save_disk_plot(
            embedding, labels.ravel(), out / f"phantom_disk_k{k}.png",
            title=f"Poincaré disk, k = {k} (level {level}, Dice {score:.3f})",
        )
    print(f"\nlabels, model, embedding and disk pictures in {out}/ ({time.perf_counter() - t0:.0f} s in all)")
    return 0

