"""The version lock (constraints.txt) agrees with what pyproject.toml declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return [Requirement(line) for line in lines]


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_declared_dependency_is_locked_within_its_declared_range() -> None:
    locked = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        # torch: pinned by the Makefile's TORCH_SPEC (CPU wheel here, CUDA elsewhere); setuptools: a
        # packaging tool, left to the venv (scripts/lock_constraints.py NOT_LOCKED).
        if name in ("torch", "setuptools"):
            assert name not in locked
            continue
        assert name in locked, f"{requirement.name} is declared but not in constraints.txt: re-run " \
                               "scripts/lock_constraints.py"
        assert requirement.specifier.contains(locked[name], prereleases=True), \
            f"constraints.txt pins {requirement.name}=={locked[name]}, outside the declared {requirement}"
