"""The MNI ICBM152 2009a T1 template shipped in nilearn, with tissue classes from its probability maps.

nilearn's wheel carries the skull-stripped T1 template and its grey- and
white-matter probability maps (1 mm, 197 × 233 × 189). Ground truth:
background outside the brain (T1 = 0), and inside it the most probable of
CSF (1 − p_GM − p_WM), grey matter and white matter. At the default 2 mm the
volumes are mean-binned 2× first (probabilities averaged, then classified).

The template is an average of 152 real scans, smoother than one subject; it
is the real-anatomy MRI case that installs offline, not a stand-in for a
single noisy acquisition.
"""

from __future__ import annotations

import numpy as np

from ._locate import package_file
from .types import LabelledVolume

MRI_INSTALL_HINT = "the real MRI sample needs the nilearn wheel: pip install --no-deps nilearn"
CLASS_NAMES = ("background", "CSF", "grey matter", "white matter")
_FILES = {
    "t1": "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def _bin_mean(a: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return a
    shape = [n // factor for n in a.shape]
    a = a[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    return a.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))


def tissue_labels(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """0 background (t1 == 0), else argmax of (CSF, GM, WM) + 1; probabilities in 0..1."""
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    labels = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1).astype(np.uint8)
    labels[t1 <= 0] = 0
    return labels


def rician(image: np.ndarray, level: float, *, seed: int = 0) -> np.ndarray:
    """``image`` as a magnitude MRI with noise ``level`` × its 99th percentile inside the object.

    The magnitude of the image plus complex white Gaussian noise (Rician,
    as in an MR scanner's magnitude images; BrainWeb's 3 % / 5 % / 9 % levels
    are defined the same way, relative to the brightest tissue).
    """
    rng = np.random.default_rng(seed)
    sd = level * float(np.percentile(image[image > 0], 99))
    real = image.astype(np.float64) + rng.normal(0.0, sd, image.shape)
    return np.hypot(real, rng.normal(0.0, sd, image.shape)).astype(np.float32)


def nonuniformity(shape: tuple[int, ...], amplitude: float, *, seed: int = 0) -> np.ndarray:
    """A smooth multiplicative field spanning exactly 1 ± ``amplitude`` over the box (float32, ``shape``).

    A random second-order polynomial of the voxel coordinates, as the receive
    coil's intensity non-uniformity of a scanner (BrainWeb's 20 % / 40 % INU
    fields span ±10 % / ±20 %). Uncorrected scans carry one; the template does not.
    """
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    field = np.zeros(shape)
    for i, a in enumerate(axes):
        field += rng.normal() * a
        for b in axes[i:]:
            field += 0.5 * rng.normal() * a * b
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-12)
    return (1.0 + amplitude * (2.0 * field - 1.0)).astype(np.float32)


def load_mni_t1(voxel_mm: int = 2, *, noise: float = 0.0, bias: float = 0.0, seed: int = 0) -> LabelledVolume:
    """The MNI152 T1 template at ``voxel_mm`` (1 or an integer binning) with four tissue classes.

    ``noise`` > 0 adds Rician noise of that level (:func:`rician`): the
    template averages 152 scans and is much cleaner than one subject's scan,
    so the noisy variant checks what a single acquisition does to a method
    tuned on the template. ``bias`` > 0 first multiplies it by an intensity
    non-uniformity of ±``bias`` (:func:`nonuniformity`), which a single
    uncorrected scan carries and the template does not.

    Raises :class:`DatasetUnavailable` (a :class:`UserError`) with the install
    command when nilearn is not installed.
    """
    import nibabel as nib  # noqa: PLC0415

    if int(voxel_mm) != voxel_mm or voxel_mm < 1:
        raise ValueError(f"voxel_mm must be a positive integer, got {voxel_mm!r}")
    arrays = {}
    for key, relative in _FILES.items():
        path = package_file("nilearn", relative, hint=MRI_INSTALL_HINT)
        arrays[key] = _bin_mean(np.asarray(nib.load(path).get_fdata(dtype=np.float32)), int(voxel_mm))
    # the maps are stored as 0..255
    labels = tissue_labels(arrays["t1"], arrays["gm"] / 255.0, arrays["wm"] / 255.0)
    image = arrays["t1"].astype(np.float32)
    name, source = f"mni152_t1_{voxel_mm}mm", ""
    if bias > 0:
        image = image * nonuniformity(image.shape, bias, seed=seed)
        name, source = f"{name}_inu{round(bias * 100)}", f" × intensity non-uniformity ±{bias:.0%}"
    if noise > 0:
        image = rician(image, noise, seed=seed)
        name = f"{name}_rician{round(noise * 100)}"
        source = f"{source} + Rician noise {noise:.0%} of the 99th percentile"
    return LabelledVolume(
        name=name,
        image=image,
        voxel_size=(float(voxel_mm),) * 3,
        unit="mm",
        labels=labels,
        class_names=CLASS_NAMES,
        source="nilearn MNI ICBM152 2009a T1 template; tissue = argmax of CSF/GM/WM probability maps inside the brain"
        + source,
    )
