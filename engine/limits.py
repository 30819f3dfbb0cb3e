"""The limits of a render that every renderer, writer and driver shares (one place, so they agree)."""

from __future__ import annotations

#: Highest frame rate a model, a render or a writer accepts (frames per second); higher is a typo.
MAX_FPS = 120
#: Default cap of the long side of a full-resolution render (``moee render --max-size``).
DEFAULT_MAX_SIZE = 1024
