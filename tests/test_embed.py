"""Dense embedding: the fully convolutional path against the per-voxel reference."""

import numpy as np
import pytest
import torch

from napari_hypseg._errors import UserError
from napari_hypseg.model import HyperbolicVAE, ModelConfig
from napari_hypseg.segmentation.embed import EmbeddingCancelled, embed, embed_patches


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HyperbolicVAE(ModelConfig(channels=(4, 8, 8), kernel_size=3, hidden=16))  # m = 7
    m.set_normalization(-1.0, 1.0)
    return m.eval()


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(13, 17, 11)).astype(np.float32)
    vol[3:9, 4:12, 2:8] += 2.0
    return vol


def _all_coords(shape):
    return np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)


def test_dense_equals_per_voxel_patches_everywhere(model, volume):
    dense = embed(volume, model, device="cpu", chunk=5)
    assert dense.shape == (*volume.shape, 2) and dense.dtype == np.float32
    coords = _all_coords(volume.shape)
    reference = embed_patches(volume, model, coords, device="cpu")
    np.testing.assert_allclose(dense.reshape(-1, 2), reference, atol=1e-5)


def test_chunking_does_not_change_the_result(model, volume):
    a = embed(volume, model, device="cpu", chunk=4)
    b = embed(volume, model, device="cpu", chunk=64)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_stride_is_exact_on_its_grid_and_close_elsewhere(model, volume):
    exact = embed(volume, model, device="cpu")
    strided = embed(volume, model, device="cpu", stride=2, chunk=6)
    np.testing.assert_allclose(strided[::2, ::2, ::2], exact[::2, ::2, ::2], atol=1e-5)
    assert np.abs(strided - exact).mean() < np.abs(exact - exact.mean((0, 1, 2))).mean()


def test_window_resizing_matches_per_voxel_resized_patches_in_the_interior(model, volume):
    w = 5
    dense = embed(volume, model, window=w, device="cpu")
    coords = np.array([[6, 8, 5], [5, 9, 6], [7, 7, 4]])
    reference = embed_patches(volume, model, coords, window=w, device="cpu")
    # documented approximation: resampling the volume once vs. each window separately
    assert np.abs(dense[tuple(coords.T)] - reference).max() < 0.05


def test_fusion_concatenates_windows(model, volume):
    fused = embed(volume, model, window=[7, 5], device="cpu")
    single = embed(volume, model, device="cpu")
    assert fused.shape == (*volume.shape, 4)
    np.testing.assert_allclose(fused[..., :2], single, atol=1e-6)


def test_borders_do_not_form_their_own_cluster(model):
    """A homogeneous noisy volume must embed the same at the faces as inside (no zero-padding artefact)."""
    vol = np.random.default_rng(1).normal(size=(16, 16, 16)).astype(np.float32)
    emb = embed(vol, model, device="cpu")
    inner = emb[3:-3, 3:-3, 3:-3].reshape(-1, 2)
    face = np.concatenate([emb[0].reshape(-1, 2), emb[-1].reshape(-1, 2), emb[:, 0].reshape(-1, 2)])
    spread = inner.std(0).max()
    assert np.abs(face.mean(0) - inner.mean(0)).max() < spread


def test_out_array_and_memmap_input(model, volume, tmp_path):
    path = tmp_path / "vol.npy"
    np.save(path, volume)
    mapped = np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float32, shape=(*volume.shape, 2))
    result = embed(mapped, model, device="cpu", out=out, chunk=6)
    assert result is out
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), embed(volume, model, device="cpu"), atol=1e-6)


def test_progress_and_cancel(model, volume):
    seen = []
    embed(volume, model, device="cpu", chunk=5, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == len(seen) > 1
    with pytest.raises(EmbeddingCancelled):
        embed(volume, model, device="cpu", chunk=5, should_stop=lambda: True)


@pytest.mark.parametrize("bad", [np.zeros((5, 5)), np.full((6, 6, 6), np.nan), np.zeros((0, 4, 4))])
def test_bad_volumes_are_user_errors(model, bad):
    with pytest.raises(UserError):
        embed(bad, model, device="cpu")
