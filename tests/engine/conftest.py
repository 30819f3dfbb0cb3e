"""Fixtures shared by the engine's tests of the one animator contract: both renderers and a prepared astronaut."""

from __future__ import annotations

import pytest
from skimage import data

from engine.animator import load_animator


@pytest.fixture(scope="module")
def portrait():
    return load_animator(None, "portrait")


@pytest.fixture(scope="module")
def pixel():
    from engine.diffusion.pipeline import Animator as PixelAnimator
    from tests.engine_helpers import tiny_model

    return PixelAnimator(tiny_model(), device="cpu")


@pytest.fixture(scope="module")
def still(portrait):
    return portrait.prepare(data.astronaut(), max_size=384)
