"""Mixture clustering with the spatial prior, fused features, and the default segment() path."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hypseg._errors import UserError
from napari_hypseg.segmentation import mixture
from napari_hypseg.segmentation.channels import (
    DENOISE_FROM_SIGMA,
    OUTLIER_SPANS,
    TV_WEIGHT_PER_SIGMA,
    Channel,
    choose_channel,
    face_residuals,
    fill_mask,
    intensity,
    noise_sigma,
    normalise,
    sigma_from_residuals,
)
from napari_hypseg.segmentation.fusion import FusionConfig, embedding_channels, fused_features
from napari_hypseg.segmentation.metrics import dice_scores
from napari_hypseg.segmentation.mixture import (
    MIN_CLUSTER_FRACTION,
    SHARED_FROM_SIGMA,
    channel_settings,
    completed_likelihood,
    component_covariances,
    covariance_type,
    describe,
    fit_mixture,
    mixture_labels,
    mixture_levels,
    posteriors,
    potts_mean_field,
)


def _two_region_volume(noise: float, seed: int = 0, shape=(24, 24, 24)):
    truth = np.zeros(shape, dtype=np.uint8)
    truth[:, :, shape[2] // 2 :] = 1
    rng = np.random.default_rng(seed)
    return truth.astype(np.float32) + rng.normal(scale=noise, size=shape).astype(np.float32), truth


def test_noise_sigma_measures_white_noise():
    rng = np.random.default_rng(0)
    v = rng.normal(scale=0.2, size=(40, 40, 40)).astype(np.float32)
    assert noise_sigma(v) == pytest.approx(0.2, rel=0.05)


def test_noise_sigma_ignores_flat_fill_and_smooth_gradients():
    v = np.zeros((30, 30, 30), np.float32)
    v[:, :, 10:] = np.linspace(0.0, 1.0, 20, dtype=np.float32)  # zero fill beside a clean linear ramp
    v[:, :, 10] = 0.0
    assert noise_sigma(v) == pytest.approx(0.0, abs=1e-6)
    assert choose_channel(v).kind == "raw"
    noisy = v + np.random.default_rng(0).normal(scale=0.1, size=v.shape).astype(np.float32)
    assert noise_sigma(noisy) == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("fill", [0.3, 0.5, 0.7])
def test_noise_sigma_ignores_a_fill_inside_the_range(fill):
    # A tomogram padded with its mean (IMOD's fill) keeps the fill mid-range, where a float32 residual of
    # fill - 6 * fill / 6 is not always 0: only exact equality with the neighbours marks a voxel flat.
    rng = np.random.default_rng(0)
    v = rng.normal(0.5, 0.1, size=(36, 36, 36)).astype(np.float32)
    padded = v.copy()
    padded[:, :, :14] = np.float32(fill)
    assert noise_sigma(padded) == pytest.approx(noise_sigma(v), rel=0.1)  # the layer beside the fill: -6 %
    interior = np.stack(np.meshgrid(*[np.arange(1, 35)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sampled = sigma_from_residuals(face_residuals(padded, interior))
    assert sampled == pytest.approx(noise_sigma(padded), rel=1e-4)


def test_normalise_clamps_stray_values_far_outside_the_robust_range():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 20, 20)).astype(np.float32)
    plain = normalise(v)
    v[3, 4, 5], v[6, 7, 8] = 1e9, -1e9
    clamped = normalise(v)
    assert clamped[3, 4, 5] == pytest.approx(1.0 + OUTLIER_SPANS)
    assert clamped[6, 7, 8] == pytest.approx(-OUTLIER_SPANS)
    away = np.ones(v.shape, bool)
    away[3, 4, 5] = away[6, 7, 8] = False
    np.testing.assert_allclose(clamped[away], plain[away], atol=0.02)  # two voxels barely move the percentiles


def test_one_stray_voxel_does_not_take_the_clustering():
    image, truth = _two_region_volume(0.05, shape=(20, 20, 20))
    image[2, 3, 4] = 1e9  # a hot pixel: unclamped, it held the whole standard deviation
    features, channel = fused_features(image, None, latent_dim=None, config=FusionConfig())
    levels = mixture_levels(features, image.shape, [2], seed=0, compartments=False, **channel_settings(channel))
    assert dice_scores(levels[2] - 1, truth).mean > 0.99


def test_potts_prior_removes_isolated_flips_but_keeps_the_boundary():
    truth = np.zeros((20, 20, 20), dtype=int)
    truth[:, :, 10:] = 1
    post = np.stack([truth == 0, truth == 1], axis=-1).astype(np.float32) * 0.6 + 0.2
    flipped = np.random.default_rng(0).random(truth.shape) < 0.05
    post[flipped] = post[flipped][:, ::-1]
    smoothed = potts_mean_field(post, beta=3.0)
    assert (post.argmax(-1) != truth).mean() > 0.04
    assert (smoothed.argmax(-1) != truth).mean() < 0.01
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-5)


def test_mixture_separates_classes_of_very_different_size_and_spread():
    rng = np.random.default_rng(0)
    shape = (30, 30, 30)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[11:19, 11:19, 11:19] = 1  # 1.9 % of the voxels, a tight class beside a wide one
    values = np.where(truth == 1, 4.0 + rng.normal(scale=0.1, size=shape), rng.normal(scale=1.0, size=shape))
    labels, confidence = mixture_labels(values.reshape(-1, 1).astype(np.float32), shape, 2, seed=0)
    assert dice_scores(labels, truth).per_class[1] > 0.8
    assert 0.5 < confidence <= 1.0


def test_the_completed_likelihood_charges_a_fit_for_overlapping_components():
    """Starts are chosen by likelihood less assignment entropy: free for separate classes, costly for a
    component laid over another (one class split in two)."""
    rng = np.random.default_rng(0)
    separate = np.concatenate([rng.normal(0.0, 1.0, 5_000), rng.normal(10.0, 1.0, 5_000)]).reshape(-1, 1)
    one_class = rng.normal(0.0, 1.0, 10_000).reshape(-1, 1)
    for points, cost in ((separate, (0.0, 1e-3)), (one_class, (0.2, np.log(2)))):
        fit = fit_mixture(points, 2, seed=0, covariance="full")
        charged = fit.score(points) - completed_likelihood(fit, points)
        assert cost[0] <= charged <= cost[1]


def test_a_shared_covariance_is_fitted_without_its_least_likely_voxels(monkeypatch):
    """A few far voxels (gold beads in a tomogram) must not widen the shared covariance nor pull a mean."""
    rng = np.random.default_rng(0)
    bulk = np.concatenate([rng.normal(0.0, 1.0, 97_000), rng.normal(4.0, 1.0, 3_000)])
    points = np.concatenate([bulk, np.full(60, 16.0)]).reshape(-1, 1)  # 0.06 % of the voxels, 12 σ out
    clean = fit_mixture(bulk.reshape(-1, 1), 2, seed=0, covariance="tied")
    trimmed = fit_mixture(points, 2, seed=0, covariance="tied")
    monkeypatch.setattr(mixture, "TRIM_ROUNDS", 0)
    plain = fit_mixture(points, 2, seed=0, covariance="tied")

    def spread_and_small_mean(fit):
        return float(fit.covariances_[0, 0]), float(fit.means_.max())

    clean_spread, clean_mean = spread_and_small_mean(clean)
    spread, mean = spread_and_small_mean(trimmed)
    assert spread == pytest.approx(clean_spread, rel=0.02) and mean == pytest.approx(clean_mean, abs=0.1)
    spread, mean = spread_and_small_mean(plain)
    assert spread > 1.08 * clean_spread and mean > clean_mean + 0.4


@pytest.mark.parametrize("covariance", ["tied", "full"])
def test_a_k_means_plus_plus_start_alone_finds_the_classes(monkeypatch, covariance):
    """Each start must count: scikit-learn's own k-means++ start of a shared covariance ends with every mean at
    the data's mean, so the second start never won on a noisy volume (docs/method.md, round twenty-three)."""
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(mu, 1.0, 4_000) for mu in (0.0, 6.0, 12.0)]).reshape(-1, 1)
    monkeypatch.setattr(mixture, "INITIALISATIONS", ("k-means++",))
    fit = fit_mixture(points, 3, seed=0, covariance=covariance)
    assert np.sort(fit.means_[:, 0]) == pytest.approx([0.0, 6.0, 12.0], abs=0.1)
    assert component_covariances(fit)[:, 0, 0] == pytest.approx([1.0] * 3, rel=0.1)


