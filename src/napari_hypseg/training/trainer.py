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
from ..model import HyperbolicVAE, ModelConfig, hierarchical_triplet_loss, negative_elbo
from ..model.checkpoint import read_checkpoint, save_checkpoint
from ..segmentation.embed import encode_block
from .config import TrainConfig
from .events import Preview, TrainEvent
from .sampler import TripletSampler

# consecutive log intervals that ended with non-finite weights before the run gives up
_MAX_RECOVERIES = 3


def _as_tensor(data: np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.asarray(data)
    if array.dtype != np.float32:
        array = array.astype(np.float32)  # integer tomograms need one float copy for grid_sample
    with warnings.catch_warnings():
        # read-only memory maps: torch warns it cannot guarantee immutability; we never write
        warnings.simplefilter("ignore", UserWarning)
        return torch.as_tensor(array).to(device)


def preview_coords(shape: Sequence[int], n_points: int, patch_size: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
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
        and step are restored; ``train_config.steps`` is the new total.
    """

    def __init__(
        self,
        volumes: Sequence[np.ndarray],
        *,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None,
    ):
        if isinstance(volumes, np.ndarray):
            volumes = [volumes]
        if not len(volumes):
            raise UserError("no volume to train on")
        self.config = train_config or TrainConfig()
        payload = read_checkpoint(resume) if resume is not None else None
        if payload is not None:
            model_config = ModelConfig.from_dict(payload["model_config"])
        model_config = model_config or ModelConfig()
        for i, data in enumerate(volumes):
            check_volume(data, min_size=model_config.patch_size, name=f"volume #{i + 1}" if len(volumes) > 1 else "volume")

        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = HyperbolicVAE(model_config)
        self.step = 0
        self.history: list[dict[str, float]] = []
        if payload is not None:
            self.model.load_state_dict(payload["state_dict"])
            self.step = int(payload["step"])
            self.history = list(payload.get("history", []))
        else:
            self.model.set_normalization(*robust_range(volumes))
        self.model.to(self.device)
        self._base_lr = self.config.lr
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr, amsgrad=True)
        if payload is not None and "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr

        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self._volumes_np = list(volumes)
        self._volumes = [_as_tensor(v, self.device) for v in volumes]
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.config.seed + self.step)
        self.sampler = TripletSampler(
            self._volumes, self.model.patch_size, self.model.normalize, self.config.sampler, gen
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
        batch = self.sampler.sample(c.batch_size)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=c.amp and self.device.type == "cuda"):
            elbo, parts, loc = negative_elbo(self.model, batch.all_patches(), n_samples=c.n_samples, beta=c.kl_weight)
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
        return save_checkpoint(
            path, self.model, step=self.step, optimizer=self.optimizer,
            train_config=self.config.to_dict(), history=self.history,
        )

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
        good_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        recoveries = 0
        final_kind, message = "done", ""

        def timing() -> tuple[float, float, float]:
            elapsed = time.perf_counter() - start
            rate = (self.step - first_step) / elapsed if elapsed > 0 else 0.0
            eta = (total - self.step) / rate if rate > 0 else float("nan")
            if math.isfinite(deadline):
                eta = min(eta, max(0.0, deadline - time.perf_counter())) if math.isfinite(eta) else deadline - time.perf_counter()
            return elapsed, rate, eta

        yield TrainEvent("start", self.step, total, message=f"training on {self.device}")
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

            if self.step % c.log_every == 0 or self.step == total:
                if not self._weights_finite():
                    recoveries += 1
                    self.model.load_state_dict(good_state)
                    self._base_lr *= 0.5
                    if recoveries >= _MAX_RECOVERIES:
                        final_kind = "nonfinite"
                        message = (
                            f"training diverged (non-finite weights) {recoveries} times; restored the last "
                            f"good weights from before step {self.step}. Try a lower learning rate."
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
                    "step", self.step, total, elapsed, rate, eta, dict(losses),
                    message="skipped a step with a non-finite loss" if nonfinite else "",
                )
            if c.preview_every and self.step % c.preview_every == 0 and not self._cancel.is_set():
                elapsed, rate, eta = timing()
                yield TrainEvent("preview", self.step, total, elapsed, rate, eta, preview=self.preview())
            if c.checkpoint_every and self.checkpoint_path and self.step % c.checkpoint_every == 0:
                self.save()

        self.model.eval()
        if final_kind != "nonfinite" and not self._weights_finite():
            self.model.load_state_dict(good_state)
        if self.checkpoint_path is not None:
            self.save()
        elapsed, rate, eta = timing()
        yield TrainEvent(final_kind, self.step, total, elapsed, rate, 0.0, message=message or f"finished {self.step} steps")

    def fit(self) -> HyperbolicVAE:
        """Run to completion without looking at events; return the trained model."""
        for _ in self.run():
            pass
        return self.model
