"""Slider calibration of the portrait path: each emotion's slider value -> the gate the renderer is given.

The default renderer (:class:`engine.portrait.animator.PortraitAnimator`) does not move the face linearly
in the slider, nor alike across emotions: the motion model's displacement, the hand-set expression and region
gains, the FACS emphasis, the lids and the sitter's own expression taken out add up differently per emotion
(before calibration, happiness on the astronaut reaches 55 % of its full travel at slider 0.5, sadness 49 %).
A calibration curve per emotion fixes the *shape* of the response at no cost per frame:

    g_e = c_e(w_e),   c_e(w) = I_e^{-1}(w * I_e(1))

``I_e(g)`` is the *measured* intensity of emotion ``e`` at gate ``g`` (the mean displacement of the
rendered frame's 68 landmark control targets from the neutral frame's, in face units, averaged as a share
of ``I_e(1)`` over a few calibration portraits: :mod:`training.portrait_calibrate`). Gate 1 stays at slider 1:
each emotion's full strength is the perceptually tuned one (the expression gains, ``TransferConfig``), which
is where "equally strong across emotions" is judged; in between every emotion's travel is the same straight
line, slider 0.5 moving the face half as far as that emotion's slider 1. (``moee calibrate-portrait --target
weakest`` fits instead ``c_e(w) = I_e^{-1}(w * min_f I_f(1))``: equal travel across emotions, which cuts the
strong emotions' gates at slider 1.)

The curves are piecewise linear through knots, keep ``c(0) = 0`` and never decrease. They live beside the
motion model in the model folder (:data:`PORTRAIT_CALIBRATION_FILE`); emotions without a curve (custom
expert packs) pass through unchanged. ``TransferConfig.slider_calibration = False`` switches them off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import CheckpointError
from engine.io.atomic import atomic_write_text

#: The calibration's file in a model folder (beside motion.json).
PORTRAIT_CALIBRATION_FILE = "portrait_calibration.json"
#: Version of the file's layout.
PORTRAIT_CALIBRATION_VERSION = 1
#: Slider values at which the curves are given by default.
PORTRAIT_KNOTS: tuple[float, ...] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
#: Largest gate a curve may give (the motion model learned gates in 0..1).
MAX_GATE = 1.0


@dataclass(frozen=True)
class PortraitCalibration:
    """Per-emotion curves slider -> gate at shared :attr:`knots` (module docstring)."""

    knots: tuple[float, ...]
    curves: dict[str, tuple[float, ...]]
    #: How the curves were fitted (command, portraits, measured intensities before and after).
    notes: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What is wrong with the knots and curves (empty when they are usable)."""
        knots = np.asarray(self.knots, np.float64)
        found: list[str] = []
        if knots.ndim != 1 or len(knots) < 2 or not np.all(np.isfinite(knots)):
            return [f"knots must be at least two numbers, got {list(self.knots)}"]
        if knots[0] != 0.0 or knots[-1] != 1.0 or np.any(np.diff(knots) <= 0):
            found.append(f"knots must rise from 0 to 1, got {knots.tolist()}")
        for name, curve in self.curves.items():
            values = np.asarray(curve, np.float64)
            if values.shape != knots.shape:
                found.append(f"curve {name!r} needs {len(knots)} values (one per knot), got {len(values)}")
            elif not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > MAX_GATE:
                found.append(f"curve {name!r} must stay within 0..{MAX_GATE:g}, got {values.tolist()}")
            elif values[0] != 0.0:
                found.append(f"curve {name!r} must map slider 0 to gate 0, got {values[0]}")
            elif np.any(np.diff(values) < 0):
                found.append(f"curve {name!r} must not decrease, got {values.tolist()}")
        return found

    def gate(self, name: str, slider: float | np.ndarray) -> np.ndarray:
        """The gate(s) of emotion ``name`` at slider value(s); an emotion without a curve keeps its slider."""
        slider = np.asarray(slider, np.float64)
        curve = self.curves.get(name)
        return slider if curve is None else np.interp(slider, self.knots, curve)

    def apply(self, weights: np.ndarray, emotions: Sequence[str]) -> np.ndarray:
        """Gates for slider weights ``(..., E)`` of ``emotions`` (same dtype; custom emotions unchanged)."""
        weights = np.asarray(weights)
        out = weights.copy()
        for e, name in enumerate(emotions[: weights.shape[-1]]):
            if name in self.curves:
                out[..., e] = self.gate(name, weights[..., e])
        return out

    def to_json(self) -> dict:
        """The file's content."""
        return {"format_version": PORTRAIT_CALIBRATION_VERSION, "knots": list(self.knots),
                "curves": {name: [round(float(v), 5) for v in curve] for name, curve in self.curves.items()},
                "notes": self.notes}

    @classmethod
    def from_json(cls, data: Mapping, source: str = "portrait calibration") -> PortraitCalibration:
        """Read and check a calibration (CheckpointError naming ``source`` if it is not a valid one)."""
        try:
            version = data["format_version"]
            if version != PORTRAIT_CALIBRATION_VERSION:
                raise ValueError(f"format_version {version!r}, expected {PORTRAIT_CALIBRATION_VERSION}")
            knots = tuple(float(v) for v in data["knots"])
            curves = {str(name): tuple(float(v) for v in curve) for name, curve in dict(data["curves"]).items()}
            notes = dict(data.get("notes") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{source} is not a portrait slider calibration "
                                  f"(moee calibrate-portrait): {exc}") from exc
        calibration = cls(knots, curves, notes)
        problems = calibration.problems()
        if problems:
            raise CheckpointError(f"{source} is not a usable portrait slider calibration: {'; '.join(problems)}")
        return calibration

    @classmethod
    def load(cls, path: str | Path) -> PortraitCalibration:
        """Read a calibration file (CheckpointError naming the file if it is unreadable or invalid)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable portrait slider calibration: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is not a portrait slider calibration (expected a JSON object)")
        return cls.from_json(data, str(path))

    def save(self, path: str | Path) -> None:
        """Write the calibration as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")


def load_portrait_calibration(model_dir: str | Path) -> PortraitCalibration | None:
    """The calibration stored in a model folder, or None if it has none (a bad file raises CheckpointError)."""
    path = Path(model_dir) / PORTRAIT_CALIBRATION_FILE
    return PortraitCalibration.load(path) if path.exists() else None
