"""Many volumes: one ``hypseg segment 'dir/*.mrc'`` (prefetching the next file) against one process per file.

Goal (issue 7): ``hypseg segment`` accepts many files or a glob and keeps the
device busy between volumes (loading the next volume overlaps the current
one's compute). Report volumes/hour.

N phantoms (default 6 of 96³) are written as MRC files. The model is
``--model`` (e.g. the one ``bench_training.py --save-model`` keeps), or else
one trained briefly on the first phantom. The embedding network's cost does
not depend on the weights, but clustering does: a barely trained encoder
maps every voxel to nearly the same point and k-means then needs many more
iterations than on the well-spread embeddings of a trained one.

- ours: ``hypseg segment 'DIR/*.mrc' --model M.pt --clusters 2,4,8 --out-dir A``,
  one process, the next file read in a background thread;
- baseline: a shell-style loop, ``hypseg segment FILE ...`` once per file
  (a fresh process each time: interpreter, torch import, model load, no overlap).

Usage::

    python benchmarks/bench_many_volumes.py              # 6 × 96³
    python benchmarks/bench_many_volumes.py --model trained.pt
    python benchmarks/bench_many_volumes.py --quick      # 2 × 40³
    python benchmarks/bench_many_volumes.py --n 12 --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, device_name  # noqa: E402  (also puts src/ on sys.path)
from napari_hypseg._device import resolve_device  # noqa: E402
from napari_hypseg.io import read_volume, write_image  # noqa: E402
from napari_hypseg.io.volume import Volume  # noqa: E402
from napari_hypseg.synthetic import make_phantom  # noqa: E402
from napari_hypseg.training import TrainConfig, Trainer  # noqa: E402


def hypseg(args: list[str]) -> float:
    """Run ``hypseg ARGS`` as a fresh process; return its wall time."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "napari_hypseg", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"hypseg {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def outputs_ok(sources: list[Path], out_dir: Path, ks) -> bool:
    for src in sources:
        shape = read_volume(src).data.shape
        for k in ks:
            if read_volume(out_dir / f"{src.stem}_k{k}.mrc").data.shape != shape:
                return False
        if not (out_dir / f"{src.stem}_embedding.npy").exists():
            return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=6, help="number of volumes (default %(default)s)")
    parser.add_argument("--size", type=int, default=96, help="phantom edge in voxels (default %(default)s)")
    parser.add_argument("--clusters", default="2,4,8")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", type=Path, default=None, help="a trained model file (default: train one briefly)")
    parser.add_argument(
        "--train-steps", type=int, default=60, help="steps of the model trained without --model (default %(default)s)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    n, size = (2, 40) if args.quick else (args.n, args.size)
    if args.quick:
        args.train_steps, args.clusters = min(args.train_steps, 2), "2,3"
    device = resolve_device(args.device)
    ks = [int(k) for k in args.clusters.split(",")]
    print(f"device: {device_name(device)}")
    print(f"{n} phantoms of {size}³ voxels; clusters {args.clusters}")

    tmp = Path(tempfile.mkdtemp(prefix="hypseg-bench-many-"))
    try:
        vol_dir = tmp / "volumes"
        vol_dir.mkdir()
        sources = []
        for i in range(n):
            image = make_phantom(size, seed=100 + i).image
            geometry = Volume(image, affine=np.diag([10.0, 10.0, 10.0, 1.0]), format="mrc")
            sources.append(write_image(vol_dir / f"cell{i:02d}.mrc", image, like=geometry))
        if args.model is not None:
            model = args.model
            print(f"model: {model}")
        else:
            first = read_volume(sources[0]).data
            trainer = Trainer(
                [np.asarray(first)],
                train_config=TrainConfig(
                    steps=max(1, args.train_steps),
                    device=str(device),
                    preview_every=0,
                    log_every=max(1, args.train_steps),
                ),
            )
            trainer.fit()
            model = trainer.save(tmp / "model.pt")
            print(f"model: paper architecture, {trainer.step} training steps on the first phantom")
        common = ["--model", str(model), "--clusters", args.clusters, "--device", str(device)]

        t_ours = hypseg(["segment", str(vol_dir / "*.mrc"), "--out-dir", str(tmp / "ours"), *common])
        t_base = 0.0
        per_file = []
        for src in sources:
            per_file.append(hypseg(["segment", str(src), "--out-dir", str(tmp / "loop"), *common]))
            t_base += per_file[-1]
        ok = outputs_ok(sources, tmp / "ours", ks) and outputs_ok(sources, tmp / "loop", ks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "device": device_name(device),
        "n": n,
        "size": size,
        "ours_s": t_ours,
        "baseline_s": t_base,
        "baseline_per_file_s": per_file,
        "ours_volumes_per_hour": 3600 * n / t_ours,
        "baseline_volumes_per_hour": 3600 * n / t_base,
        "ratio": t_base / t_ours,
        "outputs_ok": ok,
    }
    print(
        f"\nours  one process over the glob (prefetch): {t_ours:.1f} s -> "
        f"{result['ours_volumes_per_hour']:.0f} volumes/hour"
    )
    print(
        f"base  one process per file: {t_base:.1f} s (per file {', '.join(f'{t:.1f}' for t in per_file)}) "
        f"-> {result['baseline_volumes_per_hour']:.0f} volumes/hour"
    )
    print(f"ratio baseline / ours: {result['ratio']:.2f}x; outputs {'OK' if ok else 'WRONG'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
