"""Bounded memory: a 1024×1024×512 float32 tomogram (2 GiB) through ``hypseg segment --bin 4``.

Goal (issue 7): the 2 GiB tomogram goes through ``hypseg segment`` on a
24 GiB machine without running out of memory (memory-mapped input, chunked
output); GPU peak ≤ 8 GiB for any volume size.

What it does:

1. writes a (Z, Y, X) = (512, 1024, 1024) float32 MRC with
   ``mrcfile.new_mmap``, slab by slab (a cheap pattern of blobs plus noise,
   so it is not constant), into a temporary folder that is deleted at the end;
2. saves a freshly initialised paper model (weights do not matter for memory
   or time, only the architecture does);
3. runs ``hypseg segment BIG.mrc --model M.pt --clusters 2,4,8 --bin 4`` as a
   subprocess and records its peak resident memory (``wait4`` rusage, plus a
   1 s ``/proc`` sampler that also logs how far it got), wall time, and checks
   the outputs: full-resolution label files with the source's shape and voxel
   size, and the binned embedding.

Baseline: the memory an in-RAM run at full resolution would need for the
input plus its float32 embedding, *computed from the shapes* (not run).

On a GPU it also measures ``torch.cuda.max_memory_allocated`` of a
full-resolution chunked ``embed`` of a 512³ region (goal ≤ 8 GiB).

Usage::

    python benchmarks/bench_memory.py                       # the full 2 GiB case
    python benchmarks/bench_memory.py --quick               # 128×256×256, seconds to a minute
    python benchmarks/bench_memory.py --shape 256,512,512 --max-minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import torch

from _common import ROOT, device_name  # noqa: E402  (also puts src/ on sys.path)
from napari_hypseg._device import resolve_device  # noqa: E402
from napari_hypseg.io import read_volume  # noqa: E402
from napari_hypseg.model import HyperbolicVAE, ModelConfig, save_checkpoint  # noqa: E402
from napari_hypseg.segmentation.binning import binned_shape  # noqa: E402
from napari_hypseg.segmentation.embed import embed  # noqa: E402

GiB = 1024**3
VOXEL_SIZE = 13.48  # Å, a typical binned cryo-ET pixel


def mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return int(line.split()[1]) * 1024 / GiB
    return float("nan")


# -- inputs -----------------------------------------------------------------------


def write_tomogram(path: Path, shape, *, seed: int = 0, slab: int = 8) -> float:
    """Fill a new memory-mapped float32 MRC slab by slab; return seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    z_n, y_n, x_n = shape
    y = np.arange(y_n, dtype=np.float32)[:, None]
    x = np.arange(x_n, dtype=np.float32)[None, :]
    # a lattice of soft blobs (cells) whose size drifts with z, plus a membrane-like wave
    period = max(16.0, min(y_n, x_n) / 8)
    plane = np.cos(2 * np.pi * y / period) * np.cos(2 * np.pi * x / period)
    wave = np.sin(2 * np.pi * (x + 0.5 * y) / (3.7 * period)).astype(np.float32)
    with mrcfile.new_mmap(path, shape=tuple(shape), mrc_mode=2, overwrite=True) as mrc:
        for z0 in range(0, z_n, slab):
            z1 = min(z_n, z0 + slab)
            level = 0.3 + 0.4 * np.sin(np.pi * (np.arange(z0, z1, dtype=np.float32) / z_n))[:, None, None]
            block = (plane[None] > level).astype(np.float32) + 0.3 * wave[None]
            block += rng.standard_normal(block.shape, dtype=np.float32) * 0.5
            mrc.data[z0:z1] = block
        mrc.voxel_size = VOXEL_SIZE
    return time.perf_counter() - t0


