"""Blockwise dask embedding, one clustering across volumes, and a real two-process LocalCluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("distributed")
import dask.array as da  # noqa: E402

from napari_hypseg.model import HyperbolicVAE, ModelConfig  # noqa: E402
from napari_hypseg.segmentation.dataset import fit_blockwise, segment_dataset  # noqa: E402
from napari_hypseg.segmentation.dataset_clustering import DatasetClustering, fit_dataset_clustering  # noqa: E402
from napari_hypseg.segmentation.distributed import embed_dask  # noqa: E402
from napari_hypseg.segmentation.embed import embed  # noqa: E402
from napari_hypseg.segmentation.fusion import FusionConfig  # noqa: E402
from napari_hypseg.segmentation.metrics import dice_scores  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HyperbolicVAE(ModelConfig(channels=(4, 8, 8), kernel_size=3, hidden=16))  # m = 7, halo 3
    m.set_normalization(0.0, 1.0)
    return m.eval()


def _phantom(seed: int, shape=(20, 18, 16), offset=(0, 0, 0)):
    """A bright box in a dark noisy background, the box placed differently per volume."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    z, y, x = offset
    truth[4 + z : 12 + z, 4 + y : 12 + y, 3 + x : 10 + x] = 1
    return (truth + rng.normal(scale=0.15, size=shape)).astype(np.float32), truth


