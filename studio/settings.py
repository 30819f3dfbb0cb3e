"""Persistent studio settings (QSettings): recent files, window state, autosave and recovery paths.

Everything the studio remembers between runs goes through :func:`make_settings`, so tests can point
it at a temporary INI file with :func:`use_settings_file` and never touch the user's settings.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

ORGANISATION = "MoEE"
APPLICATION = "MoEE Studio"
MAX_RECENT = 10
DEFAULT_AUTOSAVE_S = 60
RECOVERY_PREFIX = "recovery-"
LEGACY_RECOVERY_NAME = "recovery.moee"  # the one shared file of older versions
_RECOVERY_NAME = re.compile(re.escape(RECOVERY_PREFIX) + r"(\d+)(?:-\d+)?\.moee")
_WIN_QUERY_LIMITED_INFORMATION = 0x1000
_WIN_STILL_ACTIVE = 259

_settings_file: str | None = os.environ.get("MOEE_STUDIO_SETTINGS") or None


def use_settings_file(path: str | os.PathLike[str] | None) -> None:
    """Store settings in the INI file ``path`` instead of the platform default (``None`` = default)."""
    global _settings_file
    _settings_file = None if path is None else str(path)


def make_settings() -> QSettings:
    """Return the studio's QSettings (the platform store, or the INI file chosen by use_settings_file)."""
    if _settings_file:
        return QSettings(_settings_file, QSettings.Format.IniFormat)
    return QSettings(ORGANISATION, APPLICATION)


def recent_files() -> list[str]:
    """Recently opened or saved project files, newest first (missing files are dropped)."""
    value = make_settings().value("recent_files", [])
    if isinstance(value, str):
        value = [value]
    return [str(p) for p in (value or []) if Path(str(p)).exists()]


def add_recent_file(path: str | os.PathLike[str]) -> list[str]:
    """Put ``path`` at the top of the recent files list and return the new list."""
    path = str(Path(path).resolve())
    files = [p for p in recent_files() if p != path]
    files.insert(0, path)
    files = files[:MAX_RECENT]
    settings = make_settings()
    settings.setValue("recent_files", files)
    settings.sync()
    return files


def autosave_interval_s() -> int:
    """Seconds between autosaves to the recovery file (0 disables autosave)."""
    try:
        return int(make_settings().value("autosave_interval_s", DEFAULT_AUTOSAVE_S))
    except (TypeError, ValueError):
        return DEFAULT_AUTOSAVE_S


def recovery_dir() -> Path:
    """Folder of the crash-recovery file (next to the settings file when one is set)."""
    override = make_settings().value("recovery_dir", "")
    if override:
        return Path(str(override))
    if _settings_file:
        return Path(_settings_file).parent / "recovery"
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".moee-studio") / "recovery"


def recovery_file(serial: int = 0) -> Path:
    """This process's autosave file (one per process and window: ``recovery-<pid>[-<serial>].moee``).

    It exists after a crash; a clean exit removes it. Other instances only ever offer or delete it
    once the process ``<pid>`` has ended (:func:`orphan_recovery_files`).
    """
    suffix = f"-{serial}" if serial else ""
    return recovery_dir() / f"{RECOVERY_PREFIX}{os.getpid()}{suffix}.moee"


def recovery_owner(path: str | os.PathLike[str]) -> int | None:
    """The process id in a recovery file's name (``None`` for the old shared ``recovery.moee``)."""
    match = _RECOVERY_NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a process we may not signal counts as running)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(_WIN_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            return False
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == _WIN_STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def orphan_recovery_files() -> list[Path]:
    """Recovery files left by instances that ended without a clean exit, newest first.

    A file whose owning process still runs belongs to another open studio and is never listed;
    this process's own files are not listed either. The old shared ``recovery.moee`` (no owner
    recorded) counts as left behind.
    """
    folder = recovery_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if not path.is_file():
            continue
        if path.name == LEGACY_RECOVERY_NAME:
            found.append(path)
            continue
        pid = recovery_owner(path)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)