def test_a_level_left_with_a_negligible_cluster_is_refitted_wider(outlier_volume, monkeypatch):
    image, truth = outlier_volume(n_hot=20)
    points = image.reshape(-1, 1)
    labels, _ = mixture_labels(points, image.shape, 3, seed=0)
    sizes = np.bincount(labels.reshape(-1), minlength=3)
    assert labels.shape == image.shape and sizes.min() >= MIN_CLUSTER_FRACTION * labels.size
    assert dice_scores(labels, truth).per_class[2] > 0.9
    # without the refit the third cluster is spent on the 20 outliers and the cube has none
    monkeypatch.setattr(mixture, "MAX_EXTRA_COMPONENTS", 0)
    plain, _ = mixture_labels(points, image.shape, 3, seed=0)
    assert np.bincount(plain.reshape(-1), minlength=3).min() < MIN_CLUSTER_FRACTION * plain.size
    assert dice_scores(plain, truth).per_class[2] < 0.1


def test_levels_say_which_were_refitted_and_from_how_many_components(outlier_volume):
    image, _ = outlier_volume(n_hot=20)
    levels = mixture_levels(image.reshape(-1, 1), image.shape, [2, 3], seed=0, compartments=False)
    assert levels.refitted == {3: 4}  # k = 2 keeps both halves; k = 3 lost the cube to the outliers
    assert len(np.unique(levels[3])) == 3


