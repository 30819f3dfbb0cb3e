"""Atomic writes: a file or folder appears complete at its final path, or not at all.

Everything is first written under a hidden temporary name *in the destination folder* (so the final
``os.replace`` never crosses a file system), flushed to disk with ``fsync`` and then renamed onto the
destination. On any exception the temporary file or folder is removed and the destination is left
untouched. Operating-system failures a user can cause (read-only folder, no permission, full disk)
are re-raised as :class:`engine.errors.OutputError` with a message that says what happened.

Typical use::

    atomic_write_bytes("model/config.json", data)

    with atomic_path("out/clip.mp4") as tmp:     # tmp = out/.clip.<random>.tmp.mp4
        encode_video(tmp)                         # renamed onto out/clip.mp4 on success

    with atomic_directory("out/frames") as tmp:   # tmp = out/.frames.<random>.tmp/
        write_pngs(tmp)                           # replaces out/frames as a whole on success
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from engine.errors import OutputError

#: Marker placed between the random part and the original suffix of a temporary name.
TEMP_MARKER = ".tmp"
#: Marker of the name an existing folder is moved to while it is being replaced.
OLD_MARKER = ".old"
#: ``errno`` values that mean "the user's destination cannot take this write".
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Return ``folder`` as a Path after checking it exists, is a folder and can be written to.

    Raises :class:`OutputError` otherwise.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OutputError(f"cannot write to {folder}: folder does not exist; create it first")
    if not folder.is_dir():
        raise OutputError(f"cannot write to {folder}: it is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {folder}: folder is read-only; choose another output folder")
    return folder


def output_error_from(exc: OSError, target: str | os.PathLike[str]) -> OutputError | None:
    """Translate an OSError caused by the destination into an :class:`OutputError` (or None).

    Only "read-only / no permission" and "disk full" failures are translated; other errors are
    programming or system faults and are left alone (None is returned).
    """
    code = getattr(exc, "errno", None)
    target = Path(target)
    if code in _NO_SPACE_ERRNOS:
        return OutputError(f"no space left on device while writing {target}; free some disk space")
    if code in _READ_ONLY_ERRNOS:
        return OutputError(f"cannot write to {target.parent}: folder is read-only ({os.strerror(code)})")
    return None


def _temp_name_parts(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of a hidden temporary name that keeps the destination's suffix."""
    return f".{path.stem}.", f"{TEMP_MARKER}{path.suffix}"


def _fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk; best effort (not supported everywhere)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file or folder if it exists, ignoring errors (cleanup path)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, target: Path) -> Iterator[None]:
    """Delete ``tmp`` when the block fails; disk-full and read-only errors become :class:`OutputError`."""
    try:
        yield
    except OSError as exc:
        _remove(tmp)
        translated = output_error_from(exc, target)
        if translated is None:
            raise
        raise translated from exc
    except BaseException:
        _remove(tmp)
        raise


def _process_umask() -> int:
    """The process's file-creation mask (read from /proc on Linux, where it can be read without changing it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path, default: int) -> int:
    """Permissions for what replaces ``target``: those of the file it replaces, else ``default`` less the umask.

    The temporary files and folders are created private (0600 / 0700); a finished export, project or
    checkpoint gets the permissions a plain ``open()`` or ``mkdir()`` would have given it.
    """
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return default & ~_process_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file (``.name.<random>.tmp.suffix``, already created, empty) keeps the suffix so
    encoders that pick a format by extension still work. It is fsynced before the rename. On any
    exception it is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    folder = check_writable_folder(path.parent if str(path.parent) else Path("."))
    prefix, suffix = _temp_name_parts(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as exc:
        raise (output_error_from(exc, path) or exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    with _removed_on_failure(tmp, path):
        yield tmp
        if not tmp.is_file():
            raise OutputError(f"nothing was written for {path}")
        _fsync_file(tmp)
        os.chmod(tmp, _final_mode(path, 0o666))
        os.replace(tmp, path)
        _fsync_folder(folder)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (complete file or no change)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (complete file or no change)."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_tree(folder: Path) -> None:
    """fsync every file below ``folder`` and the folders themselves."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync_file(Path(root) / name)
        _fsync_folder(Path(root))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it becomes ``path`` if the block succeeds.

    An existing folder at ``path`` is replaced as a whole: it is first moved aside, the new folder is
    renamed into place, then the old one is deleted (if the rename fails, the old folder is restored).
    On any exception inside the block the temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write folder {path}: a file with that name already exists")
    folder = check_writable_folder(path.parent if str(path.parent) else Path("."))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_MARKER, dir=folder))
    except OSError as exc:
        raise (output_error_from(exc, path) or exc) from exc
    old: Path | None = None
    try:
        with _removed_on_failure(tmp, path):
            yield tmp
            _fsync_tree(tmp)
            os.chmod(tmp, _final_mode(path, 0o777))
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=OLD_MARKER, dir=folder))
                old.rmdir()
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except OSError:
                    os.replace(old, path)
                    old = None
                    raise
            else:
                os.replace(tmp, path)
            _fsync_folder(folder)
    finally:
        if old is not None:
            _remove(old)
