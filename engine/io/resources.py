"""Where the bundled data lives: the default model, the recognisers and the demo inputs.

The repository keeps them in the top-level ``assets/`` folder; ``pyproject.toml`` installs that
folder as the package ``moee_assets``, so a wheel, ``pip install .``, pipx or an editable install
find it through :mod:`importlib.resources`. Code running from a source checkout (``PYTHONPATH`` or
editable) uses that checkout's ``assets/``. A model folder the user names stays a plain path; only
the defaults come from here.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path

#: The importable name of the ``assets/`` folder once installed.
ASSETS_PACKAGE = "moee_assets"
#: The repository root when this module runs from a source checkout.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # engine/io/resources.py -> the checkout


@cache
def assets_dir() -> Path:
    """The folder holding ``models/`` and ``demo/``: the checkout's ``assets/`` or the installed package.

    Raises ``RuntimeError`` when the package is installed somewhere that is not a plain folder (a
    zip), since model folders are opened by file name.
    """
    checkout = _SOURCE_ROOT / "assets"
    if (_SOURCE_ROOT / "pyproject.toml").is_file() and (checkout / "__init__.py").is_file():
        return checkout
    try:
        root = importlib.resources.files(ASSETS_PACKAGE)
    except ModuleNotFoundError:  # neither a checkout nor installed: lookups below name a missing path
        return checkout
    if not isinstance(root, Path):
        raise RuntimeError(f"the bundled data ({ASSETS_PACKAGE}) is not a folder on disk: {root!r}; "
                           "install MoEE Studio unzipped (pip install, pipx)")
    return root


def models_dir() -> Path:
    """The folder of bundled model folders."""
    return assets_dir() / "models"


def bundled_model(name: str) -> Path:
    """A bundled model folder by name: ``demo`` (the default model), ``recognizer``, ``recognizer_compound``."""
    return models_dir() / name


def default_model_dir() -> Path:
    """The bundled default model folder (``config.json`` + ``model.safetensors``)."""
    return bundled_model("demo")


#: The bundled default model folder, used when no model folder is given (the checkout's assets/ or the package data).
DEFAULT_MODEL_DIR = default_model_dir()


def demo_portrait() -> Path:
    """The bundled demo portrait image."""
    return assets_dir() / "demo" / "portrait.png"


def demo_audio() -> Path:
    """The bundled demo speech clip."""
    return assets_dir() / "demo" / "speech.wav"