def test_a_level_the_prior_leaves_whole_is_not_refitted(outlier_volume, monkeypatch):
    image, _ = outlier_volume(n_hot=0)
    points = image.reshape(-1, 1)
    labels, confidence = mixture_labels(points, image.shape, 3, seed=0)
    monkeypatch.setattr(mixture, "MAX_EXTRA_COMPONENTS", 0)
    plain, plain_confidence = mixture_labels(points, image.shape, 3, seed=0)
    assert np.array_equal(labels, plain) and confidence == plain_confidence


def test_levels_sharing_fits_are_the_levels_fitted_alone(outlier_volume):
    image, _ = outlier_volume(n_hot=20)
    points = image.reshape(-1, 1)
    levels = mixture_levels(points, image.shape, [2, 3, 4, 5], seed=0, compartments=False)
    for k, shared in levels.items():
        alone, _ = mixture_labels(points, image.shape, k, seed=0)
        # the same partition: every cluster of one is exactly one cluster of the other
        pairs = np.unique(np.stack([shared.ravel(), alone.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(shared)) == len(np.unique(alone))


def test_mixture_levels_are_reproducible_and_ids_follow_the_coarser_level():
    image, truth = _two_region_volume(0.1)
    points = image.reshape(-1, 1)
    a = mixture_levels(points, image.shape, [2, 3], seed=3)
    b = mixture_levels(points, image.shape, [2, 3], seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert set(np.unique(a[2])) == {1, 2} and set(np.unique(a[3])) <= {1, 2, 3}
    # a cluster of level 3 that overlaps a level-2 cluster most carries its id
    for k3 in (1, 2):
        inside = a[3] == k3
        if inside.any():
            assert np.bincount(a[2][inside]).argmax() == k3


def test_noisy_volumes_share_one_covariance_and_clean_ones_keep_one_per_class():
    noisy, light = Channel("denoised", 2 * SHARED_FROM_SIGMA), Channel("denoised", SHARED_FROM_SIGMA / 2)
    assert channel_settings(noisy) == {"covariance": "tied", "beta": 6.0, "local_means": True}
    # lightly noisy (an MRI acquisition): denoised, but each class keeps its own spread
    assert channel_settings(light) == {"covariance": "full", "beta": 3.0, "local_means": True}
    assert covariance_type(Channel("raw", 2 * SHARED_FROM_SIGMA)) == "full"  # the raw channel asked for
    assert describe(Channel("raw", 0.01)) == (
        "Gaussian mixture on the raw intensity, a covariance per cluster, spatial prior β = 3"
    )
    assert describe(Channel("denoised", 0.1)).startswith("Gaussian mixture on the TV-denoised intensity (weight 0.07)")
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0.0, 1.0, (3000, 2)), rng.normal(5.0, 0.3, (600, 2))]).astype(np.float32)
    tied = fit_mixture(points, 2, seed=0, covariance="tied")
    full = fit_mixture(points, 2, seed=0, covariance="full")
    per_component = component_covariances(tied)
    assert per_component.shape == (2, 2, 2)
    np.testing.assert_array_equal(per_component[0], per_component[1])
    spreads = np.sort([np.trace(c) for c in component_covariances(full)])
    assert spreads[1] > 5 * spreads[0]  # a full fit gives the wide class its own spread
    # a tied mixture rebuilt as a full one with its repeated covariance scores the same
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    rebuilt = GaussianMixture(n_components=2, covariance_type="full")
    rebuilt.weights_, rebuilt.means_, rebuilt.covariances_ = tied.weights_, tied.means_, per_component
    rebuilt.precisions_cholesky_ = _compute_precision_cholesky(per_component, "full")
    np.testing.assert_allclose(posteriors(rebuilt, points), posteriors(tied, points), atol=1e-5)


