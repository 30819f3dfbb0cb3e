"""The wheel carries the bundled model, recognisers and demo inputs, and an installed copy finds them.

Builds the wheel from a copy of the sources (the checkout stays clean), installs it with
``pip install --no-deps --target`` and asks it, from a folder outside the checkout, where its
default model is: it must be the installed package data, not the repository's ``assets/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "training", "studio")
#: What the wheel must hold under moee_assets/ (the repository's assets/).
BUNDLED = ("models/demo/config.json", "models/demo/model.safetensors",
           "models/recognizer/recognizer.json", "models/recognizer/recognizer.safetensors",
           "models/recognizer_compound/recognizer.json", "models/recognizer_compound/recognizer.safetensors",
           "demo/portrait.png", "demo/photo.png", "demo/speech.wav")


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built without build isolation (offline) from a copy of the sources."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*PACKAGES, "assets"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), cwd=src)
    (built,) = (tmp / "dist").glob("moee_studio-*.whl")
    return built


def test_wheel_carries_the_bundled_data_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for relative in BUNDLED:
        source = ROOT / "assets" / relative
        assert f"moee_assets/{relative}" in names, f"{relative} is missing from the wheel"
        assert zipfile.ZipFile(wheel).getinfo(f"moee_assets/{relative}").file_size == source.stat().st_size
    jsons = {p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*.json")}
    assert {f"moee_assets/{j}" for j in jsons} <= names, "a json under assets/ is missing from the wheel"
    modules = {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert not any(name.startswith(("tests/", "assets/")) for name in names)


def test_installed_wheel_finds_its_own_default_model(wheel: Path, tmp_path: Path) -> None:
    target, outside = tmp_path / "site", tmp_path / "elsewhere"
    outside.mkdir()
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel), cwd=outside)
    probe = ("import json, engine, engine.diffusion.bench as b, engine.diffusion.pipeline as p, engine.io.resources as r;"
             "print(json.dumps({'engine': engine.__file__, 'model': str(r.default_model_dir()),"
             " 'pipeline': str(p.DEFAULT_MODEL_DIR), 'portrait': str(b.DEMO_PORTRAIT), 'audio': str(b.DEMO_AUDIO),"
             " 'recognizer': str(r.bundled_model('recognizer_compound'))}))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=outside, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    found = {key: Path(value) for key, value in json.loads(result.stdout.splitlines()[-1]).items()}
    for key, path in found.items():
        assert path.is_relative_to(target), f"{key} resolved outside the installed copy: {path}"
    assert found["model"] == found["pipeline"] == target / "moee_assets" / "models" / "demo"
    assert (found["model"] / "config.json").is_file() and (found["model"] / "model.safetensors").is_file()
    assert found["portrait"].is_file() and found["audio"].is_file()
    assert (found["recognizer"] / "recognizer.safetensors").is_file()
