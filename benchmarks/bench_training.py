"""Training speed: triplets/s, the sampler against a naive crop-and-resize loop, and time to the quality goal.

Goal (issue 7): report triplets/s on CPU and GPU; the time until the quality
goal of issue 5 (mean Dice ≥ 0.986 / 0.577 / 0.397 at levels 1 / 2 / 3) is
reached on a phantom: ≤ 2 minutes on an H100.

1. **Triplets/s**: the :class:`~napari_hypseg.training.Trainer` with the
   paper model, batch 32 (one step = 32 triplets = 96 patches), timed after
   warm-up steps.
2. **Sampler vs baseline**: our :class:`~napari_hypseg.training.TripletSampler`
   (box drawing, anchors oversampled 4× to drop homogeneous ones, then the
   device's read path: per-box crop + ``interpolate`` on the CPU, one
   ``grid_sample`` for all boxes on the GPU) against the naive alternative: a
   Python loop that crops each box with numpy and resizes it with
   ``torch.nn.functional.interpolate``, one patch at a time, on the same boxes
   (the baseline does not even pay for drawing them or for the oversampled
   anchors). The other read path is timed too, on the same boxes.
3. **Time to the quality goal**: train on ``make_phantom(50, seed=1)`` with
   the default :class:`~napari_hypseg.training.TrainConfig`; every N steps
   the clock is paused, the volume embedded and clustered with flat
   Poincaré k-means (k = 2 / 4 / 8), and mean Dice per level computed against
   the ground truth. Prints the training time at which each level first
   reaches its goal, or "not reached" with the best values.

Usage::

    python benchmarks/bench_training.py             # full (about 15 min on 2 CPU cores)
    python benchmarks/bench_training.py --quick     # smoke run
    python benchmarks/bench_training.py --goal-minutes 4 --eval-every 50
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import device_name, sync  # noqa: E402  (also puts src/ on sys.path)
from napari_hypseg._device import resolve_device  # noqa: E402
from napari_hypseg.model import HyperbolicVAE, ModelConfig  # noqa: E402
from napari_hypseg.segmentation.embed import embed  # noqa: E402
from napari_hypseg.segmentation.kmeans import poincare_kmeans  # noqa: E402
from napari_hypseg.synthetic import make_phantom  # noqa: E402
from napari_hypseg.training import SamplerConfig, TrainConfig, Trainer, TripletSampler  # noqa: E402

GOAL = {1: 0.986, 2: 0.577, 3: 0.397}  # best published unsupervised mean Dice (Tursynbek & Niethammer 2023)
LEVEL_K = {1: 2, 2: 4, 3: 8}


# -- 1. triplets/s -------------------------------------------------------------------


def triplets_per_s(volume: np.ndarray, device: torch.device, *, batch: int, warm: int, timed: int) -> dict:
    # events (and their host sync) every `warm` steps only, like a normal run's logging
    config = TrainConfig(steps=warm + timed, batch_size=batch, device=str(device), preview_every=0, log_every=warm)
    trainer = Trainer([volume], train_config=config)
    t_warm = None
    for event in trainer.run():
        if event.kind == "step" and event.step == warm:
            sync(device)
            t_warm = time.perf_counter()
    sync(device)
    elapsed = time.perf_counter() - t_warm
    return {
        "batch": batch,
        "steps_timed": timed,
        "seconds": elapsed,
        "steps_per_s": timed / elapsed,
        "triplets_per_s": timed * batch / elapsed,
    }


# -- 2. sampler vs naive loop -----------------------------------------------------------


def naive_read(volume: np.ndarray, boxes: np.ndarray, m: int, normalize) -> torch.Tensor:
    """One numpy crop + one trilinear resize per box: (n, 1, m, m, m)."""
    patches = []
    for start, edge in boxes.astype(int):
        z, y, x = start
        ez, ey, ex = edge
        crop = torch.from_numpy(np.ascontiguousarray(volume[z : z + ez, y : y + ey, x : x + ex]))
        patch = F.interpolate(crop[None, None], size=(m, m, m), mode="trilinear", align_corners=False)
        patches.append(normalize(patch))
    return torch.cat(patches)


def sampler_vs_naive(volume: np.ndarray, device: torch.device, *, batch: int, reps: int) -> dict:
    torch.manual_seed(0)
    model = HyperbolicVAE(ModelConfig())
    model.set_normalization(float(np.percentile(volume, 1)), float(np.percentile(volume, 99)))
    model.to(device)
    vol_t = torch.as_tensor(volume, device=device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    sampler = TripletSampler([vol_t], model.patch_size, model.normalize, SamplerConfig(), gen)
    sampler.sample(batch)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    batches = []
    for _ in range(reps):
        batches.append(sampler.sample(batch))
    sync(device)
    ours = (time.perf_counter() - t0) / reps

    # the read path this device does not use by default, on the same boxes
    other_read = sampler._read_grid if device.type == "cpu" else sampler._read_crops
    t0 = time.perf_counter()
    for b in batches:
        boxes = torch.cat([b.anchor_box, b.positive_box, b.negative_box])
        other_read(sampler.volumes[0], boxes[:, 0], boxes[:, 1])
    sync(device)
    other = (time.perf_counter() - t0) / reps

    cpu_norm = model.to("cpu").normalize
    t_naive = 0.0
    for b in batches:
        boxes = torch.cat([b.anchor_box, b.positive_box, b.negative_box]).cpu().numpy()
        t0 = time.perf_counter()
        naive_read(volume, boxes, model.patch_size, cpu_norm)
        t_naive += time.perf_counter() - t0
    naive = t_naive / reps
    return {
        "volume": list(volume.shape),
        "batch": batch,
        "reps": reps,
        "ours_ms": 1e3 * ours,
        "naive_ms": 1e3 * naive,
        "ratio": naive / ours,
        "other_path": "grid_sample" if device.type == "cpu" else "crops",
        "other_path_read_ms": 1e3 * other,
    }


# -- 3. time to the quality goal ----------------------------------------------------------


def evaluate(image: np.ndarray, levels: dict, model: HyperbolicVAE, device: torch.device) -> dict[int, float]:
    from napari_hypseg.segmentation.metrics import dice_scores

    emb = embed(image, model, device=device)
    points = emb.reshape(-1, emb.shape[-1])
    scores = {}
    for level, k in LEVEL_K.items():
        labels = poincare_kmeans(points, k, seed=0, device=device).labels.reshape(image.shape)
        scores[level] = float(dice_scores(labels, levels[level]).mean)
    return scores


def time_to_goal(
    device: torch.device, *, size: int, budget_min: float, eval_every: int, save: Path | None = None
) -> dict:
    phantom = make_phantom(size, seed=1)
    config = TrainConfig(steps=10**9, device=str(device), preview_every=0)
    trainer = Trainer([phantom.image], train_config=config)
    reached: dict[int, dict] = {}
    best = {level: 0.0 for level in GOAL}
    history = []
    train_s, eval_s = 0.0, 0.0
    sync(device)
    t0 = time.perf_counter()
    for event in trainer.run():
        if event.kind != "step" or event.step % eval_every:
            continue
        sync(device)
        train_s += time.perf_counter() - t0
        t_eval = time.perf_counter()
        scores = evaluate(phantom.image, phantom.levels, trainer.model, device)
        trainer.model.train()
        eval_s += time.perf_counter() - t_eval
        history.append({"step": event.step, "train_s": train_s, **{f"dice{lv}": s for lv, s in scores.items()}})
        print(
            f"  step {event.step:5d}  train {train_s:6.0f} s  "
            f"Dice L1 {scores[1]:.3f}  L2 {scores[2]:.3f}  L3 {scores[3]:.3f}",
            flush=True,
        )
        for level, score in scores.items():
            best[level] = max(best[level], score)
            if level not in reached and score >= GOAL[level]:
                reached[level] = {"train_s": train_s, "step": event.step}
        if len(reached) == len(GOAL) or train_s >= 60 * budget_min:
            break
        t0 = time.perf_counter()
    if save is not None:
        trainer.save(save)
    return {
        "phantom": [size] * 3,
        "budget_min": budget_min,
        "eval_every": eval_every,
        "reached": reached,
        "best": best,
        "train_s": train_s,
        "eval_s": eval_s,
        "history": history,
        "config": {"batch_size": config.batch_size, "lr": config.lr},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps for triplets/s, a multiple of 5 (default 20 CPU, 100 GPU)"
    )
    parser.add_argument(
        "--goal-minutes", type=float, default=None, help="training budget for the quality goal (default 10 CPU, 4 GPU)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=None, help="steps between Dice evaluations (default 25 CPU, 100 GPU)"
    )
    parser.add_argument("--skip-goal", action="store_true")
    parser.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="keep the model trained for the quality goal (e.g. for bench_many_volumes.py --model)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    steps = 2 if args.quick else args.steps or (100 if gpu else 20)
    budget = 0.3 if args.quick else args.goal_minutes or (4.0 if gpu else 10.0)
    eval_every = 5 if args.quick else args.eval_every or (100 if gpu else 25)
    print(f"device: {device_name(device)}")
    print(
        f"model: paper architecture {ModelConfig().channels}, m={ModelConfig().patch_size}; batch {args.batch} "
        f"triplets = {3 * args.batch} patches per step"
    )
    result: dict = {"device": device_name(device)}

    phantom = make_phantom(50, seed=1)
    r = triplets_per_s(phantom.image, device, batch=args.batch, warm=1 if args.quick else 5, timed=steps)
    result["training"] = r
    print(
        f"\ntraining on a 50³ phantom: {r['triplets_per_s']:.1f} triplets/s ({r['steps_per_s']:.2f} steps/s, "
        f"{r['steps_timed']} steps timed after warm-up)"
    )

    big = np.random.default_rng(0).normal(size=(64,) * 3 if args.quick else (256,) * 3).astype(np.float32)
    for volume in (phantom.image, big):
        s = sampler_vs_naive(volume, device, batch=args.batch, reps=3 if args.quick else 20)
        result.setdefault("sampler", []).append(s)
        label = "x".join(map(str, volume.shape))
        path = "crops" if device.type == "cpu" else "grid_sample"
        print(
            f"sampling {args.batch} triplets from {label}: ours ({path}, incl. box drawing and 4x anchors) "
            f"{s['ours_ms']:.1f} ms, baseline (Python crop + interpolate per patch, CPU) {s['naive_ms']:.1f} ms "
            f"-> {s['ratio']:.2f}x; reading the same {3 * args.batch} boxes with {s['other_path']}: "
            f"{s['other_path_read_ms']:.1f} ms"
        )
    step_ms = 1e3 / r["steps_per_s"]
    print(
        f"sampling share of a training step: {result['sampler'][0]['ours_ms'] / step_ms:.1%} (ours) vs "
        f"{result['sampler'][0]['naive_ms'] / step_ms:.1%} (baseline) of {step_ms:.0f} ms"
    )

    if not args.skip_goal:
        print(
            f"\ntime to the quality goal on make_phantom(50, seed=1), budget {budget:g} min of training, "
            f"evaluation every {eval_every} steps (clock paused while evaluating):"
        )
        g = time_to_goal(device, size=50, budget_min=budget, eval_every=eval_every, save=args.save_model)
        result["goal"] = g
        for level, goal in GOAL.items():
            if level in g["reached"]:
                hit = g["reached"][level]
                print(
                    f"level {level} (k={LEVEL_K[level]}): Dice >= {goal} "
                    f"reached after {hit['train_s']:.0f} s of training "
                    f"(step {hit['step']})"
                )
            else:
                print(
                    f"level {level} (k={LEVEL_K[level]}): Dice >= {goal} "
                    f"NOT reached within {g['train_s'] / 60:.1f} min; "
                    f"best {g['best'][level]:.3f}"
                )
        all_hit = len(g["reached"]) == len(GOAL)
        total = max((h["train_s"] for h in g["reached"].values()), default=math.nan)
        print(
            "all levels: "
            + (f"reached after {total:.0f} s" if all_hit else "not all reached")
            + "  (goal <= 120 s on an H100)"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