def test_fused_features_choose_the_denoised_channel_on_a_noisy_volume():
    image, _ = _two_region_volume(0.6)
    features, channel = fused_features(image, None, latent_dim=None)
    assert channel.kind == "denoised" and features.shape == (image.size, 1)
    assert channel.tv_weight == pytest.approx(TV_WEIGHT_PER_SIGMA * noise_sigma(normalise(image)))


def test_intensity_is_denoised_from_the_noise_threshold_on():
    image, _ = _two_region_volume(0.0, shape=(32, 32, 32))
    rng = np.random.default_rng(1)
    for relative, expected in ((0.5, "raw"), (2.0, "denoised")):
        noisy = image + rng.normal(scale=relative * DENOISE_FROM_SIGMA, size=image.shape).astype(np.float32)
        assert choose_channel(noisy).kind == expected


def test_denoising_follows_the_noise():
    """The TV weight grows with the estimated noise, so a lightly noisy volume keeps its thin structures."""
    image, _ = _two_region_volume(0.0, shape=(32, 32, 32))
    image[:, 10, :] = 0.5  # a one-voxel sheet of an intermediate class
    rng = np.random.default_rng(2)
    weights, kept = [], []
    for noise in (0.05, 0.2):
        noisy = image + rng.normal(scale=noise, size=image.shape).astype(np.float32)
        channel = choose_channel(noisy)
        weights.append(channel.tv_weight)
        kept.append(float(np.median(intensity(noisy, channel)[:, 10, :16])))  # the sheet, in the dark half
    assert channel.kind == "denoised" and weights[0] < weights[1]
    assert weights[0] == pytest.approx(TV_WEIGHT_PER_SIGMA * 0.05, rel=0.15)
    assert kept[0] > kept[1]  # lighter TV keeps more of the sheet's contrast


def test_fused_features_keep_raw_intensity_on_a_clean_volume():
    image, _ = _two_region_volume(0.0)
    _, channel = fused_features(image, None, latent_dim=None)
    assert channel.kind == "raw" and channel.tv_weight == 0.0


def test_embedding_channels_are_principal_axes_scaled_to_unit_total_variance():
    rng = np.random.default_rng(0)
    tangent = rng.normal(size=(5000, 3)) * np.array([3.0, 1.0, 0.1])
    block = embedding_channels(tangent.reshape(10, 500, 3).astype(np.float32), latent_dim=None, components=2)
    assert block.shape == (5000, 2)
    variances = block.var(axis=0)
    assert variances[0] > variances[1]
    assert variances.sum() == pytest.approx((9 + 1) / (9 + 1 + 0.01), rel=0.05)


def test_fused_features_refuse_an_embedding_of_another_shape():
    with pytest.raises(UserError, match="does not match"):
        fused_features(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 5, 2), np.float32), latent_dim=2)


def test_fusion_config_validates():
    with pytest.raises(UserError, match="intensity"):
        FusionConfig(intensity="median")
    with pytest.raises(UserError, match="embedding_weight"):
        FusionConfig(embedding_weight=-1)


def test_default_segment_is_the_mixture_on_fused_features(one_torch_thread):
    from napari_hypseg.segmentation.pipeline import cluster_embedding, segment
    from napari_hypseg.synthetic import make_phantom
    from napari_hypseg.training import TrainConfig, Trainer

    phantom = make_phantom(24, seed=1)
    model = Trainer([phantom.image], train_config=TrainConfig(steps=2, device="cpu", preview_every=0)).fit()
    result = segment(phantom.image, model, k_min=2, k_max=4, device="cpu")
    assert result.hierarchy.mode == "mixture"
    assert result.intensity.kind in ("raw", "denoised")
    assert result.embedding.shape == phantom.image.shape + (model.config.latent_dim,)
    for k in (2, 3, 4):
        labels = result.labels(k)
        assert labels.shape == phantom.image.shape
        assert set(np.unique(labels)) <= set(range(1, k + 1))
    # re-clustering the same embedding reproduces the levels
    again = cluster_embedding(result.embedding, model, volume=phantom.image, k_min=2, k_max=4, device="cpu")
    assert np.array_equal(again.labels(4), result.labels(4))


