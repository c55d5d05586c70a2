"""Experiment of docs/method.md, "Round twenty-five": a fill in the dataset path, and four level rules that lost.

``--dataset-fill``: the dataset path's one clustering (``fit_dataset_clustering`` then ``assign``, as
``hypseg segment-dataset`` fits it) on the real tomogram and the MRI template with 6 % noise, each as it is and
padded to a cube with its mean (``quality.cases.padded_to_cube``), scored outside the padding, seeds 0-3.
Run it on a checkout before and after the round to compare.

``--local-means-raw``: the default's levels on the volumes it reads raw (the MRI template, + 3 % noise, ±10 / 20 %
non-uniformity, 1 mm) without and with the local-means passes (one pooled spread, round twenty-two's rule).

``--equal-weights``: on the volumes with a shared covariance, the default beside equal component weights in the
mixture's decision at k = 2 only and at every k (a boundary that does not move when the box is cropped).

``--nesting``: the quick suite's phantoms and the real volumes, the default's levels beside the same levels
nested top-down (each cluster of level k keeps the parent at k - 1 holding most of it; a voxel whose own
level-(k - 1) label is another parent goes to that parent's child nearest in mean intensity), with the nesting
purity of each step (the share of voxels in their cluster's majority parent).

``--background-fixed``: the quick suite's phantoms and the MRI at 0 / 6 / 12 %, the default's levels beside a
level k made of the k = 2 level's background (the cluster touching the box's faces most) and k - 1 components
fitted inside the rest.

One seed but for ``--dataset-fill``.

    python benchmarks/exp_dataset_fill_and_level_rules.py --dataset-fill       # ~2 min on 2 cores
    python benchmarks/exp_dataset_fill_and_level_rules.py --local-means-raw    # ~2 min
    python benchmarks/exp_dataset_fill_and_level_rules.py --equal-weights      # ~4 min
    python benchmarks/exp_dataset_fill_and_level_rules.py --nesting            # ~4 min
    python benchmarks/exp_dataset_fill_and_level_rules.py --background-fixed   # ~3 min
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_confocal_nuclei, load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality import cases as Q
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.segmentation.channels import fill_mask
from napari_hypseg.segmentation.dataset_clustering import fit_dataset_clustering
from napari_hypseg.segmentation.fusion import FusionConfig, fused_features
from napari_hypseg.segmentation.metrics import dice_scores


def _volume(loader):
    case = Q.real_case(loader, "real")
    return case.name, case.volumes[0]


def _quick_phantoms():
    return [(case.name, v) for case in Q.suite_cases(quick=True, log=lambda s: None)[:2] for v in case.volumes]


def _levels(image, ks, **overrides):
    """The default's levels ``ks`` of ``image`` (its channel's settings, ``overrides`` replacing some)."""
    features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
    settings = {**M.channel_settings(channel), **overrides}
    levels = M.mixture_levels(features, image.shape, ks, seed=0, fill=fill_mask(image), **settings)
    return {k: levels[k] for k in ks}, features, settings


def _scores(levels, volume) -> str:
    return " / ".join(f"{dice_scores(levels[k], gt).mean:.3f}" for _, (k, gt, _) in sorted(volume.levels.items()))


def _per_class(labels, gt) -> str:
    result = dice_scores(labels, gt)
    return f"{result.mean:.3f} (" + " ".join(f"{v:.2f}" for v in result.per_class.values()) + ")"


def dataset_fill() -> None:
    for loader in (load_hiv_tomogram, lambda: load_mni_t1(noise=0.06)):
        case = Q.real_case(loader, "real")
        original = case.volumes[0].image.shape
        for variant in (case, Q.padded_to_cube(case)):
            volume = variant.volumes[0]
            k, gt, _ = volume.levels[1]
            pad = [(n - m) // 2 for n, m in zip(volume.image.shape, original)]
            inside = tuple(slice(p, p + m) for p, m in zip(pad, original))
            row = []
            for seed in range(4):
                fitted = fit_dataset_clustering([volume.image], [None], [k], latent_dim=None, seed=seed)
                row.append(_per_class(fitted.assign(volume.image, None)[k][inside], gt[inside]))
            print(f"{variant.name}: " + " | ".join(row), flush=True)


def local_means_raw() -> None:
    loaders = [load_mni_t1, lambda: load_mni_t1(noise=0.03)]
    loaders += [lambda b=b: load_mni_t1(bias=b) for b in (0.1, 0.2)] + [lambda: load_mni_t1(1)]
    for loader in loaders:
        name, volume = _volume(loader)
        k, gt, _ = volume.levels[1]
        row = []
        for local in (False, True):
            levels, _, settings = _levels(volume.image, [k], local_means=local)
            row.append(f"local means {local}: {_per_class(levels[k], gt)}")
        print(f"{name} ({settings['covariance']}): " + " | ".join(row), flush=True)


def equal_weights() -> None:
    volumes = [_volume(loader) for loader in (load_hiv_tomogram, lambda: load_hiv_tomogram(fiducials=12))]
    volumes += [_volume(lambda n=n: load_mni_t1(noise=n)) for n in (0.12, 0.18)]
    nuclei = Q.real_case(load_confocal_nuclei, "confocal")
    volumes += [(c.name, c.volumes[0]) for c in (Q.with_gaussian_noise(nuclei, n) for n in (0.1, 0.2))]
    scored = M.posteriors
    for name, volume in volumes:
        ks = sorted({k for k, _, _ in volume.levels.values()})
        row = []
        for rule in ("default", "k = 2", "every k"):

            def equal(mixture, points, rule=rule):
                if mixture.covariance_type == "tied" and (
                    rule == "every k" or (rule == "k = 2" and mixture.n_components == 2)
                ):
                    mixture = copy.copy(mixture)
                    mixture.weights_ = np.full(mixture.n_components, 1.0 / mixture.n_components)
                return scored(mixture, points)

            M.posteriors = equal
            try:
                levels, _, _ = _levels(volume.image, list(range(2, max(ks) + 1)))
            finally:
                M.posteriors = scored
            row.append(f"{rule}: {_scores(levels, volume)}")
        print(f"{name}: " + " | ".join(row), flush=True)


def _table(fine, coarse) -> np.ndarray:
    table = np.zeros((int(fine.max()) + 1, int(coarse.max()) + 1), np.int64)
    np.add.at(table, (fine.ravel().astype(np.int64), coarse.ravel().astype(np.int64)), 1)
    return table


def purity(fine, coarse) -> float:
    """Share of the voxels in their level-k cluster's majority parent at level k - 1 (1: nested)."""
    return _table(fine, coarse).max(axis=1).sum() / fine.size


