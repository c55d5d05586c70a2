"""Choosing the torch device: CUDA when present, else CPU, or what the user asked for.

The names and their check are free of torch (configs validate them when the
CLI starts); resolving a name to a device imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import SettingError, UserError

if TYPE_CHECKING:
    import torch

#: the device names offered (``cuda:N`` is accepted too)
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"


def check_device_name(device: str, setting: str = "device") -> None:
    """Raise :class:`SettingError` unless ``device`` is auto, cpu, cuda or cuda:N (no GPU needed to pass)."""
    if device not in DEVICE_CHOICES and not str(device).startswith("cuda:"):
        raise SettingError(setting, f"must be auto, cpu or cuda, got {device!r}")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {device.type!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto")
    return device


def describe_device(device: torch.device) -> str:
    """Human-readable name, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"