def _padded_with(fill_value: float, *, noise: float = 0.1):
    truth = np.zeros((20, 20, 24), np.uint8)
    truth[:, :, 12:] = 1
    image = truth + np.random.default_rng(0).normal(scale=noise, size=truth.shape).astype(np.float32)
    padded = np.concatenate([image, np.full((20, 20, 16), np.float32(fill_value))], axis=2)
    fill = np.zeros(padded.shape, bool)
    fill[:, :, 24:] = True
    return padded, truth, fill


def test_fill_mask_finds_a_constant_inside_the_range_faces_and_edges_included():
    padded, _, fill = _padded_with(0.5)
    np.testing.assert_array_equal(fill_mask(padded), fill)


@pytest.mark.parametrize("fill_value", [-1.0, 2.0])
def test_a_constant_at_the_end_of_the_range_is_a_class_not_a_fill(fill_value):
    # a masked background (skull-stripped MRI, the MNI template) is one of the classes asked for
    padded, _, _ = _padded_with(fill_value)
    assert fill_mask(padded) is None


def test_no_fill_in_noise_or_in_a_small_flat_patch():
    image, _, _ = _padded_with(0.5)
    image = image[:, :, :24].copy()
    assert fill_mask(image) is None
    image[2:6, 2:6, 2:6] = np.float32(0.5)  # 64 of 9 600 voxels: under FILL_MIN_FRACTION
    assert fill_mask(image) is None


def test_a_fill_left_out_of_the_fit_cannot_take_a_component():
    padded, truth, fill = _padded_with(0.5)
    features = normalise(padded).reshape(-1, 1)
    features[fill.reshape(-1)] = 40.0  # a spike far from the data: fitted, it holds one of the two components
    data = ~fill
    kept = mixture_levels(features, padded.shape, [2], seed=0, compartments=False)[2]
    assert dice_scores(kept[data] - 1, truth.reshape(-1)).mean < 0.7
    left_out = mixture_levels(features, padded.shape, [2], seed=0, compartments=False, fill=fill)[2]
    assert dice_scores(left_out[data] - 1, truth.reshape(-1)).mean > 0.99
    assert len(np.unique(left_out[fill])) == 1  # the padding is one thing


def test_the_clustering_summary_says_when_a_fill_was_left_out():
    from napari_hypseg.model import HyperbolicVAE, ModelConfig
    from napari_hypseg.segmentation.pipeline import cluster_embedding

    model = HyperbolicVAE(ModelConfig(channels=(4, 8), kernel_size=3, hidden=16))
    padded, truth, fill = _padded_with(0.5)
    unpadded = padded[:, :, :24].copy()
    for volume, share in ((padded, "40 %"), (unpadded, None)):
        embedding = np.zeros((*volume.shape, model.config.latent_dim), np.float32)  # not read: weight 0
        result = cluster_embedding(embedding, model, volume=volume, k_min=2, k_max=2)
        if share is None:
            assert "fill" not in result.clustering_summary
        else:
            assert f"a constant fill ({share} of the voxels) left out of the fit" in result.clustering_summary
            assert len(np.unique(result.labels(2)[fill])) == 1
        assert dice_scores(result.labels(2)[:, :, :24] - 1, truth).mean > 0.99


def test_strided_sigma_reads_white_noise_alike_and_correlated_noise_higher():
    from scipy import ndimage

    from napari_hypseg.segmentation.channels import strided_noise_sigma

    white = np.random.default_rng(0).normal(0.5, 0.1, (48, 48, 48)).astype(np.float32)
    assert strided_noise_sigma(white) == pytest.approx(noise_sigma(white), rel=0.1)
    smoothed = ndimage.gaussian_filter(white, 0.7)  # each voxel's noise now shared with its neighbours
    assert strided_noise_sigma(smoothed) > 1.8 * noise_sigma(smoothed)


def test_a_low_pass_filtered_noisy_volume_counts_as_noise_dominated():
    from scipy import ndimage

    from napari_hypseg.segmentation.channels import choose_channel

    truth = np.zeros((40, 40, 40), np.float32)
    truth[:, :, 20:] = 1.0
    noisy = truth + np.random.default_rng(1).normal(scale=1.5, size=truth.shape).astype(np.float32)
    channel = choose_channel(ndimage.gaussian_filter(noisy, 0.7))
    assert channel.kind == "denoised"
    assert channel.sigma < mixture.SHARED_FROM_SIGMA <= channel.strided_sigma  # the face residual alone: clean
    assert mixture.noise_dominated(channel)
    assert mixture.channel_settings(channel)["covariance"] == "tied"
    white = choose_channel(noisy)  # white noise reads alike at both strides
    assert white.strided_sigma == pytest.approx(white.sigma, rel=0.1) and mixture.noise_dominated(white)
