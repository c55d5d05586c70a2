"""``hypseg`` command line: thin argument parsing over the same core the widgets use.

Each sub-command lives in its own module exposing ``register(subparsers)``,
which adds a parser whose ``func`` default takes the parsed args and returns
an exit code. Errors a user can fix are raised as :class:`UserError` and
printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import __version__
from .._errors import UserError

SUBCOMMANDS = ("info", "sample", "train", "segment", "run", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hypseg",
        description="Unsupervised hierarchical segmentation of 3D volumes with a hyperbolic VAE.",
    )
    parser.add_argument("--version", action="version", version=f"hypseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a sub-command not written yet
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as ``hypseg: warning: ...`` lines, without source excerpts."""
    print(f"hypseg: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"hypseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hypseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
