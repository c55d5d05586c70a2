"""Experiment of docs/method.md, "Round twenty-five": volumes whose noise is correlated over neighbouring voxels.

The real tomogram low-pass filtered (a Gaussian of σ 0.7 and 1 voxel, as a reconstruction filter or a light
denoiser leaves it) and resampled 1.5× and 2× finer (trilinear, as a tomogram brought to a finer voxel size);
the MRI template with 6 % and 12 % noise resampled 1.5× finer and with 6 % low-pass filtered at σ 0.7. For each:
the noise σ of the face residual and of the strided estimate (``channels.strided_noise_sigma``), the branch the
default takes, and the default beside the best of the 12 intensity baselines (one seed).

    python benchmarks/exp_correlated_noise.py     # ~12 min on 2 cores
"""

from __future__ import annotations

import _common  # noqa: F401 - puts src/ on the path
from napari_hypseg.datasets import load_hiv_tomogram, load_mni_t1
from napari_hypseg.quality import cases as Q
from napari_hypseg.quality.suite import OURS, default_pipeline, run_case
from napari_hypseg.segmentation import channels as C
from napari_hypseg.segmentation import mixture as M
from napari_hypseg.training import TrainConfig

VARIANTS = [
    (load_hiv_tomogram, "low-pass", 0.7),
    (load_hiv_tomogram, "low-pass", 1.0),
    (load_hiv_tomogram, "finer", 1.5),
    (load_hiv_tomogram, "finer", 2.0),
    (lambda: load_mni_t1(noise=0.06), "finer", 1.5),
    (lambda: load_mni_t1(noise=0.06), "low-pass", 0.7),
    (lambda: load_mni_t1(noise=0.12), "finer", 1.5),
]


def variant(case: Q.Case, how: str, amount: float) -> Q.Case:
    return Q.resampled_finer(case, amount) if how == "finer" else Q.low_passed(case, amount)


def main() -> None:
    ours = default_pipeline(TrainConfig())
    for loader, how, amount in VARIANTS:
        case = variant(Q.real_case(loader, "real"), how, amount)
        channel = C.choose_channel(case.volumes[0].image)
        strided = C.strided_noise_sigma(C.normalise(case.volumes[0].image))  # printed for the raw channel too
        result = run_case(case, ours, seeds=[0], log=lambda s: None)
        best = result.best_baseline(1)
        per_class = " ".join(f"{v:.2f}" for v in result.per_class_mean(OURS, 1).values())
        print(
            f"{case.name} {case.volumes[0].image.shape}: σ {channel.sigma:.3f} / strided {strided:.3f}, "
            f"{channel.kind}, {M.covariance_type(channel)}; ours {result.mean_sd(OURS, 1)[0]:.3f} ({per_class}) | "
            f"best {best} {result.mean_sd(best, 1)[0]:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
