"""Shared fixtures: small real volume files on disk.

Viewer tests use napari's own ``make_napari_viewer`` fixture (napari's pytest
plugin) and carry the ``gui`` marker; run them under ``xvfb-run -a``.
"""

from __future__ import annotations

from napari_hypseg._threads import configure_threads

# Before torch is imported by any test module, as the entry points do (see napari_hypseg/_threads.py).
configure_threads()

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import mrcfile  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: A non-identity NIfTI affine: rotated about two axes, anisotropic voxels,
#: shifted origin, as an oblique MRI acquisition would have.
OBLIQUE_AFFINE = np.array(
    [
        [0.8660254, -0.25, 0.3, -42.5],
        [0.5, 0.9, -0.35, 17.25],
        [0.0, 0.15, 2.4, 8.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def ramp_volume(shape=(6, 7, 8), dtype=np.float32) -> np.ndarray:
    """A volume whose every voxel holds a distinct value (its flat index)."""
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


@pytest.fixture
def tmp_mrc(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a real MRC file with mrcfile.

    ``tmp_mrc(data=None, *, name="volume.mrc", voxel_size=(x, y, z),
    origin=(x, y, z) or None, nstart=(x, y, z) or None) -> Path``.
    `data` defaults to a (6, 7, 8) float32 ramp in (z, y, x) order.
    """

    def make(
        data: np.ndarray | None = None,
        *,
        name: str = "volume.mrc",
        voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
        origin: tuple[float, float, float] | None = None,
        nstart: tuple[int, int, int] | None = None,
    ) -> Path:
        path = tmp_path / name
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(ramp_volume() if data is None else data)
            mrc.voxel_size = voxel_size
            if origin is not None:
                mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
            if nstart is not None:
                mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = nstart
        return path

    return make


@pytest.fixture
def tmp_nifti(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a real NIfTI-1 file with nibabel.

    ``tmp_nifti(data=None, *, name="volume.nii.gz", affine=OBLIQUE_AFFINE) -> Path``.
    Both qform (code 1, scanner) and sform (code 2, aligned) are set from
    `affine`, as scanners do; `data` defaults to a (6, 7, 8) float32 ramp.
    """

    def make(
        data: np.ndarray | None = None,
        *,
        name: str = "volume.nii.gz",
        affine: np.ndarray = OBLIQUE_AFFINE,
    ) -> Path:
        path = tmp_path / name
        img = nib.Nifti1Image(ramp_volume() if data is None else data, affine)
        img.header.set_qform(affine, code=1)
        img.header.set_sform(affine, code=2)
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, path)
        return path

    return make


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """A copy of :data:`OBLIQUE_AFFINE`, the default affine of ``tmp_nifti``."""
    return OBLIQUE_AFFINE.copy()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-tensor tests.

    OpenMP start-up dominates on tiny tensors and stalls badly on a busy
    2-core box.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def menu_action() -> Callable:
    """``menu_action(viewer, "File", "Open Sample", ..., entry)``: the QAction a user clicks in the menu bar.

    Titles match from their start, without the "&" of shortcut keys. Menus
    filled by napari's app-model are opened (``aboutToShow``) on the way.
    """

    def find(viewer, *path):
        menu = viewer.window.main_menu
        for title in path:
            for action in menu.actions():
                if action.text().replace("&", "").startswith(title):
                    break
            else:
                raise LookupError(f"no {title!r} in {[a.text() for a in menu.actions()]}")
            if action.menu() is None:
                return action
            menu = action.menu()
            menu.aboutToShow.emit()
        raise LookupError(f"{path} is a menu, not an entry")

    return find


def halves_cube_and_outliers(n_hot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, truth) 32³: dark and bright halves, a brighter cube (1.6 % of the voxels), and ``n_hot`` isolated
    outliers far brighter still (a gold fiducial's voxels in a tomogram). With 20 of them a 3-component
    mixture spends its third cluster on the outliers."""
    shape = (32, 32, 32)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[:, :, 16:] = 1
    truth[4:12, 4:12, 4:12] = 2
    rng = np.random.default_rng(seed)
    image = np.array([0.0, 1.0, 2.0], np.float32)[truth] + rng.normal(scale=0.1, size=shape).astype(np.float32)
    image.reshape(-1)[rng.choice(image.size, n_hot, replace=False)] = 20.0
    return image, truth


@pytest.fixture
def outlier_volume() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`halves_cube_and_outliers`, for tests of a level the mixture's prior leaves short."""
    return halves_cube_and_outliers
