"""The errors of training/ a user can cause (each an :class:`engine.errors.MoEEError`, so ``moee`` exits 2).

Defined here, below every module that raises them, so that the data readers, the AU recipes and the
trainers can share them without importing one another.
"""

from __future__ import annotations

from engine.errors import MoEEError


class DatasetError(MoEEError):
    """A dataset folder cannot be read (unknown layout, bad labels.csv, ...)."""


class TrainingError(MoEEError):
    """A training run cannot start or continue (bad data, bad checkpoint, wrong stage/config)."""
