"""Fixtures of the portrait renderer's tests: the default animator (the bundled model, as a user gets it) and
the astronaut prepared once with a still performance (no blinks, head motion or gaze)."""

from __future__ import annotations

import pytest

from engine.portrait.animator import PortraitAnimator
from engine.portrait.performance import STILL_LIFE


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    return PortraitAnimator.from_pretrained()


@pytest.fixture(scope="module")
def still(animator):
    from skimage.data import astronaut

    return animator.prepare(astronaut(), max_size=512, life=STILL_LIFE)
