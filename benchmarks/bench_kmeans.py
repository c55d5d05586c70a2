"""Clustering speed: Poincaré k-means on 10 M embeddings, and switching hierarchy levels at 256³.

Goals (issue 7): Poincaré k-means on 10 million embeddings in ≤ 2 s on the
GPU; switching hierarchy levels in ≤ 100 ms for a 256³ volume.

1. **k-means (k = 8) on 10 M points** of a few blobs on the Poincaré disk.
   Ours: :func:`~napari_hypseg.segmentation.kmeans.poincare_kmeans` with its
   defaults (4 k-means++ inits and Lloyd on a 200 k subsample, then every
   point assigned in batches). Baseline: a plain numpy Lloyd loop with the
   same Poincaré distance (arcosh form) and the same Fréchet-mean update
   (Lou et al. fixed point, 3 steps per iteration, one cluster at a time) on
   all 10 M points, one random init, for as many iterations as our selected
   init took. A scipy ``kmeans2`` (Euclidean) run with the same iterations
   is printed as a reference speed only, not as a like-for-like baseline.
2. **Level switching**: :func:`~napari_hypseg.segmentation.hierarchy.build_hierarchy`
   on a (256, 256, 256, 2) embedding (k = 2 … 16, nested), then the latency
   of ``Hierarchy.labels(k)`` over all levels. Baseline: re-running k-means
   for one k (k = 8) on the same embedding.

Usage::

    python benchmarks/bench_kmeans.py            # 10 M points, 256³
    python benchmarks/bench_kmeans.py --quick    # 200 k points, 48³
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _common import device_name, timed  # noqa: E402  (also puts src/ on sys.path)
from napari_hypseg._device import resolve_device  # noqa: E402
from napari_hypseg.segmentation.kmeans import poincare_kmeans  # noqa: E402

# -- data ------------------------------------------------------------------------------


def blob_points(labels: np.ndarray, n_blobs: int, *, seed: int = 0, spread: float = 0.25) -> np.ndarray:
    """Points on the Poincaré disk: blob ``labels[i]``'s tangent centre plus noise, mapped by exp_0.

    Centres sit at tangent radius 1 … 2.5 (Euclidean radius 0.76 … 0.99),
    like a trained encoder's embeddings. Returns ``(*labels.shape, 2)`` float32.
    """
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(n_blobs) / n_blobs + rng.uniform(0, 0.3, n_blobs)
    radii = rng.uniform(1.0, 2.5, n_blobs)
    centres = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1).astype(np.float32)
    v = centres[labels] + rng.standard_normal((*labels.shape, 2), dtype=np.float32) * np.float32(spread)
    norm = np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)
    return (np.tanh(norm) * v / norm).astype(np.float32)  # exp_0 on the ball of curvature -1


# -- the numpy baseline ------------------------------------------------------------------


def _frechet_step(pts: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One Lou et al. fixed-point step of the Fréchet mean of ``pts`` from ``y`` (curvature -1)."""
    sq = (pts * pts).sum(1)
    u = ((pts - y) ** 2).sum(1) / ((1 - sq) * (1 - y @ y))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(u > 1e-12, 2 * np.arccosh(1 + 2 * u) / np.sqrt(u * u + u), 4.0)
    alpha = g / (1 - sq)
    a, b, c = alpha.sum(), (alpha[:, None] * pts).sum(0), (alpha * sq).sum()
    return 2 * b / ((a + c) + np.sqrt(max((a + c) ** 2 - 4 * b @ b, 0.0)))


def numpy_lloyd(x: np.ndarray, k: int, iters: int, *, seed: int = 0, frechet_steps: int = 3):
    """Plain Lloyd on all points: full (N, k) arcosh distance matrix, per-cluster Fréchet means."""
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), k, replace=False)].astype(np.float32)
    gap_x = 1 - (x * x).sum(1)
    for _ in range(iters):
        diff2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        d = np.arccosh(1 + 2 * diff2 / (gap_x[:, None] * (1 - (c * c).sum(1))[None]))
        labels = d.argmin(1)
        for j in range(k):
            pts = x[labels == j]
            if len(pts):
                for _ in range(frechet_steps):
                    c[j] = _frechet_step(pts, c[j])
    return c, labels


# -- benchmarks ---------------------------------------------------------------------------


