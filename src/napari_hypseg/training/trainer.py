"""The training loop as a generator of events, shared by the CLI and the napari widgets.

``for event in Trainer(volumes).run(): ...`` trains, reports losses, speed,
ETA and live previews of the embedding, and stops cooperatively when
:meth:`Trainer.cancel` is called from any thread (checked every step, so
within a second), leaving a usable model in eval mode.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .._device import resolve_device
from .._errors import UserError
from .._validation import check_volume, robust_range
from ..io.atomic import check_writable
from ..model import HyperbolicVAE, ModelConfig, hierarchical_triplet_loss, negative_elbo
from ..model.checkpoint import (
    build_model,
    check_model_size,
    check_voxel_size,
    estimated_checkpoint_bytes,
    read_checkpoint,
    save_checkpoint,
)
from ..model.dense import encode_block
from ..model.vae import normalise_intensity
from .config import TrainConfig
from .events import Preview, TrainEvent
from .sampler import TripletSampler

# log intervals that ended unhealthy (see _healthy) before the run gives up
_MAX_RECOVERIES = 3
# With Adam a weight moves by about lr per step, so healthy runs stay within a
# few units of their initialisation; |w| beyond this means the run has diverged
# even while every number is still finite (--lr 1e6 reaches ~4e5).
_MAX_WEIGHT = 1e4


# numpy types torch.as_tensor shares memory with (in native byte order)
_SHAREABLE = {np.dtype(t) for t in ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64")}


def _as_tensor(data: np.ndarray, device: torch.device) -> torch.Tensor:
    """The volume as a tensor for the sampler.

    On the CPU the tensor shares the array's memory in its own type, so a
    memory-mapped tomogram is read box by box as the sampler crops it (an
    8-bit tomogram of 4 GB converted whole to float32 needed 16 GB); other
    types (uint16, big-endian files) take one float32 copy. On a GPU the
    volume is copied to the device and converted there (``grid_sample`` reads
    it whole, in float32), unless :func:`sampling_device` keeps it on the host.
    """
    array = np.asarray(data)
    if array.dtype not in _SHAREABLE or not array.dtype.isnative:
        array = array.astype(np.float32)
    with warnings.catch_warnings():
        # read-only memory maps: torch warns it cannot guarantee immutability; we never write
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.as_tensor(array)
    if device.type == "cpu":
        return tensor
    return tensor.to(device).to(torch.float32)


#: share of the GPU's free memory the training volumes may take on it (float32); past it they stay in host
#: memory, read box by box as on the CPU, and each batch's patches are copied over: a dataset of tomograms
#: of 1-4 GB each does not fit on one GPU, and the model's own activations need the rest
DEVICE_VOLUME_SHARE = 0.5


def sampling_device(device: torch.device, volume_bytes: int, free_bytes: int | None) -> torch.device:
    """Where the sampler holds and reads the volumes: on the training ``device`` when their float32
    ``volume_bytes`` fit in :data:`DEVICE_VOLUME_SHARE` of its ``free_bytes`` (None: not known, as on the
    CPU), else on the host."""
    if device.type == "cpu" or free_bytes is None or volume_bytes <= DEVICE_VOLUME_SHARE * free_bytes:
        return device
    return torch.device("cpu")


def _free_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else None


def _fixed_normaliser(model: HyperbolicVAE):
    """``model.normalize`` with its two numbers read once, for patches read on the host while the model is
    on a GPU (they never change during training)."""
    low, high = float(model.intensity_low), float(model.intensity_high)
    return lambda x: normalise_intensity(x, low, high)


def preview_coords(
    shape: Sequence[int], n_points: int, patch_size: int
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A fixed box of voxels to embed for live previews: the central z-slice, cropped to ~n_points."""
    z = shape[0] // 2
    side = max(1, int(math.sqrt(n_points)))
    lo_y, lo_x = max(0, shape[1] // 2 - side // 2), max(0, shape[2] // 2 - side // 2)
    return (z, lo_y, lo_x), (z + 1, min(shape[1], lo_y + side), min(shape[2], lo_x + side))


class Trainer:
    """Train a :class:`HyperbolicVAE` on one or more volumes.

    Parameters
    ----------
    volumes : sequence of (Z, Y, X) arrays
        Raw intensities (memory maps welcome). Validated: 3D, finite, not
        constant, at least one patch (``m`` voxels) along every axis.
    model_config, train_config :
        Architecture and training settings (defaults: the paper's model,
        CPU-sized budget).
    checkpoint_path : path, optional
        Where the final (and periodic) checkpoints go.
    resume : path, optional
        Continue from a checkpoint: its model config, weights, optimizer state
        and step are restored; ``train_config.steps`` is the new total. A
        ``model_config`` that differs from the checkpoint's is refused.
    voxel_size : (z, y, x) floats, optional
        Physical voxel size of the training volumes, stored in the model file
        so that segmenting data at another voxel size can warn (and resample).
        Kept from the checkpoint when resuming without it.

    Raises
    ------
    UserError
        Bad volumes, a model too large to build, an unwritable
        ``checkpoint_path``, or a conflicting ``model_config`` — all before
        any training step.
    """

    def __init__(
        self,
        volumes: Sequence[np.ndarray],
        *,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
        voxel_size: Sequence[float] | None = None,
    ):
        if isinstance(volumes, np.ndarray):
            volumes = [volumes]
        if not len(volumes):
            raise UserError("no volume to train on")
        self.config = train_config or TrainConfig()
        payload = read_checkpoint(resume) if resume is not None else None
        if payload is not None:
            if model_config is not None and model_config != payload["config"]:
                raise UserError(
                    f"resuming continues the model in {resume} ({describe_config(payload['config'])}), "
                    f"which differs from the one asked for ({describe_config(model_config)}); "
                    "pass no model_config, or train a new model"
                )
            model_config = payload["config"]
        model_config = model_config or ModelConfig()
        check_model_size(model_config)
        for i, data in enumerate(volumes):
            check_volume(
                data, min_size=model_config.patch_size, name=f"volume #{i + 1}" if len(volumes) > 1 else "volume"
            )
        if checkpoint_path is not None:
            # before any step: a model lost after an hour because its folder is read-only is the worst outcome
            check_writable(checkpoint_path, need_bytes=estimated_checkpoint_bytes(model_config), what="model file")

        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = HyperbolicVAE(model_config) if payload is None else build_model(payload, resume)
        self.step = 0
        self.history: list[dict[str, float]] = []
        if payload is not None:
            self.step = int(payload["step"])
            self.history = list(payload.get("history", []))
        else:
            self.model.set_normalization(*robust_range(volumes))
        if voxel_size is not None:
            self.model.voxel_size = check_voxel_size(voxel_size)
        self.model.to(self.device)
        self._base_lr = self.config.lr
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr, amsgrad=True)
        if payload is not None and "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr

        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.saved_step: int | None = None  # step of this run's latest save, if any
        self._volumes_np = list(volumes)
        volume_bytes = sum(int(np.prod(np.shape(v))) * 4 for v in volumes)
        self.sampling_device = sampling_device(self.device, volume_bytes, _free_bytes(self.device))
        self._volumes = [_as_tensor(v, self.sampling_device) for v in volumes]
        gen = torch.Generator(device=self.sampling_device)
        gen.manual_seed(self.config.seed + self.step)
        on_host = self.sampling_device != self.device
        self.sampler = TripletSampler(
            self._volumes,
            self.model.patch_size,
            _fixed_normaliser(self.model) if on_host else self.model.normalize,
            self.config.sampler,
            gen,
        )
        self._preview_box = preview_coords(volumes[0].shape, self.config.preview_points, self.model.patch_size)
        self._cancel = threading.Event()

    # -- control -----------------------------------------------------------
    def cancel(self) -> None:
        """Ask the running loop to stop after the current step (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- pieces ------------------------------------------------------------
    def _loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        patches = self.sampler.sample(c.batch_size).all_patches().to(self.device)  # read on the host: copied over
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=c.amp and self.device.type == "cuda"
        ):
            elbo, parts, loc = negative_elbo(self.model, patches, n_samples=c.n_samples, beta=c.kl_weight)
        loss = elbo
        if c.triplet:
            anchor, positive, negative = loc.chunk(3)
            triplet = hierarchical_triplet_loss(self.model, anchor, positive, negative, margin=c.triplet_margin)
            loss = loss + c.triplet_weight * triplet
            parts["triplet"] = triplet.detach()
        parts["loss"] = loss.detach()
        return loss, parts

    def _optimise(self, loss: torch.Tensor) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None or p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        # a non-finite step contributes no gradient; checked on device, so no host sync per step
        finite = (torch.isfinite(norm) & torch.isfinite(loss.detach())).to(norm.dtype)
        for p in params:
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0).mul_(finite)
        # linear warm-up: without it the first full-size Adam steps throw every
        # embedding to the ball's rim, where it stays for ~100-200 steps
        warm = min(1.0, (self.step + 1) / self.config.warmup_steps) if self.config.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self._base_lr * warm
        self.optimizer.step()

    def _weights_finite(self) -> bool:
        return all(torch.isfinite(p).all().item() for p in self.model.parameters())

    def _healthy(self, finite_steps: int) -> str:
        """Why the run looks diverged at a log interval, or "" when it does not."""
        if not self._weights_finite():
            return "non-finite weights"
        largest = max(p.detach().abs().max().item() for p in self.model.parameters())
        if largest > _MAX_WEIGHT:
            return f"weights of magnitude {largest:.3g}"
        if finite_steps == 0:
            return "a non-finite loss at every step"
        return ""

    def preview(self) -> Preview:
        """Embed the fixed preview voxels with the current weights."""
        lo, hi = self._preview_box
        was_training = self.model.training
        self.model.eval()
        loc = encode_block(self.model, self._volumes_np[0], lo, hi, device=self.device)
        self.model.train(was_training)
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
        return Preview(coords=grid, embedding=loc.flatten(1).T.float().cpu().numpy())

    def save(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            raise ValueError("no checkpoint path given")
        written = save_checkpoint(
            path,
            self.model,
            step=self.step,
            optimizer=self.optimizer,
            train_config=self.config.to_dict(),
            history=self.history,
        )
        self.saved_step = self.step
        return written

    # -- loop --------------------------------------------------------------
    def run(self) -> Iterator[TrainEvent]:
        """Train until the step budget, the time budget or a cancel; yield events on the way."""
        c = self.config
        total = c.steps
        start = time.perf_counter()
        deadline = start + 60.0 * c.max_minutes if c.max_minutes else math.inf
        first_step = self.step
        sums: dict[str, torch.Tensor] = {}
        n_sum = 0
        finite_steps = torch.zeros((), device=self.device)
        good_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        recoveries = 0
        final_kind, message = "done", ""
        last_save_step, last_save_time = self.step, start

        def timing() -> tuple[float, float, float]:
            elapsed = time.perf_counter() - start
            rate = (self.step - first_step) / elapsed if elapsed > 0 else 0.0
            eta = (total - self.step) / rate if rate > 0 else float("nan")
            if math.isfinite(deadline):
                eta = (
                    min(eta, max(0.0, deadline - time.perf_counter()))
                    if math.isfinite(eta)
                    else deadline - time.perf_counter()
                )
            return elapsed, rate, eta

        where = f"training on {self.device}"
        if self.sampling_device != self.device:
            where += f" (the volumes stay in host memory: they exceed {DEVICE_VOLUME_SHARE:.0%} of its free memory)"
        yield TrainEvent("start", self.step, total, message=where)
        self.model.train()
        while self.step < total:
            if self._cancel.is_set():
                final_kind, message = "cancelled", f"cancelled at step {self.step}"
                break
            if time.perf_counter() >= deadline:
                final_kind, message = "time_budget", f"time budget of {c.max_minutes:g} min reached at step {self.step}"
                break
            loss, parts = self._loss()
            self._optimise(loss)
            self.step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            n_sum += 1
            finite_steps += torch.isfinite(parts["loss"]).to(finite_steps.dtype)

            if self.step % c.log_every == 0 or self.step == total:
                problem = self._healthy(int(finite_steps.item()))
                finite_steps.zero_()
                if problem:
                    recoveries += 1
                    self.model.load_state_dict(good_state)
                    self._base_lr *= 0.5
                    if recoveries >= _MAX_RECOVERIES:
                        final_kind = "nonfinite"
                        message = (
                            f"training diverged ({problem} at step {self.step}, {recoveries} times even after "
                            "halving the learning rate); the final weights were not saved. Try a lower learning rate "
                            f"(it was {c.lr:g}) or check the volume's intensities."
                        )
                        break
                    sums, n_sum = {}, 0
                    continue
                good_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                losses = {k: float(v) / n_sum for k, v in sums.items()}
                nonfinite = not math.isfinite(losses.get("loss", 0.0))
                losses = {k: v for k, v in losses.items() if math.isfinite(v)}
                losses["step"] = self.step
                self.history.append(losses)
                sums, n_sum = {}, 0
                elapsed, rate, eta = timing()
                yield TrainEvent(
                    "step",
                    self.step,
                    total,
                    elapsed,
                    rate,
                    eta,
                    dict(losses),
                    message="skipped a step with a non-finite loss" if nonfinite else "",
                )
                # only here, right after the health check, so a periodic save never holds a diverged model
                if self.checkpoint_path is not None and self._checkpoint_due(last_save_step, last_save_time):
                    self.save()
                    last_save_step, last_save_time = self.step, time.perf_counter()
            if c.preview_every and self.step % c.preview_every == 0 and not self._cancel.is_set():
                elapsed, rate, eta = timing()
                yield TrainEvent("preview", self.step, total, elapsed, rate, eta, preview=self.preview())

        self.model.eval()
        if final_kind != "nonfinite" and not self._weights_finite():
            self.model.load_state_dict(good_state)
        # a diverged run keeps whatever the checkpoint path held (a previous
        # model, or the last healthy periodic save) rather than overwriting it
        # with weights that have been shown to be unreliable
        if self.checkpoint_path is not None and final_kind != "nonfinite":
            self.save()
        elapsed, rate, eta = timing()
        yield TrainEvent(
            final_kind, self.step, total, elapsed, rate, 0.0, message=message or f"finished {self.step} steps"
        )

    def _checkpoint_due(self, last_step: int, last_time: float) -> bool:
        c = self.config
        by_steps = c.checkpoint_every and self.step - last_step >= c.checkpoint_every
        by_time = c.checkpoint_minutes and time.perf_counter() - last_time >= 60.0 * c.checkpoint_minutes
        return bool(by_steps or by_time)

    def fit(self) -> HyperbolicVAE:
        """Run to completion without looking at events; return the trained model."""
        for _ in self.run():
            pass
        return self.model


def describe_config(config: ModelConfig) -> str:
    """The architecture options a user can set, in their words: ``latent_dim 2, poincare, gyroplane``."""
    return f"latent_dim {config.latent_dim}, {config.manifold}" + (
        ", gyroplane" if config.gyroplane and config.hyperbolic else ""
    )
