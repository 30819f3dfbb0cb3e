"""An AU recipe: a new emotion given as action units of the synthetic renderer instead of footage.

``recipe.json`` in a data folder (or any JSON file): ``{"aus": {"12L": 1.0, "14L": 0.8}}``, intensities in
(0, 1] at slider 1, ``L`` / ``R`` for the person's left or right side only. :mod:`training.motion_expert` trains
a custom motion expert from it; :func:`training.datasets.check_custom_emotion_data` accepts a folder holding one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from training.errors import DatasetError

#: Name of an AU recipe inside a data folder.
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class Recipe:
    """An expression as action units at slider 1: ``both`` sides, and the person's ``left`` / ``right`` only."""

    both: dict[int, float] = field(default_factory=dict)
    left: dict[int, float] = field(default_factory=dict)
    right: dict[int, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, aus: object, source: str) -> Recipe:
        """From ``{"12L": 1.0, "14": 0.5, ...}``; :class:`DatasetError` naming ``source`` when it is not one."""
        from training.synthetic import AU_LIST
        from training.synthetic.renderer import GEOMETRY_ONLY_AUS

        known = (*AU_LIST, *GEOMETRY_ONLY_AUS)
        if not isinstance(aus, dict) or not aus:
            raise DatasetError(f"{source}: 'aus' must be an object such as {{\"12L\": 1.0, \"14L\": 0.7}}")
        parts: dict[str, dict[int, float]] = {"": {}, "L": {}, "R": {}}
        for key, value in aus.items():
            text = str(key).strip().upper().removeprefix("AU")
            side = text[-1] if text[-1:] in ("L", "R") else ""
            number = text[: len(text) - len(side)]
            if not number.isdigit() or int(number) not in known:
                raise DatasetError(f"{source}: unknown action unit {key!r}; known: "
                                   f"{', '.join(map(str, sorted(known)))} (suffix L or R for one side)")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) <= 1:
                raise DatasetError(f"{source}: the intensity of {key} must be a number in (0, 1], not {value!r}")
            parts[side][int(number)] = float(value)
        return cls(parts[""], parts["L"], parts["R"])

    def describe(self) -> str:
        items = [f"AU{k}{s}={v:g}" for s, part in (("", self.both), ("L", self.left), ("R", self.right))
                 for k, v in sorted(part.items())]
        return " + ".join(items)


def read_recipe(path: str | Path) -> Recipe | None:
    """The recipe of a data folder (``recipe.json``) or of a JSON file; None when there is none."""
    path = Path(path)
    file = path if path.suffix.lower() == ".json" else path / RECIPE_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{file}: not a readable JSON recipe ({exc})") from exc
    return Recipe.parse(data.get("aus") if isinstance(data, dict) else None, str(file))
