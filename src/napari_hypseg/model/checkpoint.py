"""Model files: weights, configs, optimizer state and step, in one weights-only-loadable checkpoint."""

from __future__ import annotations

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
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


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
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer napari-hypseg; please upgrade")
    return payload


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> HyperbolicVAE:
    """Rebuild the trained model stored in ``path``, in eval mode."""
    payload = read_checkpoint(path)
    model = HyperbolicVAE(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
