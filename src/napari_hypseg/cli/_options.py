"""Options several sub-commands share, declared once with their defaults from the configs."""

from __future__ import annotations

from .._device import DEVICE_CHOICES
from .._errors import SettingError, UserError

#: config fields whose option is not ``--field-name``
OPTION_NAMES = {"binning": "--bin", "k_min": "--clusters", "k_max": "--clusters"}


def option_name(setting: str) -> str:
    return OPTION_NAMES.get(setting, "--" + setting.replace("_", "-"))


def as_option_error(exc: SettingError) -> UserError:
    """A config's complaint about a field, worded with the option's name."""
    return UserError(f"{option_name(exc.setting)} {exc.reason}")


def add_device_and_seed(group, defaults) -> None:
    """``--device`` and ``--seed`` with the defaults of ``defaults`` (a TrainConfig or SegmentConfig).

    ``hypseg run`` and ``demo`` pass one value to both configs; their defaults
    agree (tests/test_cli.py checks it).
    """
    group.add_argument(
        "--device",
        default=defaults.device,
        help=f"one of {', '.join(DEVICE_CHOICES)} (auto: CUDA if present) or cuda:N (default %(default)s)",
    )
    group.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
