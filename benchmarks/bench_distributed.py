"""1 vs 2 dask workers: volumes/hour of ``segment_dataset`` with one clustering, and the bytes moved.

N phantoms (default 8 of 40³) are written as MRC files and read blockwise by
the workers (:func:`napari_hypseg.segmentation.dataset.lazy_volume`). One
clustering is fitted first (in-process, not timed) and then every volume is
embedded and assigned with it on a fresh ``LocalCluster(n_workers=W,
processes=True, threads_per_worker=1)``; cluster start-up is timed separately.
The model is a default-sized, untrained ``HyperbolicVAE``: the embedding's
cost does not depend on the weights, and the clustering is fixed.

Each worker's torch gets cores / W threads (``worker_env``), as ``hypseg segment --workers`` does.

Bytes moved: what the workers sent each other (their ``transfer_outgoing_bytes_total``)
and what came back to this process (labels + embeddings).

Usage::

    python benchmarks/bench_distributed.py            # 8 x 40^3
    python benchmarks/bench_distributed.py --quick    # 8 x 24^3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _common  # noqa: F401 - puts src/ on the path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--chunk", type=int, default=24)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    size = 24 if args.quick else args.size

    from distributed import Client, LocalCluster

    from napari_hypseg.cli._dataset import worker_env
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
    clustering = fit_dataset_clustering([v for _, v in volumes[:2]], [embed(v, model, device="cpu") for _, v in volumes[:2]],
                                        ks, latent_dim=model.config.latent_dim, seed=0, sample_size=20_000)
    print(f"{args.n} volumes of {size}^3, chunk {args.chunk}, model patch {model.patch_size}, "
          f"torch threads {torch.get_num_threads()}")
    results = {}
    for w in [int(v) for v in args.workers.split(",")]:
        t0 = time.perf_counter()
        with LocalCluster(n_workers=w, processes=True, threads_per_worker=1, dashboard_address=None,
                          env=worker_env(w)) as cluster, \
                Client(cluster) as client:
            start = time.perf_counter() - t0
            arrays = [lazy_volume(p, v.shape, v.dtype, args.chunk) for p, v in volumes]
            t1 = time.perf_counter()
            _, labels, embeddings = segment_dataset(arrays, model, ks, clustering=clustering, client=client,
                                                    chunks=args.chunk)
            seconds = time.perf_counter() - t1
            sent = client.run(lambda dask_worker: getattr(dask_worker, "transfer_outgoing_bytes_total", 0))
        back = sum(e.nbytes for e in embeddings) + sum(a.nbytes for lv in labels for a in lv.values())
        results[w] = {"seconds": seconds, "startup_s": start, "volumes_per_hour": args.n / seconds * 3600,
                      "worker_to_worker_bytes": int(sum(sent.values())), "to_client_bytes": int(back)}
        r = results[w]
        print(f"{w} worker(s): {seconds:.1f} s ({r['volumes_per_hour']:.0f} volumes/hour; cluster start {start:.1f} s), "
              f"worker-to-worker {r['worker_to_worker_bytes'] / 2**20:.1f} MiB, to this process {back / 2**20:.1f} MiB")
    if len(results) >= 2:
        a, b = sorted(results)[:2]
        print(f"speed-up {b} vs {a} worker(s): {results[a]['seconds'] / results[b]['seconds']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
