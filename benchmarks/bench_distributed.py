"""1 vs 2 dask workers: volumes/hour of ``segment_dataset`` with one clustering, and the bytes moved.

N phantoms (default 8 of 40³) are written as MRC files and read blockwise by
the workers (:func:`napari_hypseg.segmentation.dataset.lazy_volume`). One
clustering is fitted first (in-process, not timed) and then every volume is
embedded and assigned with it on a fresh ``LocalCluster(n_workers=W,
processes=True, threads_per_worker=1)``; cluster start-up is timed separately.
The model is a default-sized, untrained ``HyperbolicVAE``: the embedding's
cost does not depend on the weights, and the clustering is fixed.

Each worker's torch gets cores / W threads (``worker_env``), as ``hypseg segment --workers`` does:
that compares W workers on the same machine, where one worker already uses every core.
``--torch-threads 1`` gives every worker one thread instead, the way a cluster adds workers
each with cores of its own: that measures how the distributed path scales with workers.

Bytes moved: what the workers sent each other (their ``transfer_outgoing_bytes_total``)
and what came back to this process (labels + embeddings).

``--big``: one volume at least ``--factor`` (4) times a worker's memory limit,
written as a float32 MRC and memory-mapped, segmented by ``hypseg segment
--clusters-from --format ome-zarr --scheduler`` on a ``LocalCluster`` of 2
worker processes with ``memory_limit`` (``--memory-limit``, MiB) each; a small
model (m = 3) and one level keep it within minutes on two cores. The
clustering is fitted beforehand on a 64³ corner (raw intensity: the one that
assigns block by block). Reported per worker: the peak resident memory
(the kernel's high-water mark ``VmHWM``, and the largest of samples every
0.25 s), beside the limit.

``--cli``: the same volumes through ``hypseg segment --clusters-from --scheduler`` (the
cluster started beforehand, its start timed apart), every output file written.

Usage::

    python benchmarks/bench_distributed.py            # 8 x 40^3
    python benchmarks/bench_distributed.py --repeats 3  # 1, 2, 1, 2, 1, 2 workers; median speed-up
    python benchmarks/bench_distributed.py --cli      # the same, through hypseg segment
    python benchmarks/bench_distributed.py --quick    # 8 x 24^3
    python benchmarks/bench_distributed.py --big      # one volume of 4 x 768 MiB on 2 workers of 768 MiB
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import _common  # noqa: F401 - puts src/ on the path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=None, help="block edge (default 24; 64 with --big)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--big", action="store_true", help="one volume of --factor x a worker's --memory-limit")
    ap.add_argument("--memory-limit", type=int, default=768, metavar="MIB", help="per worker, for --big")
    ap.add_argument("--factor", type=float, default=4.0, help="volume bytes / worker memory limit, for --big")
    ap.add_argument(
        "--torch-threads", type=int, default=None, help="torch threads per worker (default: cores / workers)"
    )
    ap.add_argument(
        "--cli",
        action="store_true",
        help="run `hypseg segment --clusters-from --scheduler` (outputs written) instead of segment_dataset",
    )
    ap.add_argument(
        "--fit",
        choices=("raw", "denoised"),
        default=None,
        help="--big: fit the clustering in the run, block by block, on this channel (default: a raw clustering "
        "fitted beforehand on a 64^3 corner, given with --clusters-from)",
    )
    ap.add_argument(
        "--no-preload",
        action="store_true",
        help="start the workers without hypseg's imports (as before 2026-12-02)",
    )
    ap.add_argument(
        "--repeats", type=int, default=1, help="rounds of every worker count, alternating; the median is reported"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.big:
        args.chunk = args.chunk or 64
        return big(args)
    args.chunk = args.chunk or 24
    size = 24 if args.quick else args.size

    from distributed import Client, LocalCluster

    from napari_hypseg.cli._dataset import worker_env
    from napari_hypseg.cluster import WORKER_PRELOAD
    from napari_hypseg.io import write_image
    from napari_hypseg.io.volume import Volume
    from napari_hypseg.model import HyperbolicVAE
    from napari_hypseg.segmentation.dataset import lazy_volume, segment_dataset
    from napari_hypseg.segmentation.dataset_clustering import fit_dataset_clustering
    from napari_hypseg.segmentation.embed import embed
    from napari_hypseg.synthetic import make_phantom

    torch.manual_seed(0)
    model = HyperbolicVAE().eval()
    tmp = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    volumes = []
    for i in range(args.n):
        image = make_phantom(size, seed=i).image.astype(np.float32)
        path = write_image(tmp / f"v{i}.mrc", image, like=Volume(image, format="mrc"))
        volumes.append((path, image))
    model.set_normalization(*np.percentile(volumes[0][1], [1, 99]))
    ks = [2, 4]
    clustering = fit_dataset_clustering(
        [v for _, v in volumes[:2]],
        [embed(v, model, device="cpu") for _, v in volumes[:2]],
        ks,
        latent_dim=model.config.latent_dim,
        seed=0,
        sample_size=20_000,
    )
    print(
        f"{args.n} volumes of {size}^3, chunk {args.chunk}, model patch {model.patch_size}, "
        f"torch threads per worker {args.torch_threads or 'cores / workers'}"
        + (", through hypseg segment (MRC outputs written)" if args.cli else "")
    )
    if args.cli:
        from napari_hypseg.cli import main as cli
        from napari_hypseg.model.checkpoint import save_checkpoint

        clusters = clustering.save(tmp / "clusters.npz")
        model_path = save_checkpoint(tmp / "m.pt", model)

    def run_once(w: int, repeat: int) -> dict:
        t0 = time.perf_counter()
        # the workers import this checkout too, not another installed copy
        env = {**worker_env(w), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        with (
            LocalCluster(
                n_workers=w,
                processes=True,
                threads_per_worker=1,
                dashboard_address=None,
                env=env,
                preload=[] if args.no_preload else [WORKER_PRELOAD],  # as `hypseg segment --workers` does
            ) as cluster,
            Client(cluster) as client,
        ):
            start = time.perf_counter() - t0
            t1 = time.perf_counter()
            if args.cli:
                code = cli(
                    ["segment", *(str(p) for p, _ in volumes), "--model", str(model_path)]
                    + ["--clusters", ",".join(map(str, ks)), "--clusters-from", str(clusters), "--device", "cpu"]
                    # a folder of its own per round: a volume already complete in it would be skipped
                    + ["--out-dir", str(tmp / f"out{w}_{repeat}"), "--scheduler", cluster.scheduler_address]
                    + ["--chunk", str(args.chunk)]
                )
                assert code == 0, f"hypseg segment exited with {code}"
                back = 0  # written by the workers into scratch zarrs, read back from disk
            else:
                arrays = [lazy_volume(p, v.shape, v.dtype, args.chunk) for p, v in volumes]
                _, labels, embeddings = segment_dataset(
                    arrays, model, ks, clustering=clustering, client=client, chunks=args.chunk
                )
                back = sum(e.nbytes for e in embeddings) + sum(a.nbytes for lv in labels for a in lv.values())
            seconds = time.perf_counter() - t1
            sent = client.run(lambda dask_worker: getattr(dask_worker, "transfer_outgoing_bytes_total", 0))
        r = {
            "seconds": seconds,
            "startup_s": start,
            "volumes_per_hour": args.n / seconds * 3600,
            "worker_to_worker_bytes": int(sum(sent.values())),
            "to_client_bytes": int(back),
        }
        print(
            f"{w} worker(s): {seconds:.1f} s ({r['volumes_per_hour']:.0f} volumes/hour; "
            f"cluster start {start:.1f} s), "
            f"worker-to-worker {r['worker_to_worker_bytes'] / 2**20:.1f} MiB, to this process {back / 2**20:.1f} MiB",
            flush=True,
        )
        return r

    counts = [int(v) for v in args.workers.split(",")]
    # the worker counts alternate, so a machine that slows down or speeds up mid-run affects them alike
    results: dict[int, list[dict]] = {w: [] for w in counts}
    for repeat in range(args.repeats):
        for w in counts:
            results[w].append(run_once(w, repeat))
        if len(counts) >= 2:
            a, b = sorted(counts)[:2]
            print(
                f"speed-up {b} vs {a} worker(s), round {repeat + 1}: "
                f"{results[a][-1]['seconds'] / results[b][-1]['seconds']:.2f}x",
                flush=True,
            )
    if len(counts) >= 2 and args.repeats > 1:
        a, b = sorted(counts)[:2]
        ratios = [x["seconds"] / y["seconds"] for x, y in zip(results[a], results[b])]
        median = float(np.median([x["seconds"] for x in results[a]]) / np.median([y["seconds"] for y in results[b]]))
        print(
            f"speed-up {b} vs {a} worker(s) over {args.repeats} rounds: median times {median:.2f}x; "
            f"per round {', '.join(f'{v:.2f}' for v in ratios)} "
            f"(mean {np.mean(ratios):.2f} ± {np.std(ratios, ddof=1):.2f})"
        )
    if args.json:
        args.json.write_text(
            json.dumps(results if args.repeats > 1 else {w: r[0] for w, r in results.items()}, indent=2)
        )


def _write_big_mrc(path: Path, shape: tuple[int, int, int]) -> None:
    """Balls 4 sd bright on a 64-voxel grid in unit noise, written slab by slab into a memory-mapped MRC."""
    import mrcfile

    rng = np.random.default_rng(0)
    y, x = np.indices(shape[1:])
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        mrc.voxel_size = 1.0
        for z0 in range(0, shape[0], 16):
            z = np.arange(z0, min(z0 + 16, shape[0]))[:, None, None]
            inside = ((z % 64 - 32) ** 2 + (y % 64 - 32) ** 2 + (x % 64 - 32) ** 2) < 20**2
            mrc.data[z0 : z0 + len(z)] = inside.astype(np.float32) * 4 + rng.normal(size=(len(z), *shape[1:]))


def _peak_rss(dask_worker=None) -> dict:
    """This process's resident memory now, its high-water mark and its anonymous part (Linux's /proc), in bytes."""
    import psutil

    status = Path("/proc/self/status")
    fields = {}
    if status.exists():
        for line in status.read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "RssAnon"):
                fields[name] = int(value.split()[0]) * 1024
    return {"rss": psutil.Process().memory_info().rss, "hwm": fields.get("VmHWM"), "anon": fields.get("RssAnon")}


def big(args) -> None:
    """A volume >= factor x a worker's memory limit through ``hypseg segment``, peak memory per worker."""
    from distributed import Client, LocalCluster

    from napari_hypseg.cli import main as cli
    from napari_hypseg.cli._dataset import worker_env
    from napari_hypseg.model import HyperbolicVAE, ModelConfig
    from napari_hypseg.model.checkpoint import save_checkpoint
    from napari_hypseg.segmentation.dataset_clustering import fit_dataset_clustering
    from napari_hypseg.segmentation.embed import embed
    from napari_hypseg.segmentation.fusion import FusionConfig

    limit = args.memory_limit * 2**20
    voxels = int(np.ceil(args.factor * limit / 4))
    edge = int(np.ceil(voxels ** (1 / 3)))
    shape = (edge, edge, edge)
    tmp = Path(tempfile.mkdtemp(prefix="bench_distributed_big_"))
    try:
        t0 = time.perf_counter()
        path = tmp / "big.mrc"
        _write_big_mrc(path, shape)
        written_s = time.perf_counter() - t0
        torch.manual_seed(0)
        model = HyperbolicVAE(ModelConfig(channels=(4,), kernel_size=3, hidden=8)).eval()  # m = 3
        model.set_normalization(-2.0, 4.0)
        clusters = tmp / "clusters.npz"
        if args.fit is None:
            import mrcfile

            with mrcfile.mmap(path, permissive=True) as mrc:
                corner = np.array(mrc.data[:64, :64, :64])
            fit_dataset_clustering(
                [corner],
                [embed(corner, model, device="cpu")],
                [2],
                latent_dim=model.config.latent_dim,
                fusion=FusionConfig(intensity="raw"),
                seed=0,
                sample_size=50_000,
            ).save(clusters)
            clustering_args = ["--clusters-from", str(clusters)]
        else:  # fitted by the run itself on a sample read block by block
            clustering_args = ["--intensity", args.fit, "--save-clusters", str(clusters)]
        model_path = save_checkpoint(tmp / "m.pt", model)
        nbytes = int(np.prod(shape)) * 4
        print(
            f"volume {shape} float32 = {nbytes / 2**20:.0f} MiB ({nbytes / limit:.2f} x the {args.memory_limit} MiB "
            f"limit of each of 2 workers), written in {written_s:.0f} s; model m = {model.patch_size}, level 2, "
            f"chunk {args.chunk}; clustering: {'fitted in the run, ' + args.fit if args.fit else 'given (raw)'}"
        )
        env = {**worker_env(2), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        with (
            LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, memory_limit=limit, dashboard_address=None, env=env
            ) as cluster,
            Client(cluster) as client,
        ):
            baseline = client.run(_peak_rss)
            peaks = {w: 0 for w in baseline}
            client_peak = [_peak_rss()["anon"] or 0]
            done = threading.Event()

            def sample():
                while not done.wait(0.25):
                    try:
                        for w, r in client.run(_peak_rss).items():
                            peaks[w] = max(peaks[w], r["rss"])
                    except Exception:  # noqa: BLE001 - a sample lost while the run ends
                        pass
                    client_peak.append(_peak_rss()["anon"] or 0)  # not the memory-mapped embedding's file pages

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t1 = time.perf_counter()
            code = cli(
                [
                    "segment",
                    str(path),
                    "--model",
                    str(model_path),
                    "--clusters",
                    "2",
                    "--out-dir",
                    str(tmp / "out"),
                    *clustering_args,
                    "--format",
                    "ome-zarr",
                    "--device",
                    "cpu",
                    "--scheduler",
                    cluster.scheduler_address,
                    "--chunk",
                    str(args.chunk),
                ]
            )
            seconds = time.perf_counter() - t1
            done.set()
            sampler.join()
            final = client.run(_peak_rss)
        assert code == 0, f"hypseg segment exited with {code}"
        import dask.array as da

        labels = da.from_zarr(str(tmp / "out" / "big_labels.ome.zarr" / "labels" / "hypseg_k2" / "0"))
        counts = np.bincount(labels.ravel().compute(scheduler="threads"), minlength=3)
        results = {
            "shape": list(shape),
            "volume_bytes": nbytes,
            "memory_limit_bytes": limit,
            "seconds": seconds,
            "voxels_per_second": int(np.prod(shape)) / seconds,
            "label_counts": counts.tolist(),
            "clustering": args.fit or "given (raw)",
            "client_peak_anon_bytes": max(client_peak),
            "workers": {},
        }
        for i, w in enumerate(sorted(final)):
            results["workers"][f"worker {i}"] = {
                "baseline_rss": baseline[w]["rss"],
                "sampled_peak_rss": peaks[w],
                "vmhwm": final[w]["hwm"],
            }
            print(
                f"worker {i}: peak {final[w]['hwm'] / 2**20:.0f} MiB (VmHWM; sampled {peaks[w] / 2**20:.0f} MiB, "
                f"{baseline[w]['rss'] / 2**20:.0f} MiB idle before the run) of its {args.memory_limit} MiB limit"
            )
        print(
            f"segmented in {seconds:.0f} s ({results['voxels_per_second'] / 1e6:.2f} Mvoxel/s); labels 1/2: "
            f"{counts[1]} / {counts[2]}; this process's peak {max(client_peak) / 2**20:.0f} MiB (anonymous, sampled)"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
