"""``hypseg`` command line: thin argument parsing over the same core the widgets use.

Each sub-command lives in its own module exposing ``register(subparsers)``,
which adds a parser whose ``func`` default takes the parsed args and returns
an exit code. Errors a user can fix are raised as :class:`UserError` and
printed as one line, without a traceback.

Exit codes (docs/reliability.md): 0 done, 2 bad input (options, files, a
diverged training run), 130 interrupted (Ctrl-C or SIGTERM; partial results
are removed, a training checkpoint is kept), 1 internal error (a traceback:
a bug worth reporting).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import warnings

from .. import __version__
from .._errors import UserError
from .._threads import configure_threads

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """Usage errors on the same single ``hypseg <cmd>: error: ...`` line as every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


SUBCOMMANDS = ("info", "sample", "train", "segment", "run", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hypseg",
        description="Unsupervised hierarchical segmentation of 3D volumes with a hyperbolic VAE.",
    )
    parser.add_argument("--version", action="version", version=f"hypseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as ``hypseg: warning: ...`` lines, without source excerpts."""
    print(f"hypseg: warning: {message}", file=file or sys.stderr)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (kill, a batch scheduler's time limit) unwinds like Ctrl-C, so temporary files are removed."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (main() called from a worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # before build_parser() imports the sub-commands, and torch with them
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        with _sigterm_interrupts():
            return int(args.func(args) or EXIT_OK)
    except UserError as exc:
        print(f"hypseg {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        detail = f": {_one_line(exc)}" if str(exc) else ""
        print(f"hypseg {args.command}: interrupted{detail}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = previous_showwarning


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
