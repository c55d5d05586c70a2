"""The VAE, its losses and model files, on real tensors and real files."""

import numpy as np
import pytest
import torch

from napari_hypseg import hyperbolic as hyp
from napari_hypseg._errors import UserError
from napari_hypseg._intensity_range import OUTLIER_SPANS
from napari_hypseg.model import (
    HyperbolicVAE,
    ModelConfig,
    hierarchical_triplet_loss,
    load_model,
    negative_elbo,
    read_checkpoint,
    save_checkpoint,
)

SMALL = dict(channels=(4, 8), kernel_size=3, hidden=16)  # m = 5: fast, same code paths


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(manifold="euclidean"),
        ModelConfig(gyroplane=False),
        ModelConfig(latent_dim=3, **SMALL),
    ],
)
def test_shapes_and_manifold(config):
    torch.manual_seed(0)
    model = HyperbolicVAE(config)
    m = config.patch_size
    recon, loc, scale, z = model(torch.rand(3, 1, m, m, m), n_samples=2)
    assert recon.shape == (2, 3, 1, m, m, m)
    assert loc.shape == scale.shape == (3, config.latent_dim)
    assert z.shape == (2, 3, config.latent_dim)
    assert (scale > 0).all()
    if config.hyperbolic:
        assert (loc.norm(dim=-1) < 1).all() and (z.norm(dim=-1) < 1).all()


def test_paper_patch_size_is_receptive_field():
    assert ModelConfig().patch_size == 17
    assert ModelConfig(**SMALL).patch_size == 5


def test_encoder_output_stays_inside_clip_radius():
    model = HyperbolicVAE(ModelConfig(**SMALL))
    with torch.no_grad():
        model.encoder.loc_head.weight.mul_(1e4)  # force enormous tangent vectors
    loc = model.encoder.mean(torch.rand(8, 1, 5, 5, 5))
    radius = hyp.dist0(loc, dim=1)
    assert torch.isfinite(radius).all()
    assert radius.max() <= 2 * model.config.max_tangent_norm + 1e-4


def test_triplet_loss_zero_when_margins_hold_and_positive_otherwise():
    model = HyperbolicVAE(ModelConfig(**SMALL))
    anchor = hyp.expmap0(torch.tensor([[0.1, 0.0], [0.0, -0.3]]))
    positive = hyp.expmap0(torch.tensor([[0.12, 0.0], [0.0, -0.31]]))
    negative = hyp.expmap0(torch.tensor([[-1.5, 0.2], [1.0, 1.0]]))
    assert hierarchical_triplet_loss(model, anchor, positive, negative, margin=0.2).item() == 0.0
    swapped = hierarchical_triplet_loss(model, anchor, negative, positive, margin=0.2)
    d = hyp.dist(anchor, negative) - hyp.dist(anchor, positive) + 0.2
    assert swapped.item() == pytest.approx(d.mean().item(), rel=1e-5)


@pytest.mark.parametrize("manifold,gyroplane", [("poincare", True), ("poincare", False), ("euclidean", False)])
def test_gradients_reach_every_parameter(manifold, gyroplane):
    torch.manual_seed(1)
    model = HyperbolicVAE(ModelConfig(manifold=manifold, gyroplane=gyroplane, **SMALL))
    patches = torch.rand(6, 1, 5, 5, 5)
    elbo, parts, loc = negative_elbo(model, patches, n_samples=2)
    a, p, n = loc.chunk(3)
    loss = elbo + 1e3 * hierarchical_triplet_loss(model, a, p, n, margin=10.0)
    loss.backward()
    assert set(parts) == {"recon", "kl"}
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_kl_is_not_exploitable_by_a_collapsing_scale():
    """A sharp posterior near the clip radius must not score a hugely negative KL (float32 pitfall)."""
    model = HyperbolicVAE(ModelConfig(**SMALL))
    with torch.no_grad():
        model.encoder.loc_head.weight.mul_(1e4)
        model.encoder.scale_head.bias.fill_(-30.0)  # scale -> the 1e-5 floor
    _, parts, _ = negative_elbo(model, torch.rand(64, 1, 5, 5, 5))
    assert parts["kl"].item() > 0


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(2)
    model = HyperbolicVAE(ModelConfig(latent_dim=3, **SMALL))
    model.set_normalization(-2.0, 5.0)
    path = save_checkpoint(tmp_path / "m.pt", model, step=7, train_config={"lr": 1e-3}, history=[{"loss": 1.0}])
    payload = torch.load(path, weights_only=True)
    assert payload["step"] == 7 and payload["model_config"]["latent_dim"] == 3
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.rand(2, 1, 5, 5, 5)
    assert torch.equal(loaded.encoder.mean(x), model.eval().encoder.mean(x))
    assert loaded.intensity_low.item() == -2.0 and loaded.intensity_high.item() == 5.0
    assert not list(tmp_path.glob(".*tmp*"))


def test_loading_a_model_leaves_torch_dynamo_unimported(tmp_path):
    """The size check builds the model on torch's "meta" device; drawing its random init there used to import
    torch._dynamo (2-4 s on every `hypseg segment`, widget load and dask worker). A fresh interpreter shows it."""
    import subprocess
    import sys

    path = save_checkpoint(tmp_path / "m.pt", HyperbolicVAE(ModelConfig(**SMALL)))
    code = (
        "import sys; from napari_hypseg.model import load_model; "
        f"load_model({str(path)!r}); print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_checkpoint_refuses_nan_weights_and_keeps_previous_file(tmp_path):
    model = HyperbolicVAE(ModelConfig(**SMALL))
    path = save_checkpoint(tmp_path / "m.pt", model, step=1)
    before = path.read_bytes()
    with torch.no_grad():
        model.decoder.body[1].weight[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="NaN"):
        save_checkpoint(path, model, step=2)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [None, b"", b"not a torch file"])
def test_loading_a_missing_or_foreign_model_is_a_user_error(tmp_path, content):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError):
        read_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match="not a napari-hypseg model"):
        load_model(path)


def test_normalization_maps_percentiles_to_unit_range():
    model = HyperbolicVAE(ModelConfig(**SMALL))
    model.set_normalization(10.0, 30.0)
    out = model.normalize(torch.tensor([10.0, 20.0, 30.0]))
    assert np.allclose(out.numpy(), [0.0, 0.5, 1.0])
    # a stray value far outside the training range reaches the network clamped
    far = model.normalize(torch.tensor([-1e9, 1e9])).numpy()
    assert np.allclose(far, [-OUTLIER_SPANS, 1.0 + OUTLIER_SPANS])
    with pytest.raises(ValueError):
        model.set_normalization(1.0, 1.0)