def write_model(path: Path, tomogram: Path) -> None:
    torch.manual_seed(0)
    model = HyperbolicVAE(ModelConfig())
    with mrcfile.mmap(tomogram, permissive=True) as mrc:
        sample = np.asarray(mrc.data[:: max(1, mrc.data.shape[0] // 8), ::4, ::4], dtype=np.float32)
    model.set_normalization(*np.percentile(sample, [1, 99]))
    save_checkpoint(path, model)


# -- the subprocess -----------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples the child's memory from /proc once a second and timestamps its progress lines.

    ``RssFile`` counts the pages of memory-mapped files the process has
    touched (the input tomogram): clean page cache that the kernel drops
    under pressure. ``RssAnon`` is the memory the process really owns.
    """

    def __init__(self, pid: int, log: Path, t0: float):
        super().__init__(daemon=True)
        self.pid, self.log, self.t0 = pid, log, t0
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.rss_trace: list[tuple[float, float, float]] = []  # (s, RSS GiB, anonymous GiB)
        self.lines: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def _status(self) -> dict[str, int]:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return {}
        return {key: int(m.group(1)) * 1024 for key in self.peak if (m := re.search(rf"{key}:\s+(\d+) kB", status))}

    def run(self) -> None:
        seen = 0
        while True:
            stopping = self.stop.is_set()  # one last pass after the child exited picks up its final lines
            mem = self._status()
            now = time.perf_counter() - self.t0
            for key, value in mem.items():
                self.peak[key] = max(self.peak[key], value)
            if mem:
                self.rss_trace.append((now, mem.get("VmRSS", 0) / GiB, mem.get("RssAnon", 0) / GiB))
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            for line in re.split(r"[\r\n]", text[seen:]):
                if line.strip():
                    self.lines.append((now, line.strip()))
            seen = len(text)
            if stopping:
                return
            self.stop.wait(1.0)


def run_segment(
    tomogram: Path,
    model: Path,
    out_dir: Path,
    *,
    binning: int,
    clusters: str,
    device: str,
    max_minutes: float,
    log: Path,
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "napari_hypseg",
        "segment",
        str(tomogram),
        "--model",
        str(model),
        "--clusters",
        clusters,
        "--bin",
        str(binning),
        "--out-dir",
        str(out_dir),
        "--device",
        device,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    print("running: hypseg " + " ".join(cmd[3:]), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        monitor = Monitor(proc.pid, log, t0)
        monitor.start()
        timer = threading.Timer(60 * max_minutes, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    monitor.stop.set()
    monitor.join()
    return {
        "returncode": proc.returncode,
        "timed_out": proc.returncode == -9,
        "wall_s": wall,
        "peak_rss_gib": usage.ru_maxrss * 1024 / GiB,  # Linux reports kB
        "peak_rss_sampled_gib": monitor.peak["VmRSS"] / GiB,
        "peak_anon_sampled_gib": monitor.peak["RssAnon"] / GiB,
        "peak_file_sampled_gib": monitor.peak["RssFile"] / GiB,
        "progress": monitor.lines,
        "rss_trace": monitor.rss_trace[:: max(1, len(monitor.rss_trace) // 200)],
    }


def stage_times(lines: list[tuple[float, str]]) -> dict[str, float]:
    """First time each stage (embed, cluster) was reported, and the last progress line's time."""
    first: dict[str, float] = {}
    for t, line in lines:
        for stage in ("embed", "cluster"):
            if line.endswith(stage) and stage not in first:
                first[stage] = t
        if "label files in" in line:
            first["labels_written"] = t
    return first


def last_progress(lines) -> tuple[float, str] | None:
    return next(((t, line) for t, line in reversed(lines) if "%" in line), None)


def check_outputs(tomogram: Path, out_dir: Path, ks, binning: int) -> list[str]:
    """Problems found in the outputs (empty when every file has the right shape and voxel size)."""
    src = read_volume(tomogram)
    problems = []
    stem = tomogram.stem
    for k in ks:
        path = out_dir / f"{stem}_k{k}.mrc"
        if not path.exists():
            problems.append(f"{path.name} missing")
            continue
        out = read_volume(path)
        if out.data.shape != src.data.shape:
            problems.append(f"{path.name}: shape {out.data.shape} != {src.data.shape}")
        if not np.allclose(out.spacing, src.spacing):
            problems.append(f"{path.name}: voxel size {out.spacing} != {src.spacing}")
        centre = np.asarray(out.data[out.data.shape[0] // 2])
        if len(np.unique(centre)) < 2:
            problems.append(f"{path.name}: the central slice holds a single label")
    emb = out_dir / f"{stem}_embedding.npy"
    if not emb.exists():
        problems.append(f"{emb.name} missing")
    else:
        shape = np.load(emb, mmap_mode="r").shape
        if shape != (*binned_shape(src.data.shape, binning), 2):
            problems.append(f"{emb.name}: shape {shape}")
    return problems


def gpu_region_peak(device: torch.device, edge: int) -> dict:
    """torch peak of a full-resolution chunked embed of an edge³ region (paper model)."""
    torch.manual_seed(0)
    model = HyperbolicVAE(ModelConfig()).to(device).eval()
    region = np.random.default_rng(0).normal(size=(edge,) * 3).astype(np.float32)
    embed(region[:32, :32, :32], model, device=device)  # warm-up
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    embed(region, model, device=device)
    torch.cuda.synchronize(device)
    return {
        "edge": edge,
        "seconds": time.perf_counter() - t0,
        "max_memory_allocated_gib": torch.cuda.max_memory_allocated(device) / GiB,
        "max_memory_reserved_gib": torch.cuda.max_memory_reserved(device) / GiB,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="512,1024,1024", help="Z,Y,X of the tomogram (default %(default)s = 2 GiB)")
    parser.add_argument("--size", dest="shape", help="alias of --shape")
    parser.add_argument("--bin", type=int, default=4, dest="binning")
    parser.add_argument("--clusters", default="2,4,8")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="kill the segment run after this long")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the tomogram goes (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--gpu-region", type=int, default=512, help="edge of the GPU full-resolution region (default %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="128×256×256, a smoke run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    shape = (128, 256, 256) if args.quick else tuple(int(v) for v in args.shape.split(","))
    device = resolve_device(args.device)
    ks = [int(k) for k in args.clusters.split(",")]
    n_vox = int(np.prod(shape))
    print(f"device: {device_name(device)}; RAM {mem_total_gib():.1f} GiB")
    print(
        f"tomogram (Z, Y, X) = {shape} float32 = {n_vox * 4 / GiB:.2f} GiB; --bin {args.binning} -> "
        f"embedding grid {binned_shape(shape, args.binning)}; clusters {args.clusters}"
    )

    result: dict = {
        "device": device_name(device),
        "ram_gib": mem_total_gib(),
        "shape": list(shape),
        "bin": args.binning,
    }
    tmp = Path(tempfile.mkdtemp(prefix="hypseg-bench-mem-", dir=args.tmp_dir))
    try:
        tomogram, model, out_dir, log = tmp / "BIG.mrc", tmp / "model.pt", tmp / "out", tmp / "segment.log"
        result["write_s"] = write_tomogram(tomogram, shape)
        print(f"wrote {tomogram} ({tomogram.stat().st_size / GiB:.2f} GiB) in {result['write_s']:.0f} s")
        write_model(model, tomogram)
        print("model: paper architecture, fresh weights (memory and time do not depend on the weights)")

        run = run_segment(
            tomogram,
            model,
            out_dir,
            binning=args.binning,
            clusters=args.clusters,
            device=str(device),
            max_minutes=args.max_minutes,
            log=log,
        )
        result.update({k: v for k, v in run.items() if k != "progress"})
        result["progress_lines"] = [f"{t:7.1f} s  {line}" for t, line in run["progress"]]
        result["stages"] = stage_times(run["progress"])
        baseline = n_vox * 4 + n_vox * 2 * 4  # in-RAM input + full-resolution float32 embedding (d = 2)
        result["baseline_in_ram_gib"] = baseline / GiB

        print(
            f"\nours  hypseg segment --bin {args.binning}: exit {run['returncode']}, wall {run['wall_s']:.0f} s, "
            f"peak RSS {run['peak_rss_gib']:.2f} GiB (wait4 ru_maxrss)"
        )
        print(
            f"      1 s /proc samples: peak RSS {run['peak_rss_sampled_gib']:.2f} GiB, of which anonymous at most "
            f"{run['peak_anon_sampled_gib']:.2f} GiB; file-backed pages "
            "(the memory-mapped input and shared libraries, reclaimable) at most "
            f"{run['peak_file_sampled_gib']:.2f} GiB"
        )
        for name, t in result["stages"].items():
            print(f"      {name} first reported at {t:.0f} s")
        print(
            f"base  in-RAM full-resolution run needs >= {baseline / GiB:.1f} GiB "
            f"(input {n_vox * 4 / GiB:.1f} + float32 embedding {n_vox * 8 / GiB:.1f}; COMPUTED from shapes, not run)"
        )
        anon = run["peak_anon_sampled_gib"]
        print(
            f"ratio baseline / ours: {baseline / GiB / run['peak_rss_gib']:.1f}x on peak RSS"
            + (f", {baseline / GiB / anon:.1f}x on peak anonymous memory" if anon else "")
        )
        if run["returncode"] == 0:
            result["problems"] = check_outputs(tomogram, out_dir, ks, args.binning)
            print(
                "outputs: "
                + (
                    "OK - full-resolution labels with the source shape and voxel size, binned embedding"
                    if not result["problems"]
                    else "; ".join(result["problems"])
                )
            )
            print(f"throughput: {3600 / run['wall_s']:.1f} such tomograms/hour")
        else:
            last = last_progress(run["progress"])
            why = "killed at the time limit" if run["timed_out"] else "failed"
            print(f"segment {why}; last progress line at {last[0]:.0f} s: {last[1]!r}" if last else f"segment {why}")
            if last:
                frac = re.search(r"(\d+)%", last[1])
                if frac and int(frac.group(1)) > 0:
                    projected = last[0] / (int(frac.group(1)) / 100)
                    result["projected_stage_s"] = projected
                    print(f"projected total of that stage from its rate: {projected:.0f} s")
            print(log.read_text()[-2000:])
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if device.type == "cuda":
        gpu = gpu_region_peak(device, args.gpu_region)
        result["gpu_region"] = gpu
        print(
            f"\nGPU full-resolution chunked embed of {gpu['edge']}³: {gpu['seconds']:.2f} s, torch peak allocated "
            f"{gpu['max_memory_allocated_gib']:.2f} GiB (reserved {gpu['max_memory_reserved_gib']:.2f}); goal <= 8 GiB"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result.get("returncode") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
