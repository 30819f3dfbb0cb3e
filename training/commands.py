"""The ``moee`` subcommands that live in training/: synth, train, eval, calibrate, calibrate-portrait,
train-motion, eval-portraits.

Each is a :class:`TrainingCommand` named by an entry point of the group ``moee.commands`` in
pyproject.toml (``[project.entry-points."moee.commands"]``); :mod:`engine.cli` finds them there, so the
engine never names this package. A command's arguments and its runner stay beside the code they drive
(``add_X_arguments`` / ``run_X`` in its module, shared with ``python -m training.MODULE``), named here in full
so that a search for a runner finds its command; the module is imported when ``moee`` builds its parser, and a
module that cannot be imported leaves its subcommand listed, saying why it is unavailable.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingCommand:
    """One subcommand (the :class:`engine.cli.Command` protocol): its ``moee --help`` line, the module that
    holds it and the names of its two functions there, ``adder(parser)`` and ``runner(args) -> int``."""

    help: str
    module: str
    adder: str
    runner: str

    def _function(self, name: str) -> Callable[..., Any]:
        """``name`` of the command's module (imports it; ImportError if it cannot be)."""
        return getattr(importlib.import_module(self.module), name)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments (imports its module; ImportError if it cannot be)."""
        self._function(self.adder)(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Run the subcommand; its exit code."""
        return self._function(self.runner)(args)


SYNTH = TrainingCommand("render a synthetic talking-face data set", "training.synthetic",
                        "add_synth_arguments", "run_synth")
TRAIN = TrainingCommand("train a stage or a custom expert", "training.trainer",
                        "add_train_arguments", "run_train")
EVAL = TrainingCommand("evaluate a model on held-out identities", "training.evaluate",
                       "add_eval_arguments", "run_eval")
CALIBRATE = TrainingCommand("fit a model's slider calibration on training people", "training.calibrate",
                            "add_calibrate_arguments", "run_calibrate")
CALIBRATE_PORTRAIT = TrainingCommand("fit the portrait path's slider calibration (equal sliders, equal strength)",
                                     "training.portrait_calibrate",
                                     "add_calibrate_portrait_arguments", "run_calibrate_portrait")
TRAIN_MOTION = TrainingCommand("train the motion model (full-resolution path) on synthetic landmarks",
                               "training.motion_trainer", "add_train_motion_arguments", "run_train_motion")
EVAL_PORTRAITS = TrainingCommand("measure the full-resolution path on a folder of real portraits (JSON, sheet)",
                                 "training.portrait_eval", "add_eval_portraits_arguments", "run_eval_portraits")

#: Every subcommand by its ``moee`` name: what pyproject.toml's ``moee.commands`` entry points must name
#: (tests/engine/test_cli.py checks that they do).
COMMANDS: dict[str, TrainingCommand] = {
    "synth": SYNTH,
    "train": TRAIN,
    "eval": EVAL,
    "calibrate": CALIBRATE,
    "calibrate-portrait": CALIBRATE_PORTRAIT,
    "train-motion": TRAIN_MOTION,
    "eval-portraits": EVAL_PORTRAITS,
}
