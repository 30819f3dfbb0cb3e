"""A scripted (screenshot) run of the studio given a project it cannot open: exit 2, a message naming the
problem, no screenshot written and the project file untouched (issue 30's bad-input suite, studio side)."""

from __future__ import annotations

import hashlib
import json

import pytest

from studio import app, project_io
from studio.document import DocumentState


def test_a_bad_project_in_a_scripted_run_exits_2_and_changes_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "take.moee"
    project_io.save_project(DocumentState(), path)
    data = json.loads(path.read_text())
    data["render"]["fps"] = "fast"
    path.write_text(json.dumps(data))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    shot = tmp_path / "shot.png"
    assert app.main([str(path), "--screenshot", str(shot)]) == app.EXIT_USER_ERROR
    assert "render.fps" in capsys.readouterr().err
    assert not shot.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_missing_project_in_a_scripted_run_exits_2(tmp_path, capsys) -> None:
    shot = tmp_path / "shot.png"
    assert app.main([str(tmp_path / "nowhere.moee"), "--screenshot", str(shot)]) == app.EXIT_USER_ERROR
    assert "nowhere.moee" in capsys.readouterr().err and not shot.exists()


def test_device_for_the_portrait_renderer_is_refused_by_name(capsys) -> None:
    """``--device cuda`` cannot reach the portrait renderer (it runs on the CPU): refused, never ignored."""
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(["--device", "cuda"])
    assert exit_info.value.code == app.EXIT_USER_ERROR
    assert "--device cuda needs --renderer pixel" in capsys.readouterr().err
    assert app.parse_args(["--renderer", "pixel", "--device", "cuda"]).device == "cuda"
    assert app.parse_args(["--model", "tiny", "--device", "cuda"]).device == "cuda"
    assert app.parse_args(["--device", "cpu"]).device == "cpu"
    assert app.parse_args([]).device == app.DEFAULT_DEVICE
