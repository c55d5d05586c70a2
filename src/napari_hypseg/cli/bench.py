"""``hypseg bench``: the paper's Table 1/2 protocol on the recreated phantom set; writes docs/benchmarks.md."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from .._errors import UserError
from ..training.config import TrainConfig
from ._options import add_device_and_seed

START, END = "<!-- hypseg bench: {variant} start -->", "<!-- hypseg bench: {variant} end -->"
#: training steps per model in ``--suite --quick`` (used with ``--fused``: the default row trains nothing)
QUICK_STEPS = 60


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="reproduce the paper's synthetic benchmark (Tables 1-2) on the recreated phantoms",
        description="Train every ablation on the training phantoms, segment the test phantoms at k = 2/4/8 and "
        "print mean ± sd Dice per level beside the published numbers; update docs/benchmarks.md.",
    )
    parser.add_argument(
        "--suite",
        action="store_true",
        help="the quality suite: phantoms, real cryo-ET and real MRI, our default beside the "
        "strongest simple baselines (k-means, Gaussian mixture, TV, filter bank)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="with --suite: fewer phantoms, one seed",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="with --suite: the generality sweep's cases instead of the suite's (the MRI at other noise "
        "levels, with an intensity non-uniformity and at 1 mm, phantoms at other noise levels, the nuclei "
        "stack with added noise)",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="with --suite: also the row with the hyperbolic embedding fused in (the variant that lost; "
        "trains a model per case, one seed)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="with --suite: seeds per case (default 1 quick, 2 full)"
    )
    parser.add_argument("--irregular", action="store_true", help="the irregular (perturbed boundaries) variant")
    parser.add_argument("--n-train", type=int, default=80, help="training phantoms (default %(default)s, as the paper)")
    parser.add_argument("--n-test", type=int, default=20, help="test phantoms (default %(default)s, as the paper)")
    parser.add_argument("--size", type=int, default=50, help="phantom edge (default %(default)s)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"training steps per model (default {TrainConfig().steps}; --suite --quick: {QUICK_STEPS})",
    )
    parser.add_argument("--methods", default=None, help="comma-separated substrings selecting rows (default: all)")
    add_device_and_seed(parser, TrainConfig())
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="markdown file whose bench section is replaced (default %(default)s; 'none' to skip)",
    )
    parser.set_defaults(func=run)


def update_report(path: Path, variant: str, body: str) -> None:
    start, end = START.format(variant=variant), END.format(variant=variant)
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    from ..io.atomic import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:  # an interrupted run leaves the old report whole
        tmp.write_text(text)


def run(args: argparse.Namespace) -> int:
    if args.suite:
        return run_suite(args)
    if args.quick or args.fused or args.sweep or args.seeds is not None:
        raise UserError("--quick, --fused, --sweep and --seeds belong to --suite")
    if args.steps is None:
        args.steps = TrainConfig().steps
    from .. import benchmark
    from .._device import describe_device, resolve_device

    methods = list(benchmark.METHODS.values())
    if args.methods:
        wanted = [w.strip().lower() for w in args.methods.split(",") if w.strip()]
        methods = [m for m in methods if any(w in m.name.lower() for w in wanted)]
        if not methods:
            raise UserError(f"no benchmark row matches {args.methods!r}; rows: {', '.join(benchmark.METHODS)}")
    if not (1 <= args.n_train <= 80 and 1 <= args.n_test <= 20):
        raise UserError("--n-train must be in 1..80 and --n-test in 1..20 (the paper's 80/20/20 split)")
    device = resolve_device(args.device)
    variant = "irregular" if args.irregular else "regular"
    t0 = time.perf_counter()
    print(
        f"device: {describe_device(device)}; {variant} phantoms {args.size}^3, "
        f"{args.n_train} train / {args.n_test} test; {args.steps} steps per model",
        file=sys.stderr,
    )
    train, test = benchmark.make_split(
        args.n_train, args.n_test, size=args.size, irregular=args.irregular, seed=args.seed
    )
    config = TrainConfig(steps=args.steps, device=str(device), seed=args.seed)
    trained: dict = {}
    results = [
        benchmark.run_method(
            m,
            train,
            test,
            train_config=config,
            device=device,
            seed=args.seed,
            log=lambda s: print(s, file=sys.stderr),
            trained=trained,
        )
        for m in methods
    ]
    wall = time.perf_counter() - t0
    table = benchmark.markdown_table(results, variant)
    print(table)
    body = (
        f"**{variant.capitalize()} phantoms** — `hypseg bench{' --irregular' if args.irregular else ''} "
        f"--n-train {args.n_train} --n-test {args.n_test} --steps {args.steps}` on {describe_device(device)}, "
        f"wall time {wall / 60:.1f} min. Mean ± sd Dice over the test phantoms after Hungarian matching.\n\n{table}"
    )
    if str(args.report).lower() != "none":
        update_report(args.report, variant, body)
        print(f"updated {args.report}", file=sys.stderr)
    return 0


def run_suite(args: argparse.Namespace) -> int:
    from .._device import describe_device, resolve_device
    from ..quality.cases import suite_cases, sweep_cases
    from ..quality.report import markdown
    from ..quality.suite import FUSED, OURS, default_pipeline, run_case
    from ..segmentation.fusion import FusionConfig

    steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick else TrainConfig().steps)
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    if steps < 1 or n_seeds < 1:
        raise UserError("--steps and --seeds must be at least 1")
    device = resolve_device(args.device)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    seeds = [args.seed + i for i in range(n_seeds)]
    name = "generality sweep" if args.sweep else "quality suite"
    log(
        f"{name} ({'quick' if args.quick else 'full'}) on {describe_device(device)}: "
        + (f"{steps} training steps per model, " if args.fused else "")
        + f"seeds {seeds}"
    )
    train_config = TrainConfig(steps=steps, seed=args.seed)
    rows = {OURS: (default_pipeline(train_config, device=device, log=log), seeds)}
    if args.fused:
        # the fused row trains a model per case and seed and embeds every voxel (17 of the 21 minutes
        # of the full run's regular phantoms): opt-in, one seed
        rows[FUSED] = (
            default_pipeline(train_config, fusion=FusionConfig(embedding_weight=0.5), device=device, log=log),
            seeds[:1],
        )
    results = []
    cases = sweep_cases if args.sweep else suite_cases
    for case in cases(quick=args.quick, log=log):
        log(f"{case.name}: {len(case.volumes)} volume(s)")
        results.append(run_case(case, rows, seeds=seeds, log=log))
    wall = time.perf_counter() - t0
    # --steps only matters to the row that trains (the default row does not read the embedding)
    fused_flag = f" --fused --steps {steps}" if args.fused else ""
    command = (
        f"hypseg bench --suite{' --sweep' if args.sweep else ''}{' --quick' if args.quick else ''}{fused_flag} "
        f"--seeds {n_seeds}"
    )
    header = (
        f"`{command}` on {describe_device(device)}, wall time {wall / 60:.1f} min. Mean ± sd of the "
        f"Hungarian-matched mean Dice over volumes × seeds; the best baseline is chosen per case and level."
    )
    text = markdown(results, header)
    print(text)
    if str(args.report).lower() != "none":
        section = ("sweep" if args.sweep else "suite") + ("-quick" if args.quick else "")
        update_report(args.report, section, text)
        log(f"updated {args.report}")
    return 0