def nested_top_down(levels, features):
    x = features.reshape(-1, features.shape[-1])
    ks = sorted(levels)
    out = {ks[0]: levels[ks[0]]}
    for k in ks[1:]:
        coarse = out[k - 1].ravel().astype(np.int64)
        fine = levels[k].ravel().astype(np.int64).copy()
        table = _table(fine, coarse)
        parent = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), -1)
        stray = parent[fine] != coarse
        for q in np.unique(coarse[stray]):
            children = np.flatnonzero(parent == q)
            if len(children) == 0:  # the parent lost every child: its largest overlap takes its voxels
                children = np.array([table[:, q].argmax()])
            mine = coarse == q
            means = np.stack(
                [
                    x[mine & (fine == c)].mean(axis=0) if np.any(mine & (fine == c)) else x[fine == c].mean(axis=0)
                    for c in children
                ]
            )
            where = stray & mine
            fine[where] = children[((x[where][:, None, :] - means[None]) ** 2).sum(-1).argmin(axis=1)]
        out[k] = fine.reshape(levels[k].shape)
    return out


def nesting() -> None:
    volumes = _quick_phantoms() + [
        _volume(loader) for loader in (load_hiv_tomogram, load_mni_t1, lambda: load_mni_t1(noise=0.06))
    ]
    for name, volume in volumes:
        top = max(k for k, _, _ in volume.levels.values())
        levels, features, _ = _levels(volume.image, list(range(2, top + 1)))
        nested = nested_top_down(levels, features)
        purities = [" ".join(f"{purity(ls[k], ls[k - 1]):.3f}" for k in range(3, top + 1)) for ls in (levels, nested)]
        print(
            f"{name}: default {_scores(levels, volume)} (purity {purities[0]}) | "
            f"nested {_scores(nested, volume)} (purity {purities[1]})",
            flush=True,
        )


def _face_share(mask) -> float:
    faces = [mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]]
    return float(np.mean(np.concatenate([f.ravel() for f in faces])))


def background_fixed() -> None:
    volumes = _quick_phantoms() + [_volume(lambda n=n: load_mni_t1(noise=n)) for n in (0.0, 0.06, 0.12)]
    for name, volume in volumes:
        top = max(k for k, _, _ in volume.levels.values())
        levels, features, settings = _levels(volume.image, list(range(2, top + 1)), compartments=False)
        background = levels[2] == max((1, 2), key=lambda c: _face_share(levels[2] == c))
        row = []
        for _, (k, gt, _) in sorted(volume.levels.items()):
            if k == 2:
                row.append(f"{dice_scores(levels[2], gt).mean:.3f}")
                continue
            inner = M.mixture_levels(features, volume.image.shape, [k - 1], seed=0, fill=background, **settings)[k - 1]
            inner = inner.copy()
            inner[background] = k
            row.append(_per_class(inner, gt))
        print(f"{name}: default {_scores(levels, volume)} | background fixed " + " / ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ("--dataset-fill", "--local-means-raw", "--equal-weights", "--nesting", "--background-fixed"):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args()
    runs = {
        "dataset_fill": dataset_fill,
        "local_means_raw": local_means_raw,
        "equal_weights": equal_weights,
        "nesting": nesting,
        "background_fixed": background_fixed,
    }
    chosen = [run for flag, run in runs.items() if getattr(args, flag)]
    for run in chosen or [dataset_fill]:
        run()


if __name__ == "__main__":
    main()
