"""The ``moee`` subcommands that live in training/: synth, train, eval, calibrate, calibrate-portrait,
train-motion, eval-portraits.

Each is a :class:`TrainingCommand` named by an entry point of the group ``moee.commands`` in
pyproject.toml (``[project.entry-points."moee.commands"]``); :mod:`engine.cli` finds them there, so the
engine never names this package. A command's arguments and its runner stay beside the code they drive
(``add_X_arguments`` / ``run_X`` in its module, shared with ``python -m training.MODULE``); the module is
imported when ``moee`` builds its parser, and a module that cannot be imported leaves its subcommand
listed, saying why it is unavailable.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingCommand:
    """One subcommand: its ``moee --help`` line and the module holding ``add_<stem>_arguments`` and
    ``run_<stem>`` (the :class:`engine.cli.Command` protocol)."""

    help: str
    module: str
    stem: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments (imports its module; ImportError if it cannot be)."""
        getattr(importlib.import_module(self.module), f"add_{self.stem}_arguments")(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Run the subcommand; its exit code."""
        return getattr(importlib.import_module(self.module), f"run_{self.stem}")(args)


SYNTH = TrainingCommand("render a synthetic talking-face data set", "training.synthetic", "synth")
TRAIN = TrainingCommand("train a stage or a custom expert", "training.trainer", "train")
EVAL = TrainingCommand("evaluate a model on held-out identities", "training.evaluate", "eval")
CALIBRATE = TrainingCommand("fit a model's slider calibration on training people", "training.calibrate",
                            "calibrate")
CALIBRATE_PORTRAIT = TrainingCommand("fit the portrait path's slider calibration (equal sliders, equal strength)",
                                     "training.portrait_calibrate", "calibrate_portrait")
TRAIN_MOTION = TrainingCommand("train the motion model (full-resolution path) on synthetic landmarks",
                               "training.motion_trainer", "train_motion")
EVAL_PORTRAITS = TrainingCommand("measure the full-resolution path on a folder of real portraits (JSON, sheet)",
                                 "training.portrait_eval", "eval_portraits")

#: Every subcommand by its ``moee`` name: what pyproject.toml's ``moee.commands`` entry points must name
#: (tests/test_cli.py checks that they do).
COMMANDS: dict[str, TrainingCommand] = {
    "synth": SYNTH,
    "train": TRAIN,
    "eval": EVAL,
    "calibrate": CALIBRATE,
    "calibrate-portrait": CALIBRATE_PORTRAIT,
    "train-motion": TRAIN_MOTION,
    "eval-portraits": EVAL_PORTRAITS,
}
