"""Write a file so that its final name only ever holds a complete file."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
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


def stem_of(path: Path) -> str:
    """The file name without the suffix that names its format: what output names are built from.

    Examples
    --------
    >>> stem_of(Path("brain.T1.nii.gz"))
    'brain.T1'
    >>> stem_of(Path("tomo.ome.zarr"))
    'tomo'
    """
    if path.name.lower().endswith(".ome.zarr"):  # a folder format
        return path.name[: -len(".ome.zarr")]
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


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
    if final.is_dir():
        raise UserError(f"cannot write {final}: it is a folder")
    tmp = _temporary_name(final)
    try:
        try:
            yield tmp
            # Flush to disk before the rename so that a power cut cannot leave
            # the final name pointing at a file whose blocks were never written.
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except PermissionError as exc:
            if os.name == "nt" and final.exists():
                # Windows refuses to replace a file that is memory-mapped, which
                # is the case for a volume still shown in napari.
                raise UserError(
                    f"cannot replace {final}: it is in use (close the layer that shows it, or save under another name)"
                ) from exc
            raise UserError(f"cannot write {final}: {_reason(exc)}") from exc
        except OSError as exc:
            # numpy's tofile reports a short write (full disk, ulimit -f) without an errno
            short = exc.errno is None and "written" in str(exc)
            if exc.errno not in _USER_ERRNOS and not short:
                raise
            raise UserError(f"cannot write {final}: {_reason(exc)}") from exc
    finally:
        # on a read-only or vanished folder the unlink fails too; that second
        # error must not hide the first one, which says what went wrong
        with contextlib.suppress(OSError):
            tmp.unlink()


# failures the user fixes by choosing another place or freeing space
_USER_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EISDIR,
    errno.ENOTDIR,
}


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left (free some space or write elsewhere)"
    if exc.errno == errno.EFBIG:
        return "file too large for this file system or for the file-size limit (ulimit -f)"
    if exc.errno is None:
        return "the write stopped short (the disk is full or a file-size limit was reached)"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return exc.strerror or type(exc).__name__


def _temporary_name(final: Path) -> Path:
    return final.with_name(f".{stem_of(final)}.{secrets.token_hex(4)}{TMP_MARK}{full_suffix(final)}")


#: part of every temporary name, so leftovers of a killed process are recognisable
TMP_MARK = ".tmp"


def check_writable(
    final: str | os.PathLike, *, need_bytes: int = 0, what: str = "output", shown: Path | None = None
) -> Path:
    """Raise :class:`UserError` unless ``final`` can be written now, before any long job starts.

    ``final`` is a file path; missing parent folders count as writable when
    the nearest existing ancestor is (they are created by the writers). A real
    probe file is created and removed, because permission bits do not tell
    about read-only mounts or ACLs. ``need_bytes`` is compared with the free
    space of that file system. Messages name ``shown`` (e.g. the output
    folder) instead of ``final`` when given.
    """
    final = Path(final)
    name = shown or final
    if final.is_dir():
        raise UserError(f"cannot write the {what} {name}: it is a folder; give a file name")
    folder = final.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write the {what} {name}: {folder} is a file, not a folder")
    probe = _temporary_name(folder / final.name)
    try:
        with open(probe, "wb"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write the {what} {name}: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = shutil.disk_usage(folder).free
    if need_bytes > free:
        raise UserError(
            f"cannot write the {what} {name}: it needs about {_human_size(need_bytes)} "
            f"but only {_human_size(free)} are free there"
        )
    return final


def _human_size(n: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
