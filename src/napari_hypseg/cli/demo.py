"""``hypseg demo``: the whole pipeline on the bundled phantom, scored against its ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..benchmark import LEVEL_K, PUBLISHED
from ..io import write_image, write_labels
from ..io.volume import Volume
from ..synthetic import make_phantom
from ._outputs import parse_clusters
from ._training import add_training_args, configs_from_args, train_with_progress
from .segment import add_segment_args, check_segment_args, segment_volume

#: published rows printed beside ours (short column name -> row of benchmark.PUBLISHED): the best
#: unsupervised method (Tursynbek & Niethammer 2023) and the paper's (Hsu et al. 2021)
REFERENCES = {
    "diffusion features": "diffusion features (ibid., best published)",
    "Hsu et al. 2021": "Hsu et al. 2021 (paper, full model)",
}
#: training budget on CPU: the labels do not read the embedding (the model feeds the disk pictures
#: and the saved embedding), and the whole demo must stay within 3 minutes on 2 cores (2.5 took 3:06)
DEMO_MINUTES = 2.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the full pipeline on the synthetic phantom (about 3 min on 2 CPU cores)",
        description=f"Make the hierarchical cell phantom, train on it, segment it (by default at k = "
        f"{'/'.join(str(k) for k in LEVEL_K.values())}, its levels' class counts), print Dice per level against its "
        "ground truth for each level whose k is among --clusters, and write the labels and a Poincaré-disk picture.",
    )
    parser.add_argument("--size", type=int, default=50, help="phantom edge in voxels (default %(default)s)")
    parser.add_argument("--irregular", action="store_true", help="phantom with perturbed boundaries")
    add_segment_args(parser)
    add_training_args(parser)
    # fused 17³ + 9³ windows scored best on the phantom (docs/benchmarks.md)
    parser.set_defaults(
        out_dir=Path("hypseg-demo"), clusters=",".join(str(k) for k in LEVEL_K.values()), window="17,9", func=run
    )
    for action in parser._actions:  # --out-dir is optional here, with a default folder
        if action.dest == "out_dir":
            action.required = False
            action.help = "output folder (default hypseg-demo)"


def run(args: argparse.Namespace) -> int:
    from ..disk_plot import save_disk_plot
    from ..segmentation.metrics import dice_scores

    t0 = time.perf_counter()
    config = check_segment_args(args)
    ks = parse_clusters(args.clusters)
    model_config, train_config = configs_from_args(args)
    if train_config.max_minutes is None and train_config.device != "cuda":
        train_config = train_config.with_(max_minutes=DEMO_MINUTES)
    phantom = make_phantom(args.size, irregular=args.irregular, seed=args.seed)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    geometry = Volume(
        phantom.image, affine=np.diag([*phantom.voxel_size, 1.0]), format="mrc", source=out / "phantom.mrc"
    )
    write_image(out / "phantom.mrc", phantom.image, like=geometry)
    for level, labels in phantom.levels.items():
        write_labels(out / f"phantom_truth_level{level}.mrc", labels, like=geometry)
    print(f"phantom {phantom.image.shape} written to {out}", file=sys.stderr)

    trainer = train_with_progress(
        [phantom.image], model_config, train_config, out=out / "phantom_model.pt", voxel_size=geometry.spacing
    )
    _, result = segment_volume(
        geometry,
        trainer.model,
        config,
        ks,
        out,
        fmt=args.format,
        resample_to_model=args.resample_to_model,
        label="segment",
    )

    variant = "irregular" if args.irregular else "regular"
    references = {name: PUBLISHED[row][variant] for name, row in REFERENCES.items()}
    print("\nmean Dice after Hungarian matching (higher is better)")
    header = f"{'level':>5} {'k':>3} {'ours':>7}" + "".join(f" {name:>20}" for name in references)
    print(header)
    embedding = result.embedding.reshape(-1, result.embedding.shape[-1])
    scored = {level: k for level, k in LEVEL_K.items() if k in ks}
    for level, k in scored.items():
        labels = result.labels(k)
        score = dice_scores(labels, phantom.levels[level]).mean
        row = f"{level:>5} {k:>3} {score:7.3f}" + "".join(f" {ref[level - 1]:20.3f}" for ref in references.values())
        print(row)
        save_disk_plot(
            embedding,
            labels.ravel(),
            out / f"phantom_disk_k{k}.png",
            title=f"Poincaré disk, k = {k} (level {level}, Dice {score:.3f})",
        )
    unscored = [f"level {level} (k = {k})" for level, k in LEVEL_K.items() if level not in scored]
    if unscored:
        print(f"not scored: {', '.join(unscored)}, not among --clusters {args.clusters}")
    print(f"\nlabels, model, embedding and disk pictures in {out}/ ({time.perf_counter() - t0:.0f} s in all)")
    return 0
