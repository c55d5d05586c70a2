"""Experiment of docs/method.md, "Round thirteen": what the trained encoder knows beyond intensity.

A supervised linear probe (logistic regression, balanced class weights) reads
the classes from the default's intensity channel alone and from that channel
plus one of: Gaussian-smoothed copies of it (classical context), the dense
activations of an encoder layer (all channels) of the trained VAE or of the
same network with random weights (the control), or the 2-D latent the product
clusters in its nested/flat modes. The probe is fitted on one volume (or half)
and scored on another, so it measures information that generalises, not
memorised voxels. If a feature does not help a supervised probe, no
unsupervised clustering of it will.

- phantom: level 2 inside the cell (cytoplasm / vesicle / mitochondrion), the
  model trained on 2 training phantoms, the probe fitted on one test phantom
  and scored on another;
- tomogram: background / protein shell / lumen, the model trained on the
  tomogram itself, the probe fitted on its upper half (z) and scored on the
  lower one.

    python benchmarks/exp_encoder_probe.py              # 600 steps per model, ~16 min on 2 CPU cores
    python benchmarks/exp_encoder_probe.py --steps 100  # a quicker look
    python benchmarks/exp_encoder_probe.py --latent-dim 8   # an 8-D ball: its latent's first 2 directions, and all 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_hiv_tomogram
from napari_hypseg.model import ModelConfig
from napari_hypseg.quality.cases import phantom_case
from napari_hypseg.segmentation.fusion import FusionConfig, embedding_channels, fused_features
from napari_hypseg.segmentation.pipeline import embed_volume
from napari_hypseg.training import Trainer
from napari_hypseg.training.config import TrainConfig

#: encoder layers probed (1-based; the receptive field of layer n is (1 + 4n)³ with kernel 5)
LAYERS = (1, 2, 4)
#: voxels the probe is fitted on, and scored on
FIT_VOXELS, SCORE_VOXELS = 40_000, 200_000


def layer_activations(model, image: np.ndarray, n: int) -> np.ndarray:
    """(N, C) dense activations after the encoder's n-th convolution, on a mirror-padded volume."""
    x = model.normalize(torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None])
    h = F.pad(x, (2 * n,) * 6, mode="reflect")
    with torch.no_grad():
        h = torch.nn.Sequential(*list(model.encoder.features)[: 2 * n])(h)
    return h[0].reshape(h.shape[1], -1).T.numpy()


def feature_sets(model, untrained, image: np.ndarray) -> dict[str, np.ndarray]:
    intensity = fused_features(image, None, latent_dim=None, config=FusionConfig())[0][:, :1]
    smoothed = [ndimage.gaussian_filter(intensity.reshape(image.shape), s).reshape(-1, 1) for s in (1, 2, 4)]
    sets = {"intensity": intensity, "+ Gaussian σ 1/2/4 of it": np.hstack([intensity, *smoothed])}
    for tag, net in (("trained", model), ("random weights", untrained)):
        for n in LAYERS:
            sets[f"+ layer {n} ({1 + 4 * n}³), {tag}"] = np.hstack([intensity, layer_activations(net, image, n)])
    embedding = embed_volume(image, model, device="cpu")
    d = model.config.latent_dim
    for components in sorted({2, d}):
        latent = embedding_channels(embedding, latent_dim=d, components=components)
        name = f"+ the {d}-D latent" + (f" ({components} PCA)" if components < d else "")
        sets[name] = np.hstack([intensity, latent])
    return sets


def probe(fit_x, fit_y, score_x, score_y) -> float:
    rng = np.random.default_rng(0)
    a = rng.choice(len(fit_y), min(FIT_VOXELS, len(fit_y)), replace=False)
    b = rng.choice(len(score_y), min(SCORE_VOXELS, len(score_y)), replace=False)
    mu, sd = fit_x[a].mean(0), fit_x[a].std(0) + 1e-6
    clf = LogisticRegression(max_iter=1000, class_weight="balanced").fit((fit_x[a] - mu) / sd, fit_y[a])
    return balanced_accuracy_score(score_y[b], clf.predict((score_x[b] - mu) / sd))


def trained_and_untrained(volumes, steps: int, latent_dim: int):
    t0 = time.perf_counter()
    trainer = Trainer(
        list(volumes),
        model_config=ModelConfig(latent_dim=latent_dim),
        train_config=TrainConfig(steps=steps, preview_every=0, device="cpu"),
    )
    model = trainer.fit().eval()
    print(f"  trained {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    torch.manual_seed(0)
    untrained = type(model)(model.config)
    untrained.set_normalization(float(model.intensity_low), float(model.intensity_high))
    return model, untrained.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig().steps, help="training steps per model")
    parser.add_argument("--latent-dim", type=int, default=ModelConfig().latent_dim, help="dimension of the ball")
    args = parser.parse_args()

    print("phantom, level 2 inside the cell: probe fitted on one test phantom, scored on another (balanced accuracy)")
    case = phantom_case(irregular=False, n_train=2, n_test=2)
    model, untrained = trained_and_untrained(case.train, args.steps, args.latent_dim)
    (a, b) = case.volumes
    fa, fb = feature_sets(model, untrained, a.image), feature_sets(model, untrained, b.image)
    ya, yb = a.levels[2][1].reshape(-1), b.levels[2][1].reshape(-1)
    for name in fa:
        print(f"  {name:32s} {probe(fa[name][ya > 0], ya[ya > 0], fb[name][yb > 0], yb[yb > 0]):.3f}", flush=True)

    print("tomogram, background / shell / lumen: probe fitted on the upper half, scored on the lower")
    tomogram = load_hiv_tomogram()
    model, untrained = trained_and_untrained([tomogram.image], args.steps, args.latent_dim)
    sets = feature_sets(model, untrained, tomogram.image)
    y = tomogram.labels.reshape(-1)
    upper = np.broadcast_to(
        (np.arange(tomogram.image.shape[0]) < tomogram.image.shape[0] // 2)[:, None, None], tomogram.image.shape
    ).reshape(-1)
    for name, x in sets.items():
        print(f"  {name:32s} {probe(x[upper], y[upper], x[~upper], y[~upper]):.3f}", flush=True)


if __name__ == "__main__":
    main()
