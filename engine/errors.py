"""Errors the engine raises for bad input: each names what is wrong and how to fix it.

Every error a user can trigger (a bad file, a bad value) derives from :class:`MoEEError`, so the
CLI and the studio can show its message verbatim instead of a traceback.
"""

from __future__ import annotations


class MoEEError(Exception):
    """Base class of every error caused by the user's input or environment."""


class InputImageError(MoEEError):
    """The portrait image cannot be used (unreadable, empty, too small, ...)."""


class NoFaceError(InputImageError):
    """No face (or more than one face) was found in the portrait."""


class InputAudioError(MoEEError):
    """The audio track cannot be used (unreadable, empty, silent, too short, ...)."""


class MissingDependencyError(MoEEError):
    """A package that a feature needs is not installed (the message names it and the way around)."""


class EmotionSpecError(MoEEError):
    """An emotion name, weight or mask is invalid (unknown name, NaN, outside 0..1, ...)."""


class CheckpointError(MoEEError):
    """A model folder or expert pack is missing, of another version, or does not match the model."""


class OutputError(MoEEError):
    """An output file cannot be written (read-only folder, full disk, ...)."""


class DeviceError(MoEEError):
    """The requested device (``--device cuda``, ``mps``, ...) is not available on this machine."""


class CancelledError(MoEEError):
    """A render was cancelled through its cancel token."""