def _leftovers(folder):
    """Scratch and temporary names (hidden) in a folder, zarr's own metadata files aside."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in (".zgroup", ".zattrs")]


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as lc:
        with Client(lc) as client:
            yield client


def test_blockwise_embedding_equals_single_process_with_uneven_chunks(model):
    vol, _ = _phantom(0, shape=(23, 19, 14))
    reference = embed(vol, model, device="cpu")
    # chunks that do not divide the shape, some thinner than the halo (merged), edges uneven
    lazy = embed_dask(da.from_array(vol, chunks=(10, 7, 5)), model)
    assert lazy.numblocks[:3] != (1, 1, 1)
    out = lazy.compute(scheduler="sync")
    assert out.shape == reference.shape and out.dtype == np.float32
    assert np.abs(out - reference).max() <= 1e-5


def test_blockwise_embedding_on_two_worker_processes(model, cluster):
    vol, _ = _phantom(1, shape=(21, 17, 15))
    reference = embed(vol, model, device="cpu")
    lazy = embed_dask(da.from_array(vol, chunks=8), model)
    out = cluster.compute(lazy).result()
    assert np.abs(out - reference).max() <= 1e-5
    # the model is one graph key: every block task depends on it, no block carries its own copy
    keys = [k for k in lazy.__dask_graph__() if "hypseg-model" in str(k)]
    assert len(keys) == 1


def test_one_clustering_gives_the_same_id_to_the_same_material_in_two_volumes(model, tmp_path):
    (a, ta), (b, tb) = _phantom(2), _phantom(3, offset=(3, 2, 4))
    ea, eb = embed(a, model, device="cpu"), embed(b, model, device="cpu")
    fitted = fit_dataset_clustering(
        [a, b],
        [ea, eb],
        [2, 3],
        latent_dim=model.config.latent_dim,
        fusion=FusionConfig(intensity="raw"),
        seed=0,
        sample_size=4000,
    )
    path = fitted.save(tmp_path / "clusters.npz")
    loaded = DatasetClustering.load(path)
    la, lb = loaded.assign(a, ea), loaded.assign(b, eb)
    for labels, truth in ((la[2], ta), (lb[2], tb)):
        box = np.bincount(labels[truth == 1]).argmax()
        background = np.bincount(labels[truth == 0]).argmax()
        assert box != background
        assert (labels[truth == 1] == box).mean() > 0.9
    # the box is the same id in both volumes, and so is the background
    assert np.bincount(la[2][ta == 1]).argmax() == np.bincount(lb[2][tb == 1]).argmax()
    assert np.bincount(la[2][ta == 0]).argmax() == np.bincount(lb[2][tb == 0]).argmax()
    # loading reproduces the fitted object's labels exactly
    np.testing.assert_array_equal(fitted.assign(a, ea)[3], la[3])


@pytest.mark.parametrize(("noise", "model_kind"), [(0.02, "full"), (0.4, "tied")])
def test_dataset_clustering_models_covariance_by_the_noise(model, tmp_path, noise, model_kind):
    rng = np.random.default_rng(0)
    truths = [_phantom(5)[1], _phantom(6, offset=(2, 1, 3))[1]]
    volumes = [(t + rng.normal(scale=noise, size=t.shape)).astype(np.float32) for t in truths]
    fitted = fit_dataset_clustering(volumes, [None, None], [2, 3], latent_dim=2, seed=0, sample_size=4000)
    assert fitted.intensity == ("denoised" if model_kind == "tied" else "raw")
    loaded = DatasetClustering.load(fitted.save(tmp_path / "c.npz"))
    for k in (2, 3):
        cov = loaded.levels[k]["covariances"]
        assert cov.shape == (k, 1, 1)
        assert np.allclose(cov, cov[0]) == (model_kind == "tied")
    np.testing.assert_array_equal(loaded.assign(volumes[0], None)[2], fitted.assign(volumes[0], None)[2])
    assert dice_scores(loaded.assign(volumes[0], None)[2], truths[0]).mean > 0.8


def _three_slabs_padded(pad: int):
    """Three noisy slabs (0, 1, 2) and the same beside ``pad`` layers of a constant between two of them: a
    volume padded with a mid-range value, as a tomogram padded with its mean."""
    truth = np.zeros((20, 20, 24), np.uint8)
    truth[:, :, 8:] = 1
    truth[:, :, 16:] = 2
    image = (truth + np.random.default_rng(0).normal(scale=0.1, size=truth.shape)).astype(np.float32)
    return image, np.concatenate([image, np.full((20, 20, pad), np.float32(0.5))], axis=2)


def test_sample_leaves_a_mid_range_fill_out_of_the_fit_and_nothing_else():
    from napari_hypseg.segmentation import fit_sample
    from napari_hypseg.segmentation.dataset_clustering import intensity_bounds

    image, padded = _three_slabs_padded(16)
    every = np.stack(np.indices(padded.shape).reshape(3, -1), axis=1)
    sample = fit_sample.sample_in_memory(padded, intensity_bounds(padded), every)
    np.testing.assert_array_equal(sample.fitted, every[:, 2] < 24)  # the fill's faces and edge included
    plain = fit_sample.sample_in_memory(image, intensity_bounds(image), every[every[:, 2] < 24])
    assert plain.fitted.all()


@pytest.mark.parametrize("lazy", [False, True])
def test_dataset_fit_on_a_padded_volume_matches_the_unpadded_one(model, lazy):
    # fitted with its fill, a 40 % spike at 0.5 pulls the three components off the slabs (means -0.67 / 0.29 /
    # 1.76 standardised, against -1.24 / 0 / 1.22)
    image, padded = _three_slabs_padded(16)
    kw = dict(seed=0, sample_size=4000)
    if lazy:
        fitted = fit_blockwise([da.from_array(padded, chunks=10)], model, [3], **kw)
        reference = fit_blockwise([da.from_array(image, chunks=10)], model, [3], **kw)
    else:
        fitted = fit_dataset_clustering([padded], [None], [3], latent_dim=None, **kw)
        reference = fit_dataset_clustering([image], [None], [3], latent_dim=None, **kw)
    np.testing.assert_allclose(
        np.sort(fitted.levels[3]["means"].ravel()), np.sort(reference.levels[3]["means"].ravel()), atol=0.05
    )
    truth = np.repeat(np.repeat(np.arange(3), 8)[None, None], 20, 0).repeat(20, 1)
    assert dice_scores(fitted.assign(padded, None)[3][:, :, :24], truth).mean > 0.99


def test_clusters_file_loads_without_pickle(model, tmp_path):
    a, _ = _phantom(4)
    fitted = fit_dataset_clustering(
        [a],
        [embed(a, model, device="cpu")],
        [2],
        latent_dim=2,
        fusion=FusionConfig(intensity="auto"),
        seed=0,
        sample_size=2000,
    )
    path = fitted.save(tmp_path / "c.npz")
    with np.load(path, allow_pickle=False) as data:
        assert {"header", "k2_means", "k2_covariances", "k2_weights", "k2_ids", "embedding_axes"} <= set(data.files)
    assert DatasetClustering.load(path).intensity in ("raw", "denoised")


def test_distributed_labels_identical_to_in_process(model, cluster):
    volumes = [_phantom(s, offset=(s % 3, 0, s % 2))[0] for s in range(3)]
    kw = dict(fusion=FusionConfig(intensity="raw"), seed=0, sample_size=6000, chunks=9)
    clustering, local, _ = segment_dataset(volumes, model, [2, 4], **kw)
    _, remote, _ = segment_dataset(volumes, model, [2, 4], clustering=clustering, client=cluster, **kw)
    _, refit, _ = segment_dataset(volumes, model, [2, 4], client=cluster, **kw)
    for a, b, c in zip(local, remote, refit):
        for k in (2, 4):
            np.testing.assert_array_equal(a[k], b[k])
            np.testing.assert_array_equal(a[k], c[k])


@pytest.mark.parametrize(("noise", "kind"), [(0.02, "raw"), (0.4, "denoised")])
def test_a_fit_block_by_block_equals_the_fit_in_memory(model, noise, kind):
    from napari_hypseg.segmentation.dataset import fit_blockwise

    rng = np.random.default_rng(3)
    truths = [_phantom(20, shape=(60, 24, 24))[1], _phantom(21, shape=(60, 24, 24), offset=(30, 2, 1))[1]]
    volumes = [(t + rng.normal(scale=noise, size=t.shape)).astype(np.float32) for t in truths]
    kw = dict(seed=0, sample_size=6000)
    whole = fit_dataset_clustering(volumes, [None, None], [2, 3], latent_dim=2, **kw)
    # chunks of 10: the raw pass and the TV pass (16 voxels of context) both go block by block
    blocks = fit_blockwise([da.from_array(v, chunks=10) for v in volumes], model, [2, 3], **kw)
    assert whole.intensity == blocks.intensity == kind
    assert whole.tv_weight == blocks.tv_weight  # the noise σ of the same residuals
    for k in (2, 3):
        for name in ("weights", "means", "covariances"):
            np.testing.assert_allclose(blocks.levels[k][name], whole.levels[k][name], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(blocks.levels[k]["ids"], whole.levels[k]["ids"])


def test_a_fit_with_the_embedding_fused_block_by_block_equals_the_fit_in_memory(model):
    from napari_hypseg.segmentation.dataset import fit_blockwise

    volumes = [_phantom(24)[0], _phantom(25, offset=(2, 3, 1))[0]]
    kw = dict(fusion=FusionConfig(intensity="raw", embedding_weight=0.5), seed=0, sample_size=3000)
    whole = fit_dataset_clustering(
        volumes, [embed(v, model, device="cpu") for v in volumes], [2, 3], latent_dim=model.config.latent_dim, **kw
    )
    blocks = fit_blockwise([da.from_array(v, chunks=9) for v in volumes], model, [2, 3], **kw)
    assert blocks.embedding_weight == 0.5 and blocks.embedding_axes.shape == whole.embedding_axes.shape
    np.testing.assert_allclose(np.abs(blocks.embedding_axes), np.abs(whole.embedding_axes), atol=1e-4)
    for k in (2, 3):
        np.testing.assert_allclose(blocks.levels[k]["weights"], whole.levels[k]["weights"], atol=1e-4)


def test_a_large_volume_is_sampled_from_a_bounded_number_of_tiles():
    from napari_hypseg.segmentation import fit_sample

    shape = (300, 290, 310)  # 7 x 7 x 7 tiles of 48
    a = fit_sample.sample_positions(shape, 200_000, np.random.default_rng(5))
    b = fit_sample.sample_positions(shape, 200_000, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert len(a) == 200_000 and len(np.unique(a, axis=0)) == len(a)
    assert (a >= 0).all() and (a < np.array(shape)).all()
    assert (np.diff(np.ravel_multi_index(a.T, shape)) > 0).all()  # C order
    assert len(np.unique(a // fit_sample.TILE, axis=0)) == fit_sample.MAX_TILES
    # few samples wanted: few tiles, at least SAMPLES_PER_TILE voxels each
    few = fit_sample.sample_positions(shape, 2000, np.random.default_rng(5))
    assert len(np.unique(few // fit_sample.TILE, axis=0)) == -(-2000 // fit_sample.SAMPLES_PER_TILE)
    # a small volume stays uniform over all of it
    small = fit_sample.sample_positions((40, 30, 20), 10**6, np.random.default_rng(5))
    assert len(small) == 40 * 30 * 20


def test_a_fit_on_drawn_tiles_is_the_same_block_by_block(model, monkeypatch):
    from napari_hypseg.segmentation import fit_sample
    from napari_hypseg.segmentation.dataset import fit_blockwise

    monkeypatch.setattr(fit_sample, "TILE", 8)  # 8 x 3 x 3 tiles of 8 in each volume: 6 of them drawn
    rng = np.random.default_rng(6)
    truths = [_phantom(22, shape=(60, 24, 24))[1], _phantom(23, shape=(60, 24, 24), offset=(30, 2, 1))[1]]
    volumes = [(t + rng.normal(scale=0.4, size=t.shape)).astype(np.float32) for t in truths]
    kw = dict(seed=0, sample_size=6000)
    whole = fit_dataset_clustering(volumes, [None, None], [2, 3], latent_dim=2, **kw)
    blocks = fit_blockwise([da.from_array(v, chunks=(13, 11, 9)) for v in volumes], model, [2, 3], **kw)
    assert whole.intensity == blocks.intensity == "denoised" and whole.tv_weight == blocks.tv_weight
    for k in (2, 3):
        np.testing.assert_allclose(blocks.levels[k]["means"], whole.levels[k]["means"], rtol=1e-4, atol=1e-6)


def test_a_fit_holds_no_whole_volume_in_memory(model, tmp_path):
    """The fit reads each sampled block where it lies: this process's peak allocation stays far below the volume."""
    import tracemalloc

    from napari_hypseg.io import write_image
    from napari_hypseg.io.volume import Volume
    from napari_hypseg.segmentation.dataset import fit_blockwise, lazy_volume

    rng = np.random.default_rng(4)
    vol = rng.normal(size=(192, 192, 192)).astype(np.float32)  # 27 MiB
    vol[48:144, 48:144, 48:144] += 4.0
    path = tmp_path / "big.mrc"
    write_image(path, vol, like=Volume(vol, format="mrc"))
    size = vol.nbytes
    del vol
    lazy = lazy_volume(path, (192, 192, 192), np.float32, 32)
    kw = dict(fusion=FusionConfig(intensity="raw"), seed=0, sample_size=20000)
    fit_blockwise([lazy], model, [2], **kw)  # once first: what it imports is not the fit's memory
    tracemalloc.start()
    try:
        fitted = fit_blockwise([lazy], model, [2], **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    low, high = sorted(fitted.levels[2]["means"][:, 0])
    assert high - low > 2.0  # the box (+4 over unit noise) and the rest, in standardised units (sd about 1.7)
    # the percentiles' histograms (a few MiB whatever the volume's size) and the sample; whole, the volume alone
    assert peak < size / 2, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB volume"


# --- blockwise assignment: no task holds the whole volume --------------------


@pytest.mark.parametrize("chunks", [5, (9, 4, 7), 64])
def test_exact_percentiles_block_by_block(chunks):
    from napari_hypseg.segmentation import dataset_clustering as dc
    from napari_hypseg.segmentation.dataset import intensity_bounds

    rng = np.random.default_rng(8)
    volume = rng.normal(loc=-3.0, scale=2.0, size=(17, 13, 11)).astype(np.float32)
    volume[:5] = 0.0  # a flat region: many equal values around the 1st percentile's neighbours
    whole = dc.intensity_bounds(volume)
    assert intensity_bounds(da.from_array(volume, chunks=chunks)) == whole
    np.testing.assert_allclose(whole, np.percentile(volume, [1, 99]), rtol=1e-6)
    # a volume whose two percentiles coincide falls back to min..max, as channels.normalise does
    spiky = np.zeros((10, 10, 10), np.float32)
    spiky[0, 0, :3] = (-1.0, 5.0, 7.0)
    assert intensity_bounds(da.from_array(spiky, chunks=4)) == dc.intensity_bounds(spiky) == (-1.0, 7.0)


def test_bounds_of_several_volumes_at_once_equal_each_alone(cluster):
    """One histogram pass for all volumes (lazy or in memory, on workers or here) gives each volume's own bounds."""
    from napari_hypseg.segmentation import dataset_clustering as dc
    from napari_hypseg.segmentation.dataset import intensity_bounds_of

    rng = np.random.default_rng(3)
    volumes = [rng.normal(loc=i, scale=1 + i, size=(9 + i, 8, 7)).astype(np.float32) for i in range(3)]
    expected = [dc.intensity_bounds(v) for v in volumes]
    mixed = [da.from_array(volumes[0], chunks=4), volumes[1], da.from_array(volumes[2], chunks=(5, 8, 3))]
    assert intensity_bounds_of(mixed) == expected
    assert intensity_bounds_of(mixed, cluster) == expected
    assert len({b for b in expected}) == 3


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_blockwise_assignment_equals_the_in_memory_one_on_two_worker_processes(model, cluster, weight):
    """Labels block by block (a halo of the Potts prior's reach) are the whole-volume labels, voxel for voxel."""
    from napari_hypseg.segmentation.dataset import lazy_assignment
    from napari_hypseg.segmentation.distributed import model_payload

    (a, _), (b, _) = _phantom(20, shape=(26, 22, 19)), _phantom(21, shape=(26, 22, 19), offset=(4, 3, 2))
    ea, eb = embed(a, model, device="cpu"), embed(b, model, device="cpu")
    saved = fit_dataset_clustering(
        [a, b],
        [ea, eb],
        [2, 3],
        latent_dim=model.config.latent_dim,
        fusion=FusionConfig(intensity="raw", embedding_weight=weight),
        seed=0,
        sample_size=5000,
    )
    assert saved.halo == 5
    reference = saved.assign(b, eb, [2, 3])
    labels, embedding = lazy_assignment(
        da.from_array(b, chunks=(8, 7, 9)), model, [2, 3], saved, client=cluster, payload=model_payload(model)
    )
    # each block reads its own 8-voxel halo (the Potts prior's 5, the encoder's 3); only a face chunk
    # thinner than the encoder's mirror (4 voxels) is merged into its neighbour
    assert labels.numblocks[:3] == (3, 3, 2)
    got = cluster.compute(labels).result()
    for i, k in enumerate((2, 3)):
        np.testing.assert_array_equal(got[..., i], reference[k])
    assert np.abs(cluster.compute(embedding).result() - eb).max() <= 1e-5


def test_blockwise_tv_clustering_equals_the_in_memory_one_on_two_worker_processes(model, cluster):
    """A clustering of the TV-denoised channel is assigned block by block too: each block reads the TV
    filter's halo as well as the Potts prior's, and the labels are the whole-volume ones."""
    from napari_hypseg.segmentation import channels
    from napari_hypseg.segmentation.dataset import lazy_assignment
    from napari_hypseg.segmentation.distributed import model_payload

    shape = (96, 20, 18)  # blocks of 24 along z, each reading 21 + 3 voxels beyond it: most see part of the volume
    volume, truth = _phantom(30, shape=shape)
    volume += np.random.default_rng(1).normal(scale=0.3, size=shape).astype(np.float32)
    truth[60:80, 5:15, 4:14] = 1
    volume[60:80, 5:15, 4:14] += 1.0
    emb = embed(volume, model, device="cpu")
    saved = fit_dataset_clustering(
        [volume], [emb], [2, 3], latent_dim=2, fusion=FusionConfig(intensity="denoised"), seed=0, sample_size=20000
    )
    assert saved.halo == 5 + channels.TV_HALO
    reference = saved.assign(volume, emb, [2, 3])
    assert dice_scores(reference[2], truth).mean > 0.8  # a real segmentation, not a constant one
    labels, _ = lazy_assignment(
        da.from_array(volume, chunks=(24, 20, 18)), model, [2, 3], saved, client=cluster, payload=model_payload(model)
    )
    assert labels.numblocks[:3] == (4, 1, 1)
    got = cluster.compute(labels).result()
    for i, k in enumerate((2, 3)):
        np.testing.assert_array_equal(got[..., i], reference[k])
    # a volume one block and its halo would cover is one block: its blocks would each denoise all of it
    small = volume[:40]
    labels, _ = lazy_assignment(da.from_array(small, chunks=12), model, [2], saved, payload=model_payload(model))
    assert labels.numblocks[:3] == (1, 1, 1)
    np.testing.assert_array_equal(labels.compute(scheduler="sync")[..., 0], saved.assign(small, None, [2])[2])


def test_tv_of_a_block_with_its_halo_is_the_whole_volume_tv():
    from napari_hypseg.segmentation import channels
    from napari_hypseg.segmentation.dataset_clustering import intensity_bounds

    volume = np.random.default_rng(0).normal(size=(80, 24, 24)).astype(np.float32)
    volume[30:50] += 2.0
    bounds = intensity_bounds(volume)
    whole = channels.tv_denoise(volume)
    core = slice(32, 48)

    def block(halo):
        region = channels.tv_denoise(volume[32 - halo : 48 + halo], bounds=bounds)
        return region[halo : halo + 16]

    assert np.abs(block(channels.TV_HALO) - whole[core]).max() < 1e-4
    assert np.abs(block(2) - whole[core]).max() > 1e-3  # the halo is what makes it so


# --- OME-Zarr and the command line ------------------------------------------

from napari_hypseg.cli import main  # noqa: E402
from napari_hypseg.io import omezarr  # noqa: E402
from napari_hypseg.io.levels import MANIFEST_SUFFIX  # noqa: E402


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    from napari_hypseg.model.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", model)


def test_ome_zarr_labels_written_inside_the_image_and_readable_by_ome_zarr_py(tmp_path):
    vol, truth = _phantom(5, shape=(40, 36, 34))
    image = omezarr.write_image(tmp_path / "a.ome.zarr", vol, (2.0, 1.5, 1.5))
    read = omezarr.read_ome_zarr(image)
    assert type(read.data).__name__ == "Array" and read.spacing == (2.0, 1.5, 1.5)  # lazy dask array
    written = omezarr.write_label_levels(image, {2: (truth + 1).astype(np.uint8)}, read.spacing)
    assert written == [image / "labels" / "hypseg_k2"]
    assert not [p for p in (image / "labels").iterdir() if ".tmp" in p.name]
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    # ome-zarr-py opening the image discovers its labels group, with the pyramid and colours
    nodes = [n for n in Reader(parse_url(str(image)))() if n.data]
    label = next(n for n in nodes if n.data[0].dtype == np.uint8)
    assert label.metadata["color"]
    image_node = next(n for n in nodes if n.data[0].dtype == np.float32)
    assert len(label.data) == 2 and tuple(label.data[1].shape) == (20, 18, 17)
    np.testing.assert_array_equal(np.asarray(label.data[0]), truth + 1)
    np.testing.assert_array_equal(np.asarray(image_node.data[0]), vol)
    levels, meta = omezarr.read_labels_multiscale(written[0])
    assert meta["scale"] == [2.0, 1.5, 1.5] and len(levels) == 2


def test_cli_one_clustering_on_two_workers_then_reuse_and_skip(model_file, tmp_path, capsys):
    from napari_hypseg.io import read_volume, write_image
    from napari_hypseg.io.volume import Volume

    files = []
    for s in range(2):
        vol, _ = _phantom(10 + s, offset=(s, s, 0))
        path = tmp_path / f"v{s}.mrc"
        write_image(path, vol, like=Volume(vol, affine=np.diag([1.0, 1.0, 1.0, 1.0]), format="mrc"))
        files.append(str(path))
    clusters = tmp_path / "clusters.npz"
    out1 = tmp_path / "out1"
    assert (
        main(
            [
                "segment",
                *files,
                "--model",
                str(model_file),
                "--out-dir",
                str(out1),
                "--clusters",
                "2,3",
                "--device",
                "cpu",
                "--workers",
                "2",
                "--chunk",
                "9",
                "--save-clusters",
                str(clusters),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "dask dashboard" in err and clusters.is_file()
    assert "sample" in err and "embed+assign blocks" in err  # progress: the fit's sample, then the blocks
    out2 = tmp_path / "out2"
    args = [
        "segment",
        *files,
        "--model",
        str(model_file),
        "--out-dir",
        str(out2),
        "--clusters",
        "2,3",
        "--device",
        "cpu",
        "--chunk",
        "9",
        "--clusters-from",
        str(clusters),
        "--format",
        "ome-zarr",
    ]
    assert main(args) == 0
    capsys.readouterr()
    for s in range(2):
        a = read_volume(out1 / f"v{s}_k3.mrc").data
        b = np.asarray(omezarr.read_labels_multiscale(out2 / f"v{s}_labels.ome.zarr" / "labels" / "hypseg_k3")[0][0])
        np.testing.assert_array_equal(a, b)  # in-process with the saved clustering == two workers fitting it
    stamp = (out2 / "v0_manifest.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().err
    assert (out2 / "v0_manifest.json").stat().st_mtime_ns == stamp


def test_cli_outputs_are_written_by_the_workers_and_equal_the_in_process_ones(model, model_file, tmp_path, capsys):
    """On a cluster each volume's outputs (NIfTI labels streamed slab by slab, statistics tables,
    embedding, manifest) are one task on a worker, not work of this process; the files hold what the
    in-process run writes."""
    import nibabel as nib
    from distributed import Client, LocalCluster, get_task_stream

    from napari_hypseg.cluster import WORKER_PRELOAD
    from napari_hypseg.io import write_image
    from napari_hypseg.io.volume import Volume

    files, volumes = [], []
    for s in range(3):
        vol, _ = _phantom(30 + s, offset=(s, 0, s))
        volumes.append(vol)
        files.append(str(write_image(tmp_path / f"v{s}.mrc", vol, like=Volume(vol, format="mrc"))))
    clusters = fit_dataset_clustering(
        volumes, [embed(v, model, device="cpu") for v in volumes], [2, 3], latent_dim=2, seed=0, sample_size=4000
    ).save(tmp_path / "c.npz")
    common = ["--model", str(model_file), "--clusters", "2,3", "--device", "cpu", "--chunk", "9"]
    common += ["--clusters-from", str(clusters), "--format", "nii.gz"]
    assert main(["segment", *files, *common, "--out-dir", str(tmp_path / "here")]) == 0
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, preload=[WORKER_PRELOAD]
        ) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        there = ["--out-dir", str(tmp_path / "there"), "--scheduler", cluster.scheduler_address]
        assert main(["segment", *files, *common, *there]) == 0
        workers = set(client.scheduler_info()["workers"])
    capsys.readouterr()
    writes = [task for task in stream.data if str(task["key"]).startswith("hypseg-write-")]
    assert len(writes) == 3 and all(task["worker"] in workers for task in writes)
    here = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert here == sorted(p.name for p in (tmp_path / "there").iterdir())
    assert len([n for n in here if n.endswith(".nii.gz")]) == 6
    for name in here:
        a, b = tmp_path / "here" / name, tmp_path / "there" / name
        if name.endswith(".nii.gz"):
            np.testing.assert_array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj))
        elif name.endswith((".csv", ".npy")):
            assert a.read_bytes() == b.read_bytes(), name


def test_cli_raw_clustering_streams_ome_zarr_block_by_block_on_two_workers(model_file, tmp_path, capsys):
    """A raw-intensity clustering fitted here, then volumes streamed with it: in-process and on two workers,
    the labels of the in-memory fit run, and the same embedding."""
    from napari_hypseg.io import read_volume, write_image
    from napari_hypseg.io.volume import Volume

    files = []
    for s in range(2):
        vol, _ = _phantom(40 + s, shape=(24, 20, 19), offset=(s, s, 0))
        path = tmp_path / f"v{s}.mrc"
        write_image(path, vol, like=Volume(vol, format="mrc"))
        files.append(str(path))
    clusters = tmp_path / "raw.npz"
    common = [*files, "--model", str(model_file), "--clusters", "2,3", "--device", "cpu", "--chunk", "9"]
    assert (
        main(
            [
                "segment",
                *common,
                "--out-dir",
                str(tmp_path / "fit"),
                "--intensity",
                "raw",
                "--save-clusters",
                str(clusters),
            ]
        )
        == 0
    )
    capsys.readouterr()
    streamed = {}
    for name, extra in (("here", []), ("workers", ["--workers", "2"])):
        out = tmp_path / name
        assert (
            main(
                [
                    "segment",
                    *common,
                    "--out-dir",
                    str(out),
                    "--clusters-from",
                    str(clusters),
                    "--format",
                    "ome-zarr",
                    *extra,
                ]
            )
            == 0
        )
        assert "embed+assign blocks" in capsys.readouterr().err or not extra  # block progress on workers
        assert not _leftovers(out)
        streamed[name] = out
    for s in range(2):
        for k in (2, 3):
            fitted = read_volume(tmp_path / "fit" / f"v{s}_k{k}.mrc").data
            for out in streamed.values():
                level = out / f"v{s}_labels.ome.zarr" / "labels" / f"hypseg_k{k}"
                np.testing.assert_array_equal(np.asarray(omezarr.read_labels_multiscale(level)[0][0]), fitted)
        here, there = (np.load(out / f"v{s}_embedding.npy") for out in streamed.values())
        np.testing.assert_array_equal(here, there)
        assert np.abs(here - np.load(tmp_path / "fit" / f"v{s}_embedding.npy")).max() <= 1e-5
    # MRC files too are written from the scratch blocks slab by slab: the same files as the in-memory fit run's
    out = tmp_path / "mrc"
    assert main(["segment", *common, "--out-dir", str(out), "--clusters-from", str(clusters), "--workers", "2"]) == 0
    capsys.readouterr()
    assert not _leftovers(out)
    for s in range(2):
        for k in (2, 3):
            np.testing.assert_array_equal(
                read_volume(out / f"v{s}_k{k}.mrc").data, read_volume(tmp_path / "fit" / f"v{s}_k{k}.mrc").data
            )
            stats = (out / f"v{s}_k{k}_stats.csv").read_text()
            assert stats == (tmp_path / "fit" / f"v{s}_k{k}_stats.csv").read_text()
        assert json.loads((out / f"v{s}_manifest.json").read_text())["levels"] == [2, 3]
    code = main(
        ["segment", *common, "--out-dir", str(tmp_path / "x"), "--clusters-from", str(clusters), "--intensity", "raw"]
    )
    assert code == 2 and "--intensity" in capsys.readouterr().err


def test_napari_reader_opens_ome_zarr_lazily_as_multiscale_image_and_labels(tmp_path):
    from napari_hypseg._napari._reader import get_ome_zarr_reader, get_reader

    vol, truth = _phantom(6, shape=(40, 36, 34))
    image = omezarr.write_image(tmp_path / "b.ome.zarr", vol, (2.0, 1.5, 1.5))
    omezarr.write_label_levels(image, {2: (truth + 1).astype(np.uint8)}, (2.0, 1.5, 1.5))
    assert get_reader(str(image)) is None  # the MRC/NIfTI reader leaves folders alone
    reader = get_ome_zarr_reader(str(image))
    (img, img_kw, img_kind), (lab, lab_kw, lab_kind) = reader(str(image))
    assert (img_kind, lab_kind) == ("image", "labels")
    assert type(img).__name__ == "Array" and not img_kw["multiscale"]  # one level: the array itself
    assert type(lab[0]).__name__ == "Array" and len(lab) == 2 and lab_kw["multiscale"]
    assert lab_kw["scale"] == [2.0, 1.5, 1.5] == img_kw["scale"]
    np.testing.assert_array_equal(np.asarray(lab[0]), truth + 1)
    assert get_ome_zarr_reader(str(tmp_path)) is None


def test_documented_slurm_cluster_job_script():
    pytest.importorskip("dask_jobqueue")
    from napari_hypseg.cluster import slurm_cluster

    with slurm_cluster(queue="gpu", cores=8, memory="32GB", gpus=2, walltime="01:00:00") as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p gpu" in script and "#SBATCH --gres=gpu:2" in script
    assert "#SBATCH -t 01:00:00" in script and "export OMP_NUM_THREADS=4" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "--nworkers 2" in script and script.count("--nthreads") == 1 and "--nthreads 1" in script
    assert "--preload napari_hypseg.segmentation.worker_preload" in script


def test_local_workers_start_with_the_block_tasks_imports_done():
    import argparse

    from napari_hypseg.cli._dataset import dask_client

    with dask_client(argparse.Namespace(workers=1, scheduler=None)) as client:
        loaded = client.run(
            lambda: [m in __import__("sys").modules for m in ("sklearn.mixture", "skimage.restoration")]
        )
    assert list(loaded.values()) == [[True, True]]


def test_cli_ome_zarr_input_gets_its_labels_inside_it(model_file, tmp_path, capsys):
    vol, truth = _phantom(12, shape=(24, 22, 20))
    image = omezarr.write_image(tmp_path / "c.ome.zarr", vol, (3.0, 2.0, 2.0))
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(image),
                "--model",
                str(model_file),
                "--out-dir",
                str(out),
                "--clusters",
                "2",
                "--device",
                "cpu",
                "--chunk",
                "12",
            ]
        )
        == 0
    )
    capsys.readouterr()
    labels, meta = omezarr.read_labels_multiscale(image / "labels" / "hypseg_k2")
    assert meta["scale"] == [3.0, 2.0, 2.0] and labels[0].shape == vol.shape
    assert set(np.unique(np.asarray(labels[0]))) == {1, 2}
    assert (out / "c_manifest.json").is_file()
    # the same run written as MRC keeps the OME-Zarr scale as the voxel size, and the same labels
    from napari_hypseg.io import read_volume

    assert (
        main(
            [
                "segment",
                str(image),
                "--model",
                str(model_file),
                "--out-dir",
                str(tmp_path / "mrc"),
                "--clusters",
                "2",
                "--device",
                "cpu",
                "--chunk",
                "12",
                "--format",
                "mrc",
            ]
        )
        == 0
    )
    capsys.readouterr()
    mrc = read_volume(tmp_path / "mrc" / "c_k2.mrc")
    assert mrc.spacing == pytest.approx((3.0, 2.0, 2.0))
    np.testing.assert_array_equal(mrc.data, np.asarray(labels[0]))


