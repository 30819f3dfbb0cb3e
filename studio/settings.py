"""Persistent studio settings (QSettings): recent files, window state, autosave and recovery paths.

Everything the studio remembers between runs goes through :func:`make_settings`, so tests can point
it at a temporary INI file with :func:`use_settings_file` and never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

ORGANISATION = "MoEE"
APPLICATION = "MoEE Studio"
MAX_RECENT = 10
DEFAULT_AUTOSAVE_S = 60

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


def recovery_file() -> Path:
    """The autosave file; it exists after a crash (a clean exit removes it)."""
    return recovery_dir() / "recovery.moee"
