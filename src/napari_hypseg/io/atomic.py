"""Write a file so that its final name only ever holds a complete file."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from .._errors import UserError


def full_suffix(path: Path) -> str:
    """The lower-cased suffix that names the format, ``".nii.gz"`` included.

    Examples
    --------
    >>> full_suffix(Path("brain.T1.nii.gz"))
    '.nii.gz'
    >>> full_suffix(Path("tomo.MRC"))
    '.mrc'
    """
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` on success.

    The temporary file lives in the same folder (a rename across file
    systems would not be atomic) and keeps the full suffix of `final`,
    because writers such as nibabel choose compression from the name.
    If the body raises, the temporary file is removed and `final` is left
    exactly as it was (absent, or the previous complete file).

    Parameters
    ----------
    final : path-like
        Where the finished file must end up.

    Yields
    ------
    Path
        The temporary path to write to.
    """
    final = Path(final)
    if not final.parent.is_dir():
        raise UserError(f"cannot write {final}: folder {final.parent} does not exist")
    suffix = full_suffix(final)
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    tmp = final.with_name(f".{stem}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        # Flush to disk before the rename so that a power cut cannot leave
        # the final name pointing at a file whose blocks were never written.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.replace(tmp, final)
        except PermissionError as exc:
            # Windows refuses to replace a file that is memory-mapped, which
            # is the case for a volume still shown in napari.
            raise UserError(
                f"cannot replace {final}: it is in use (close the layer that shows it, "
                "or save under another name)"
            ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
