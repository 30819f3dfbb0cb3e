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

    with atomic_directory("out/frames") as tmp:   # tmp = out/.frames.<pid>.<random>.tmp/
        write_pngs(tmp)                           # becomes out/frames on success

A folder is never replaced unless it is empty or its owner says so: :func:`atomic_directory` refuses
a non-empty folder unless a ``replaceable`` check (e.g. "holds only frames this tool wrote") accepts
it, both before the block and again right before the swap, and it never replaces the current folder
or a folder above it. Temporary names carry the writing process's id, so the leftovers of a killed
process (``SIGKILL``, power loss) are recognised and removed by the next write to the same path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import OutputError

#: Marker placed between the random part and the original suffix of a temporary name.
TEMP_MARKER = ".tmp"
#: Marker of the name an existing folder is moved to while it is being replaced.
OLD_MARKER = ".old"
#: ``errno`` values that mean "the user's destination cannot take this write".
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Length and alphabet of the random part ``tempfile`` puts in a temporary name.
_RANDOM_PART = r"[a-z0-9_]{8}"
#: How many entries of a refused folder an error message lists before "...".
ENTRIES_SHOWN = 5
#: When this process started (close enough: when it first imported this module). A temporary file
#: left by another process is only ever removed if it was last changed before this moment.
PROCESS_START = time.time()

#: A ``replaceable(folder)`` check: returns if ``folder`` may be replaced, raises :class:`OutputError` if not.
ReplaceCheck = Callable[[Path], None]


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
    if code == errno.ENAMETOOLONG:
        return OutputError(f"cannot write {target.name[:40]}...: the name is too long for the file system; "
                           "choose a shorter name")
    return None


def _temp_name_parts(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of a hidden temporary name that keeps the destination's suffix.

    The prefix holds this process's id, so a later run can tell a dead writer's leftovers from a live one's.
    """
    return f".{path.stem}.{os.getpid()}.", f"{TEMP_MARKER}{path.suffix}"


def few_names(names: list[str], shown: int = ENTRIES_SHOWN) -> str:
    """``a, b, c, ...``: the first ``shown`` names of a list, for an error message."""
    names = sorted(names)
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a process we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _stale_pattern(path: Path, folder_output: bool) -> re.Pattern[str]:
    """Our temporary names for exactly ``path`` (group 1: the writer's pid; absent in older names)."""
    if folder_output:
        return re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?{_RANDOM_PART}{re.escape(TEMP_MARKER)}")
    return re.compile(rf"\.{re.escape(path.stem)}\.(?:(\d+)\.)?{_RANDOM_PART}{re.escape(TEMP_MARKER + path.suffix)}")


def remove_stale_temps(path: str | os.PathLike[str], folder_output: bool = False) -> list[Path]:
    """Remove what a killed earlier write of ``path`` left behind; return what was removed.

    Conservative: only hidden entries named exactly as this module names the temporary file (or folder,
    ``folder_output``) of this very ``path``, last changed before this process started, and written by a
    process that no longer runs (names from before the pid was recorded: by the name and age alone).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = _stale_pattern(path, folder_output)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or entry.is_symlink() or entry.is_dir() != folder_output:
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime >= PROCESS_START:
                continue
            if match.group(1) is not None and _pid_alive(int(match.group(1))):
                continue
            _remove(entry)
            removed.append(entry)
    return removed


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
    if path.is_dir():
        raise OutputError(f"cannot write the file {path}: a folder with that name already exists")
    remove_stale_temps(path)
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


def is_current_folder_or_above(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the current working folder or one of the folders that contain it."""
    try:
        target = Path(path).resolve()
        here = Path.cwd().resolve()
    except OSError:
        return False
    return target == here or target in here.parents


def check_directory_target(path: str | os.PathLike[str], replaceable: ReplaceCheck | None = None) -> Path:
    """Check that a folder output may go to ``path``; raise :class:`OutputError` saying why not.

    Allowed: a new folder, an empty one, or one ``replaceable`` accepts (it raises if it does not).
    Never the current folder or a folder above it (replacing it would pull the ground from under the
    shell that runs us), never a file, never a non-empty folder without a ``replaceable`` check.
    """
    path = Path(path)
    if is_current_folder_or_above(path):
        raise OutputError(
            f"cannot write a folder output to {path}: it is the current folder (or contains it), and the "
            f"export would replace it; choose a new subfolder, e.g. {Path(path) / 'frames'}"
        )
    if path.is_symlink():
        raise OutputError(f"cannot write a folder output to {path}: it is a symbolic link; choose a real folder")
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write folder {path}: a file with that name already exists")
    if path.is_dir():
        try:
            entries = [entry.name for entry in path.iterdir()]
        except OSError as exc:
            raise OutputError(f"cannot look inside {path} ({exc.strerror}); choose a new or empty folder") from exc
        if entries:
            if replaceable is None:
                raise OutputError(
                    f"{path} already exists and is not empty ({few_names(entries)}); refusing to replace it: "
                    f"choose a new or empty folder"
                )
            replaceable(path)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], replaceable: ReplaceCheck | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it becomes ``path`` if the block succeeds.

    ``path`` must pass :func:`check_directory_target` (new, empty, or accepted by ``replaceable``),
    checked before the block and again right before the swap, so files someone added meanwhile are not
    lost. An accepted existing folder is first moved aside, the new folder is renamed into place, then
    the old one is deleted (if the rename fails, the old folder is restored). On any exception inside
    the block the temporary folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    check_directory_target(path, replaceable)
    folder = check_writable_folder(path.parent if str(path.parent) else Path("."))
    remove_stale_temps(path, folder_output=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_MARKER, dir=folder))
    except OSError as exc:
        raise (output_error_from(exc, path) or exc) from exc
    old: Path | None = None
    try:
        with _removed_on_failure(tmp, path):
            yield tmp
            _fsync_tree(tmp)
            os.chmod(tmp, _final_mode(path, 0o777))
            check_directory_target(path, replaceable)
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=OLD_MARKER, dir=folder))
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
