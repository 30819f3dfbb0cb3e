"""What every ``moee bench`` measurement shares: peak memory, latency summaries, slider moves, test speech.

The pixel renderer's benchmark (engine/diffusion/bench.py), the portrait renderer's (engine/portrait/bench.py) and the
batch benchmark (engine/batch_bench.py) use these, so neither renderer's benchmark reaches into the other's.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil

from engine.errors import MoEEError

#: How often the memory sampler reads the process's resident size (seconds).
RSS_SAMPLE_SECONDS = 0.01
#: The test speech's sample rate (Hz).
SPEECH_RATE = 16_000
#: The test speech's syllable rate (voiced bursts per second) and voice pitch (Hz), and its amplitude.
SYLLABLES_PER_SECOND = 4.0
SPEECH_PITCH_HZ = 160.0
SPEECH_AMPLITUDE = 0.3


@contextmanager
def peak_rss() -> Iterator[dict]:
    """Sample the process's resident memory in a thread; ``result["peak_mb"]`` after the block."""
    process = psutil.Process(os.getpid())
    result = {"peak_mb": process.memory_info().rss / 2**20}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak_mb"] = max(result["peak_mb"], process.memory_info().rss / 2**20)
            time.sleep(RSS_SAMPLE_SECONDS)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def check_counts(**counts: int) -> None:
    """Refuse (:class:`MoEEError` naming the setting) a count below 1: a median of nothing is no figure."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MoEEError(f"{name} must be a whole number of at least 1, not {value!r}")


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max of durations in seconds, as milliseconds rounded to 0.01."""
    ms = sorted(s * 1000 for s in samples)
    return {"median": round(statistics.median(ms), 2), "min": round(ms[0], 2), "max": round(ms[-1], 2)}


def slider_sequence(n: int, emotions: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Slider moves a user would make: two or three emotions on, new values every time."""
    mixes = []
    for _ in range(n):
        weights = np.zeros(emotions, np.float32)
        on = rng.choice(emotions, size=int(rng.integers(1, 3)) + 1, replace=False)
        weights[on] = rng.uniform(0.2, 1.0, size=len(on))
        mixes.append(weights)
    return mixes


def speech_signal(seconds: float, rate: int = SPEECH_RATE) -> tuple[np.ndarray, int]:
    """A syllable-like test signal (voiced bursts at about 4 Hz), deterministic: ``(samples, rate)``."""
    t = np.arange(int(seconds * rate)) / rate
    bursts = np.clip(np.sin(2 * np.pi * SYLLABLES_PER_SECOND * t), 0, None) ** 2
    return (SPEECH_AMPLITUDE * bursts * np.sin(2 * np.pi * SPEECH_PITCH_HZ * t)).astype(np.float32), rate
