"""Model files: weights, configs, optimizer state and step, in one weights-only-loadable checkpoint."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import torch

from .._errors import UserError
from ..io.atomic import atomic_path
from .config import ModelConfig
from .vae import HyperbolicVAE

FORMAT = "napari-hypseg-model"
FORMAT_VERSION = 1

# Largest model a file may ask for. The paper's model has ~3 M parameters and
# a 17-voxel patch; a crafted config (hidden=1e9) would otherwise make the
# loader allocate hundreds of GB before any check could run, and a huge patch
# makes every embedding block enormous.
MAX_PARAMETERS = 200_000_000
MAX_PATCH_SIZE = 129


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all().item() for t in state.values() if t.is_floating_point())


def save_checkpoint(
    path: str | os.PathLike,
    model: HyperbolicVAE,
    *,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    train_config: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
) -> Path:
    """Write a checkpoint atomically (see :func:`napari_hypseg.io.atomic.atomic_path`).

    The model's :attr:`~HyperbolicVAE.voxel_size` (z, y, x) is stored when known,
    beside the intensity range of its training data (the normalisation buffers).

    Refuses to write non-finite weights, so a diverged run can never replace a
    good model file. Everything stored is a tensor, number, string, list or
    dict, so ``torch.load(path, weights_only=True)`` reads it.
    """
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not _all_finite(state):
        raise RuntimeError("refusing to save a model with NaN or infinite weights")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "state_dict": state,
        "step": int(step),
        "train_config": dict(train_config or {}),
        "history": list(history or []),
    }
    voxel_size = getattr(model, "voxel_size", None)
    if voxel_size is not None:
        payload["voxel_size"] = [float(v) for v in voxel_size]
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    # serialise in memory first: torch.save reports a full disk as a bare
    # RuntimeError, while a plain file write raises the OSError atomic_path explains
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
    return path


def check_model_size(config: ModelConfig) -> int:
    """Parameter count of a model built from ``config``; :class:`UserError` past the bounds above.

    Counted on torch's "meta" device, which allocates no memory.
    """
    if config.patch_size > MAX_PATCH_SIZE:
        raise UserError(f"the model asks for a {config.patch_size}-voxel patch; at most {MAX_PATCH_SIZE} is supported")
    with torch.device("meta"):
        n = sum(p.numel() for p in HyperbolicVAE(config).parameters())
    if n > MAX_PARAMETERS:
        raise UserError(f"the model asks for {n:,} parameters; at most {MAX_PARAMETERS:,} are supported")
    return n


def estimated_checkpoint_bytes(config: ModelConfig) -> int:
    """Upper bound of a checkpoint's size: weights plus Adam's three moment buffers (amsgrad), float32."""
    return 16 * check_model_size(config) + 2**20


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict (weights only, on CPU), with user-facing errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign/corrupt files
        raise UserError(f"{path} is not a readable napari-hypseg model ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a napari-hypseg model file")
    version = payload.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{path} is damaged: format_version is {version!r}, not a number")
    if version > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer napari-hypseg; please upgrade")
    for key, kind in (("model_config", dict), ("state_dict", dict), ("step", int)):
        if not isinstance(payload.get(key), kind):
            raise UserError(f"{path} is damaged: {key!r} is missing or not a {kind.__name__}")
    payload["config"] = _model_config(payload["model_config"], path)
    payload["voxel_size"] = _voxel_size(payload.get("voxel_size"), path)
    return payload


def check_voxel_size(value: Any) -> tuple[float, float, float]:
    """``value`` as a voxel size (z, y, x) of three positive finite floats; :class:`UserError` otherwise."""
    try:
        size = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or not all(math.isfinite(v) and v > 0 for v in size):
        raise UserError(f"a voxel size must be three positive numbers (z, y, x), got {value!r}")
    return size


def _voxel_size(value: Any, path: Path) -> tuple[float, float, float] | None:
    """The stored voxel size (z, y, x); None in model files written before it was recorded."""
    if value is None:
        return None
    try:
        return check_voxel_size(value)
    except UserError:
        raise UserError(f"{path} is damaged: its voxel size {value!r} is not three positive numbers") from None


def _model_config(data: dict[str, Any], path: Path) -> ModelConfig:
    try:
        config = ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path} is damaged or foreign: its model config is invalid ({exc})") from None
    try:
        check_model_size(config)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    return config


def build_model(payload: dict[str, Any], path: str | os.PathLike) -> HyperbolicVAE:
    """The model of a payload from :func:`read_checkpoint`, with its weights; UserError if they do not fit."""
    model = HyperbolicVAE(payload["config"])
    state = payload["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is damaged: its weights are not all tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # torch lists every missing/unexpected/mis-shaped key over many lines
        first = " ".join(str(exc).split())[:300]
        raise UserError(f"{path} is damaged: its weights do not fit its model config ({first})") from None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise UserError(f"{path} holds NaN or infinite weights; retrain the model")
    model.voxel_size = payload.get("voxel_size")
    return model


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> HyperbolicVAE:
    """Rebuild the trained model stored in ``path``, in eval mode."""
    model = build_model(read_checkpoint(path), path)
    return model.to(device).eval()