def bench_kmeans(n: int, device: torch.device, *, k: int = 8) -> dict:
    labels = np.random.default_rng(1).integers(0, 6, n)
    x = blob_points(labels, 6)
    poincare_kmeans(x[:20000], k, seed=0, device=device)  # warm-up
    t_ours, res = timed(lambda: poincare_kmeans(x, k, seed=0, device=device), device)
    out = {"n": n, "k": k, "ours_s": t_ours, "ours_n_iter": res.n_iter, "ours_n_init": len(res.init_inertias)}
    if device.type == "cuda":
        xt = torch.as_tensor(x, device=device)
        t_dev, _ = timed(lambda: poincare_kmeans(xt, k, seed=0, device=device), device)
        out["ours_on_device_input_s"] = t_dev
    iters = max(1, res.n_iter)
    t_base, _ = timed(lambda: numpy_lloyd(x, k, iters), torch.device("cpu"))
    out.update({"baseline_iters": iters, "baseline_s": t_base, "ratio": t_base / t_ours})
    try:
        from scipy.cluster.vq import kmeans2

        t_sc, _ = timed(lambda: kmeans2(x, k, iter=iters, minit="points", seed=0), torch.device("cpu"))
        out["scipy_euclidean_s"] = t_sc
    except ImportError:
        pass
    return out


def bench_levels(edge: int, device: torch.device, *, k_min: int = 2, k_max: int = 16, passes: int = 3) -> dict:
    from napari_hypseg.segmentation.hierarchy import build_hierarchy

    z, y, x = np.ogrid[:edge, :edge, :edge]
    regions = ((z * 4 // edge) + 2 * (y * 3 // edge) + (x * 2 // edge)) % 7  # 7 blocky regions
    emb = blob_points(regions, 7, seed=2)
    t_build, hierarchy = timed(
        lambda: build_hierarchy(
            emb,
            k_min=k_min,
            k_max=k_max,
            mode="nested",
            metric="poincare",
            seed=0,
            device=None if device.type == "cpu" else device,
        ),
        device,
    )
    latencies = []
    order = list(range(k_min, k_max + 1)) + list(range(k_max, k_min - 1, -1))
    for _ in range(passes):
        for k in order:
            t0 = time.perf_counter()
            labels = np.asarray(hierarchy.labels(k))
            latencies.append(time.perf_counter() - t0)
            assert labels.shape == emb.shape[:-1]
    points = emb.reshape(-1, 2)
    t_base, _ = timed(lambda: poincare_kmeans(points, 8, seed=0, device=device), device)
    return {
        "shape": [edge] * 3,
        "k_range": [k_min, k_max],
        "build_s": t_build,
        "switch_median_ms": 1e3 * statistics.median(latencies),
        "switch_max_ms": 1e3 * max(latencies),
        "switches": len(latencies),
        "baseline_rerun_kmeans_k8_s": t_base,
        "ratio": t_base / max(latencies),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=10_000_000, help="points for k-means (default %(default)s)")
    parser.add_argument("--edge", type=int, default=256, help="volume edge for the hierarchy (default %(default)s)")
    parser.add_argument("--skip-levels", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    n, edge = (200_000, 48) if args.quick else (args.n, args.edge)
    print(f"device: {device_name(device)}")
    result: dict = {"device": device_name(device)}

    r = bench_kmeans(n, device)
    result["kmeans"] = r
    print(f"\n== Poincaré k-means, k = {r['k']}, {n / 1e6:g} M points in 2-D ==")
    print(
        f"ours  poincare_kmeans (n_init {r['ours_n_init']}, 200 k fit sample, all points assigned): "
        f"{r['ours_s']:.2f} s "
        f"(selected init: {r['ours_n_iter']} Lloyd iterations)"
    )
    if "ours_on_device_input_s" in r:
        print(f"      with the points already on the GPU: {r['ours_on_device_input_s']:.2f} s  (goal <= 2 s)")
    print(
        f"base  numpy Lloyd, same Poincaré distance and Fréchet update, all points, 1 init, "
        f"{r['baseline_iters']} iterations: {r['baseline_s']:.2f} s"
    )
    print(f"ratio baseline / ours: {r['ratio']:.1f}x")
    if "scipy_euclidean_s" in r:
        print(
            f"ref   scipy kmeans2 (EUCLIDEAN, reference speed only), {r['baseline_iters']} iterations: "
            f"{r['scipy_euclidean_s']:.2f} s"
        )

    if not args.skip_levels:
        h = bench_levels(edge, device)
        result["levels"] = h
        print(f"\n== hierarchy levels k = 2 … 16 (nested) on a {edge}³ embedding ({edge**3 / 1e6:.1f} M voxels) ==")
        print(f"build once: {h['build_s']:.1f} s")
        print(
            f"ours  switching levels (Hierarchy.labels(k), {h['switches']} switches): "
            f"median {h['switch_median_ms']:.3f} ms, "
            f"max {h['switch_max_ms']:.3f} ms  (goal <= 100 ms)"
        )
        print(f"base  re-running poincare_kmeans for k = 8: {h['baseline_rerun_kmeans_k8_s']:.2f} s")
        print(f"ratio baseline / ours (worst switch): {h['ratio']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
