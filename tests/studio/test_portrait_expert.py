"""A custom emotion in the studio's default (portrait) path: the pack loads as a slider that moves the face."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.studio.conftest import dispose


@pytest.fixture
def smug_window(qtbot, astronaut_path, tmp_path: Path):
    """A window on a fresh bundled PortraitAnimator (the session's is not changed) with the astronaut, and a
    smug pack (AU12L + AU14L) trained in a few seconds."""
    from studio import engine_api
    from studio.main_window import MainWindow
    from training.motion_expert import ExpertTrainingConfig, train_motion_expert

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "recipe.json").write_text(json.dumps({"aus": {"12L": 1.0, "14L": 0.8}}))
    pack = train_motion_expert(tmp_path / "data", "smug", tmp_path / "out", log=lambda _m: None,
                               cfg=ExpertTrainingConfig(steps=80, samples=600, identities=20))
    win = MainWindow(animator=engine_api.load_portrait_animator(None), show_dialogs=False, autosave=False)
    win.doc.render.refine_delay_ms = 60_000
    win.flipbook.enabled = False
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.previewSettled, timeout=60_000):
        assert win.open_portrait(astronaut_path)
    yield win, str(pack)
    dispose(win)


def test_the_pack_becomes_a_slider_that_moves_the_face(qtbot, smug_window) -> None:
    win, pack = smug_window
    win.life_panel.spins["head_motion"].setValue(0.0)
    with qtbot.waitSignal(win.service.expertLoaded, timeout=30_000):
        win.load_expert_pack(pack)
    assert win.doc.emotions[-1] == "smug" and pack in win.doc.state.expert_packs
    shown: list = []
    win.previewShown.connect(shown.append)

    def render(change) -> np.ndarray:
        shown.clear()
        change()
        qtbot.waitUntil(lambda: bool(shown) and shown[-1].request_id == win.service.latest_request_id,
                        timeout=30_000)
        return shown[-1].image

    neutral = render(lambda: win.palette.rows[0].slider.setValue(1))
    neutral = render(lambda: win.palette.rows[0].slider.setValue(0))
    smug = render(lambda: win.palette.rows[len(win.doc.emotions) - 1].slider.setValue(1000))
    assert list(win.last_result.gates.global_weights)[-1] == pytest.approx(1.0)
    diff = np.abs(smug.astype(np.int16) - neutral.astype(np.int16)).max(axis=2)
    assert np.count_nonzero(diff > 8) > 100