@pytest.mark.gui
def test_ome_zarr_opens_in_a_real_viewer_as_multiscale_layers(make_napari_viewer, tmp_path):
    vol, truth = _phantom(7, shape=(40, 36, 34))
    image = omezarr.write_image(tmp_path / "v.ome.zarr", vol, (2.0, 1.5, 1.5))
    omezarr.write_label_levels(image, {2: (truth + 1).astype(np.uint8)}, (2.0, 1.5, 1.5))
    viewer = make_napari_viewer()
    layers = viewer.open(str(image), plugin="napari-hypseg")
    kinds = sorted(type(layer).__name__ for layer in layers)
    assert kinds == ["Image", "Labels"]
    labels = next(layer for layer in layers if type(layer).__name__ == "Labels")
    assert labels.multiscale and tuple(labels.scale) == (2.0, 1.5, 1.5)


# --- the dataset path plans its outputs as single volumes do ------------------


def _mrc(path, vol):
    from napari_hypseg.io import write_image
    from napari_hypseg.io.volume import Volume

    return write_image(path, vol, like=Volume(vol, format="mrc"))


def test_dataset_path_refuses_to_overwrite_an_input_before_any_work(model_file, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    vol, _ = _phantom(30)
    _mrc(folder / "a.mrc", vol)
    _mrc(folder / "a_k2.mrc", vol)  # segmenting a.mrc into this folder would replace it
    code = main(
        [
            "segment",
            str(folder / "*.mrc"),
            "--model",
            str(model_file),
            "--out-dir",
            str(folder),
            "--clusters",
            "2",
            "--device",
            "cpu",
            "--save-clusters",
            str(tmp_path / "c.npz"),
        ]
    )
    assert code == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists() and not (folder / "a_embedding.npy").exists()
    # OME-Zarr output: a labels folder beside an MRC input would replace an OME-Zarr input of that name
    zfolder = tmp_path / "zin"
    zfolder.mkdir()
    _mrc(zfolder / "b.mrc", vol)
    omezarr.write_image(zfolder / "b_labels.ome.zarr", vol, (1.0, 1.0, 1.0))
    code = main(
        [
            "segment",
            str(zfolder / "b.mrc"),
            str(zfolder / "b_labels.ome.zarr"),
            "--model",
            str(model_file),
            "--out-dir",
            str(zfolder),
            "--clusters",
            "2",
            "--device",
            "cpu",
            "--format",
            "ome-zarr",
        ]
    )
    assert code == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert not (zfolder / "b_embedding.npy").exists()


def test_a_failed_dataset_run_leaves_no_half_written_labels_and_the_rerun_resumes(model, model_file, tmp_path, capsys):
    """A chunk of the input breaks mid-run: the manifest is gone, each label array is absent or the previous
    complete one, nothing temporary is left; once repaired, the run completes."""
    vol, _ = _phantom(31, shape=(70, 22, 20))  # two zarr chunks along z
    image = omezarr.write_image(tmp_path / "c.ome.zarr", vol, (1.0, 1.0, 1.0))
    saved = fit_dataset_clustering(
        [vol],
        [embed(vol, model, device="cpu")],
        [2, 3],
        latent_dim=2,
        fusion=FusionConfig(intensity="raw"),
        seed=0,
        sample_size=4000,
    )
    clusters = saved.save(tmp_path / "c.npz")
    out = tmp_path / "out"
    base = [
        "segment",
        str(image),
        "--model",
        str(model_file),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--chunk",
        "12",
        "--clusters-from",
        str(clusters),
    ]
    assert main([*base, "--clusters", "2"]) == 0
    capsys.readouterr()
    k2 = image / "labels" / "hypseg_k2"
    before = np.asarray(omezarr.read_labels_multiscale(k2)[0][0])
    chunk = image / "0" / "1.0.0"
    intact = chunk.read_bytes()
    chunk.write_bytes(b"not a compressed chunk")
    with pytest.raises(Exception):  # noqa: B017 - whatever the decompressor raises
        main([*base, "--clusters", "2,3"])
    capsys.readouterr()
    assert not (out / "c_manifest.json").exists()
    np.testing.assert_array_equal(np.asarray(omezarr.read_labels_multiscale(k2)[0][0]), before)
    assert not (image / "labels" / "hypseg_k3").exists()
    assert not _leftovers(image / "labels") and not _leftovers(out)
    chunk.write_bytes(intact)
    assert main([*base, "--clusters", "2,3"]) == 0
    capsys.readouterr()
    record = json.loads((out / "c_manifest.json").read_text())
    assert record["levels"] == [2, 3]
    np.testing.assert_array_equal(
        np.asarray(omezarr.read_labels_multiscale(image / "labels" / "hypseg_k3")[0][0]),
        saved.assign(vol, None, [3])[3],
    )


def _worker_run_on_images(tmp_path, model, model_file, seeds):
    """OME-Zarr phantoms of two zarr chunks along z, one per seed, a raw clustering saved for them, and the
    arguments of ``hypseg segment`` on two workers with it: (images, volumes, clustering, out dir, args)."""
    images, volumes = [], []
    for n, seed in enumerate(seeds):
        vol, _ = _phantom(seed, shape=(70, 22, 20))
        volumes.append(vol)
        images.append(omezarr.write_image(tmp_path / f"v{n}.ome.zarr", vol, (1.0, 1.0, 1.0)))
    saved = fit_dataset_clustering(
        volumes,
        [embed(v, model, device="cpu") for v in volumes],
        [2],
        latent_dim=2,
        fusion=FusionConfig(intensity="raw"),
        seed=0,
        sample_size=4000,
    )
    clusters = saved.save(tmp_path / "c.npz")
    out = tmp_path / "out"
    args = ["segment", *map(str, images), "--model", str(model_file), "--out-dir", str(out), "--device", "cpu"]
    args += ["--chunk", "24", "--clusters", "2", "--clusters-from", str(clusters), "--workers", "2"]
    return images, volumes, saved, out, args


def test_a_volume_failing_while_the_next_is_in_flight_leaves_neither_half_written(model, model_file, tmp_path, capsys):
    """On workers, the next volumes are started before this one's outputs are written: when writing one fails
    (here its labels folder is taken by a file), the volume in flight behind it is abandoned, each volume ends
    complete (its manifest) or leaves nothing, no scratch anywhere; the rerun completes the rest."""
    images, volumes, saved, out, args = _worker_run_on_images(tmp_path, model, model_file, seeds=(50, 51, 52))
    in_the_way = images[1] / "labels"
    in_the_way.write_text("not a labels group")
    with pytest.raises(Exception):  # noqa: B017 - whatever zarr raises
        main(args)
    capsys.readouterr()
    complete = [(out / f"v{s}{MANIFEST_SUFFIX}").exists() for s in range(3)]
    assert complete[0] and not complete[1]  # the one before the failure was finished first
    for image, done in zip(images, complete):
        if image != images[1]:
            assert (image / "labels" / "hypseg_k2").exists() == done
            assert not _leftovers(image) and (not done or not _leftovers(image / "labels"))
    assert not _leftovers(out)
    stamp = (out / f"v0{MANIFEST_SUFFIX}").stat().st_mtime_ns
    in_the_way.unlink()
    assert main(args) == 0
    capsys.readouterr()
    assert (out / f"v0{MANIFEST_SUFFIX}").stat().st_mtime_ns == stamp  # resumed, not redone
    for image, vol in zip(images, volumes):
        np.testing.assert_array_equal(
            np.asarray(omezarr.read_labels_multiscale(image / "labels" / "hypseg_k2")[0][0]),
            saved.assign(vol, None, [2])[2],
        )


def test_a_broken_volume_stops_a_run_on_workers_before_any_volume_is_touched(model, model_file, tmp_path, capsys):
    """On workers every volume's intensity bounds are read first: a broken chunk in the second volume stops
    the run there, nothing written for either volume; once repaired, the run completes both."""
    images, volumes, saved, out, args = _worker_run_on_images(tmp_path, model, model_file, seeds=(60, 61))
    chunk = images[1] / "0" / "1.0.0"
    intact = chunk.read_bytes()
    chunk.write_bytes(b"not a compressed chunk")
    with pytest.raises(Exception):  # noqa: B017 - whatever the decompressor raises
        main(args)
    capsys.readouterr()
    for image in images:
        assert not (image / "labels").exists() and not _leftovers(image)
    assert not out.exists() or not any(out.iterdir())
    chunk.write_bytes(intact)
    assert main(args) == 0
    capsys.readouterr()
    for image, vol in zip(images, volumes):
        np.testing.assert_array_equal(
            np.asarray(omezarr.read_labels_multiscale(image / "labels" / "hypseg_k2")[0][0]),
            saved.assign(vol, None, [2])[2],
        )


def test_a_worker_killed_mid_run_leaves_the_labels_unchanged(model):
    """One of two worker processes is killed (SIGKILL) while blocks are being computed: its nanny
    restarts it, dask reruns the lost tasks, and the labels equal the in-process ones."""
    import os
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    volumes = [_phantom(s, shape=(24, 22, 20))[0] for s in range(4)]
    kw = dict(fusion=FusionConfig(intensity="raw"), seed=0, sample_size=6000, chunks=9)
    clustering, reference, _ = segment_dataset(volumes, model, [2, 3], **kw)  # then block by block: many small tasks

    def results_held(dask_scheduler):
        return sum(ts.state == "memory" for ts in dask_scheduler.tasks.values())

    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        pids = sorted(client.run(os.getpid).values())
        outcome = {}

        def run():
            try:
                outcome["labels"] = segment_dataset(volumes, model, [2, 3], clustering=clustering, client=client, **kw)[
                    1
                ]
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        # the model, the clustering and at least two blocks are on the workers: the run is under way
        while thread.is_alive() and time.monotonic() < deadline and client.run_on_scheduler(results_held) < 4:
            time.sleep(0.02)
        killed_mid_run = thread.is_alive()
        os.kill(pids[0], signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive(), "the run hung after a worker was killed"
    assert killed_mid_run, "the run ended before the kill: make it longer"
    assert "error" not in outcome, f"the run failed after a worker was killed: {outcome.get('error')!r}"
    for got, want in zip(outcome["labels"], reference):
        for k in (2, 3):
            np.testing.assert_array_equal(got[k], want[k])
