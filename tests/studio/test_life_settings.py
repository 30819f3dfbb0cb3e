"""The Performance settings (blinks, head motion, gaze) in the project file: kept, and bad values refused."""

from __future__ import annotations

import json

import pytest

from studio import project_io
from studio.document import DocumentState, RenderSettings


def test_life_settings_survive_save_and_open(tmp_path) -> None:
    state = DocumentState(render=RenderSettings(blinks_per_minute=12.0, head_motion=0.0, gaze=2.5))
    path = tmp_path / "take.moee"
    project_io.save_project(state, path)
    loaded = project_io.load_project(path).render
    assert (loaded.blinks_per_minute, loaded.head_motion, loaded.gaze) == (12.0, 0.0, 2.5)


def test_an_older_project_gets_the_natural_defaults(tmp_path) -> None:
    path = tmp_path / "old.moee"
    project_io.save_project(DocumentState(), path)
    data = json.loads(path.read_text())
    for name in ("blinks_per_minute", "head_motion", "gaze"):
        data["render"].pop(name, None)
    path.write_text(json.dumps(data))
    loaded = project_io.load_project(path).render
    assert (loaded.blinks_per_minute, loaded.head_motion, loaded.gaze) == (20.0, 1.0, 1.0)


@pytest.mark.parametrize(("field", "value"), [("blinks_per_minute", 500), ("head_motion", -1), ("gaze", "lots"),
                                              ("head_motion", float("nan"))])
def test_bad_life_settings_are_refused_naming_the_field(tmp_path, field, value) -> None:
    path = tmp_path / "bad.moee"
    project_io.save_project(DocumentState(), path)
    data = json.loads(path.read_text())
    data["render"][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(project_io.ProjectError, match=f"render.{field}"):
        project_io.load_project(path)
