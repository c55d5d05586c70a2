"""Multi-scale triplet sampler and Trainer: real training steps on small volumes."""

import threading
import time

import numpy as np
import pytest
import torch

from napari_hypseg._errors import UserError
from napari_hypseg.model import ModelConfig, load_model
from napari_hypseg.training import SamplerConfig, TrainConfig, Trainer, TripletSampler

SMALL = ModelConfig(channels=(4, 8), kernel_size=3, hidden=16)  # m = 5
FAST = TrainConfig(
    steps=6,
    batch_size=4,
    log_every=2,
    preview_every=3,
    preview_points=64,
    sampler=SamplerConfig(anchor_min=6, anchor_max=14, child_min=3, child_gap=2),
)


def _volume(shape=(20, 24, 22), seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.normal(size=shape).astype(np.float32)
    vol[4:12, 6:18, 5:15] += 3.0
    return vol


def _sampler(vol, m=5, config=FAST.sampler, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return TripletSampler([torch.from_numpy(vol)], m, lambda x: x, config, gen)


def test_boxes_are_nested_disjoint_and_inside():
    vol = _volume((30, 18, 25))
    batch = _sampler(vol).sample(256)
    shape = torch.tensor(vol.shape, dtype=torch.float32)
    a_s, a_e = batch.anchor_box.unbind(1)
    p_s, p_e = batch.positive_box.unbind(1)
    n_s, n_e = batch.negative_box.unbind(1)
    for start, edge in [(a_s, a_e), (p_s, p_e), (n_s, n_e)]:
        assert (start >= 0).all() and (start + edge <= shape).all()
    # positive nested inside its anchor and smaller
    assert (p_s >= a_s).all() and (p_s + p_e <= a_s + a_e).all()
    assert (p_e.min(1).values <= a_e.min(1).values - FAST.sampler.child_gap).all() | (
        p_e.min(1).values == FAST.sampler.child_min
    ).all()
    # negative: same size as the positive, disjoint from the anchor along some axis
    assert torch.equal(n_e, p_e)
    disjoint = ((n_s + n_e <= a_s) | (n_s >= a_s + a_e)).any(1)
    assert disjoint.float().mean() > 0.95  # only anchors that fill the volume may leave no room
    assert batch.anchor.shape == batch.positive.shape == batch.negative.shape == (256, 1, 5, 5, 5)


def test_content_negatives_miss_the_anchor_and_differ_most_from_the_positive():
    """Of the candidate boxes, the negative is the one whose mean and sd are farthest from the positive's."""
    vol = _volume((30, 18, 25))
    cfg = SamplerConfig(anchor_min=6, anchor_max=14, child_min=3, child_gap=2, negatives="content")
    sampler = _sampler(vol, config=cfg)
    batch = sampler.sample(64)
    a_s, a_e = batch.anchor_box.unbind(1)
    n_s, n_e = batch.negative_box.unbind(1)
    assert torch.equal(n_e, batch.positive_box[:, 1])
    assert ((n_s + n_e <= a_s) | (n_s >= a_s + a_e)).any(1).float().mean() > 0.95  # as spatial negatives
    # the patch returned is the one read at the box returned
    assert torch.allclose(batch.negative, sampler._read(sampler.volumes[0], n_s, n_e), atol=1e-6)
    # farther in content from the positive than spatial negatives are, on average
    spatial = _sampler(vol, config=SamplerConfig(anchor_min=6, anchor_max=14, child_min=3, child_gap=2)).sample(64)

    def gap(b):
        return (b.negative.flatten(1).mean(1) - b.positive.flatten(1).mean(1)).abs().mean()

    assert gap(batch) > gap(spatial)
    with pytest.raises(ValueError, match="negatives"):
        SamplerConfig(negatives="hard")


def test_patch_of_edge_m_reads_exact_voxels():
    vol = _volume()
    sampler = _sampler(vol, m=5)
    start = torch.tensor([[3.0, 7.0, 2.0]])
    patch = sampler._read(sampler.volumes[0], start, torch.full((1, 3), 5.0))
    assert np.allclose(patch[0, 0].numpy(), vol[3:8, 7:12, 2:7], atol=1e-5)


def test_cpu_crops_sample_the_same_points_as_grid_sample():
    vol = _volume((30, 18, 25))
    sampler = _sampler(vol, m=5)
    volume = sampler.volumes[0]
    batch = sampler.sample(64)
    for box in (batch.anchor_box, batch.positive_box):
        start, edge = box.unbind(1)
        crops = sampler._read_crops(volume, start, edge)
        grid = sampler._read_grid(volume, start, edge)
        assert crops.shape == grid.shape == (64, 1, 5, 5, 5)
        large = (edge >= 5).all(1)  # boxes of edge >= m: both read inside the box, identically
        assert large.sum() > 10
        assert torch.allclose(crops[large], grid[large], atol=1e-5)
        # smaller boxes differ only at the outermost half voxel (clamp vs. neighbour)
        inner = (slice(None), 0, slice(1, -1), slice(1, -1), slice(1, -1))
        assert torch.allclose(crops[inner], grid[inner], atol=1e-5)


def test_anisotropic_and_log_scale_sampling():
    vol = _volume((8, 60, 40))
    cfg = SamplerConfig(anchor_min=6, anchor_max=50, child_min=3, child_gap=2, scale_sampling="log")
    batch = _sampler(vol, config=cfg).sample(64)
    assert (batch.anchor_box[:, 1, 0] <= 8).all()  # clipped to the thin axis
    assert batch.anchor_box[:, 1, 1].max() > 20


def test_homogeneous_background_anchors_are_skipped():
    vol = np.zeros((40, 40, 40), np.float32)
    vol[:, :, :10] = np.random.default_rng(0).normal(size=(40, 40, 10))
    cfg = SamplerConfig(anchor_min=6, anchor_max=8, child_min=3, child_gap=2)
    batch = _sampler(vol, config=cfg).sample(16)
    assert (batch.anchor.flatten(1).std(1) > 1e-3).all()


def test_sampling_is_seeded():
    vol = _volume()
    a = _sampler(vol, seed=3).sample(8)
    b = _sampler(vol, seed=3).sample(8)
    assert torch.equal(a.anchor, b.anchor) and torch.equal(a.negative_box, b.negative_box)


def test_training_events_losses_fall_and_model_saved(tmp_path):
    vol = _volume()
    cfg = FAST.with_(steps=30, log_every=10, batch_size=8, lr=3e-3)
    trainer = Trainer(vol, model_config=SMALL, train_config=cfg, checkpoint_path=tmp_path / "m.pt")
    events = list(trainer.run())
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [10, 20, 30]
    assert all({"loss", "recon", "kl", "triplet"} <= set(e.losses) for e in steps)
    assert steps[-1].losses["recon"] < steps[0].losses["recon"]
    assert all(e.steps_per_s > 0 for e in steps)
    previews = [e.preview for e in events if e.kind == "preview"]
    assert previews and previews[0].embedding.shape == (len(previews[0].coords), 2)
    assert (np.linalg.norm(previews[0].embedding, axis=1) < 1).all()
    model = load_model(tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["step"] == 30
    assert model.intensity_high.item() > model.intensity_low.item()


def test_training_is_deterministic_on_cpu():
    vol = _volume()
    weights = []
    for _ in range(2):
        trainer = Trainer(vol, model_config=SMALL, train_config=FAST.with_(preview_every=0, seed=5))
        trainer.fit()
        weights.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_an_8_bit_memory_mapped_tomogram_is_trained_on_in_place(tmp_path):
    """On the CPU the sampler reads the file's int8 memory map box by box: no float32 copy of the volume,
    and the same patches and weights as from the float32 volume."""
    import mrcfile

    from napari_hypseg.io import read_volume

    vol = np.clip(_volume() * 20, -128, 127).astype(np.int8)
    path = tmp_path / "tomo8.mrc"
    with mrcfile.new(path) as mrc:  # mode 0, as 8-bit tomograms come
        mrc.set_data(vol)
    mapped = read_volume(path).data
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.int8
    cfg = FAST.with_(preview_every=0, seed=2)
    in_place = Trainer(mapped, model_config=SMALL, train_config=cfg)
    tensor = in_place.sampler.volumes[0]
    assert tensor.dtype == torch.int8 and tensor.data_ptr() == mapped.ctypes.data  # the map itself
    copied = Trainer(vol.astype(np.float32), model_config=SMALL, train_config=cfg)
    a, b = in_place.sampler.sample(6), copied.sampler.sample(6)
    assert a.anchor.dtype == torch.float32 and torch.equal(a.all_patches(), b.all_patches())
    # each trained right after it is made: a run draws from torch's global generator, seeded when made
    in_place = Trainer(mapped, model_config=SMALL, train_config=cfg)
    in_place.fit()
    copied = Trainer(vol.astype(np.float32), model_config=SMALL, train_config=cfg)
    copied.fit()
    for p, q in zip(in_place.model.parameters(), copied.model.parameters()):
        assert torch.equal(p, q)


def test_volumes_too_large_for_the_gpu_stay_on_the_host():
    """On a GPU the sampler holds the volumes there only while they take at most DEVICE_VOLUME_SHARE of its
    free memory; past it (a dataset of large tomograms) they stay in host memory. The CPU is never moved."""
    from napari_hypseg.training.trainer import DEVICE_VOLUME_SHARE, sampling_device

    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    free = 8 << 30
    assert sampling_device(gpu, int(DEVICE_VOLUME_SHARE * free), free) == gpu
    assert sampling_device(gpu, int(DEVICE_VOLUME_SHARE * free) + 1, free) == cpu
    assert sampling_device(cpu, 1 << 50, None) == cpu


def test_patches_read_on_the_host_are_normalised_as_by_the_model():
    """The normaliser used when the volumes stay on the host while the model is on a GPU maps intensities
    exactly as the model's own (a trained model's percentiles)."""
    from napari_hypseg.training.trainer import _fixed_normaliser

    trainer = Trainer(_volume(), model_config=SMALL, train_config=FAST)
    assert trainer.sampling_device == trainer.device
    x = torch.cat([torch.linspace(-3.0, 5.0, 101), torch.tensor([-1e9, 1e9])])
    torch.testing.assert_close(_fixed_normaliser(trainer.model)(x), trainer.model.normalize(x))
    assert float(trainer.model.intensity_high) > float(trainer.model.intensity_low)


def test_cancel_from_another_thread_stops_quickly_and_keeps_model(tmp_path):
    vol = _volume()
    trainer = Trainer(
        vol,
        model_config=SMALL,
        train_config=FAST.with_(steps=100_000, preview_every=0),
        checkpoint_path=tmp_path / "m.pt",
    )
    timer = threading.Timer(0.5, trainer.cancel)
    t0 = time.perf_counter()
    timer.start()
    events = list(trainer.run())
    assert events[-1].kind == "cancelled"
    assert time.perf_counter() - t0 < 5.0
    assert 0 < trainer.step < 100_000
    assert not trainer.model.training
    assert load_model(tmp_path / "m.pt") is not None


def test_time_budget_stops_run():
    trainer = Trainer(
        _volume(), model_config=SMALL, train_config=FAST.with_(steps=100_000, max_minutes=0.01, preview_every=0)
    )
    events = list(trainer.run())
    assert events[-1].kind == "time_budget" and trainer.step < 100_000


def test_resume_continues_from_checkpoint(tmp_path):
    vol = _volume()
    first = Trainer(
        vol, model_config=SMALL, train_config=FAST.with_(preview_every=0), checkpoint_path=tmp_path / "a.pt"
    )
    first.fit()
    resumed = Trainer(
        vol,
        train_config=FAST.with_(steps=10, preview_every=0),
        resume=tmp_path / "a.pt",
        checkpoint_path=tmp_path / "b.pt",
    )
    assert resumed.step == 6 and resumed.model.config == SMALL
    assert resumed.optimizer.state  # Adam moments restored
    resumed.fit()
    assert resumed.step == 10
    assert len(resumed.history) > len(first.history)


def test_nonfinite_training_is_stopped_and_weights_restored(tmp_path):
    vol = _volume()
    trainer = Trainer(
        vol,
        model_config=SMALL,
        train_config=FAST.with_(steps=50, log_every=1, preview_every=0),
        checkpoint_path=tmp_path / "m.pt",
    )
    original_step = trainer.optimizer.step

    def poisoned_step(*args, **kwargs):  # a real optimizer step that then corrupts one weight
        original_step(*args, **kwargs)
        with torch.no_grad():
            trainer.model.decoder.body[1].weight.view(-1)[0] = float("nan")

    trainer.optimizer.step = poisoned_step
    events = list(trainer.run())
    assert events[-1].kind == "nonfinite"
    assert "learning rate" in events[-1].message
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # a diverged run must not leave a model file that looks like a result
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((30, 30)), "3D"),
        (np.zeros((30, 30, 3)), "smaller than"),
        (np.full((20, 20, 20), 7.0), "constant"),
        (np.where(np.eye(20, dtype=bool)[None].repeat(20, 0), np.nan, 1.0), "NaN"),
    ],
)
def test_untrainable_volumes_are_refused(bad, match):
    with pytest.raises(UserError, match=match):
        Trainer(bad, model_config=SMALL, train_config=FAST)
