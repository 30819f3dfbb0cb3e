"""Fetch the FER2013 expression reader's weights for evaluation (``training/fer_reader.py``); never shipped.

    python scripts/fetch_fer_reader.py            # into <venv>/share/moee/fer2013.safetensors
    python scripts/fetch_fer_reader.py --out F    # elsewhere (then set MOEE_FER_WEIGHTS=F)
    python scripts/fetch_fer_reader.py --source facial_emotion_recognition-0.3.4.tar.gz   # offline

``pip download --no-deps --no-binary :all: facial-emotion-recognition==0.3.4`` fetches the package's sdist
(MIT licence) into a temporary folder; its ``facial_emotion_recognition/model/model.pkl`` is checked
against :data:`MODEL_SHA256`, read with ``torch.load(..., weights_only=True)`` (a plain dict: the network's
state dict, the optimizer's, epochs and accuracy) and the network's state dict alone is written as
safetensors, atomically. The package itself is never installed (its dependencies, facenet-pytorch and
opencv-python, would clash with this project's). ``make install`` runs this; an existing file with the
right content is left alone (``--force`` rewrites it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.io.atomic import atomic_path
from training.fer_reader import FER_LABELS, FerNet, weights_path

PACKAGE = "facial-emotion-recognition"
VERSION = "0.3.4"
#: The state dict inside the sdist.
MEMBER = "facial_emotion_recognition/model/model.pkl"
#: SHA-256 of that model.pkl (33,017,347 bytes; the 0.3.4 sdist on PyPI).
MODEL_SHA256 = "d2789940007ee6175130fefd3ed9a523a1afa4475fbdafbf64f2948db6c29537"


def download_sdist(folder: Path) -> Path:
    """The package's sdist, downloaded by pip into ``folder``."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"{PACKAGE}=={VERSION}", "--dest", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pip could not download {PACKAGE}=={VERSION} (is PyPI reachable?):\n{done.stderr.strip()}")
    found = sorted(folder.glob("*.tar.gz"))
    if not found:
        raise SystemExit(f"pip downloaded no sdist of {PACKAGE}=={VERSION} into {folder}")
    return found[0]


def model_bytes(source: Path) -> bytes:
    """The bytes of model.pkl from an sdist (``.tar.gz``) or a model.pkl itself, checked against the pin."""
    if source.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(source, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(MEMBER)]
            if not members:
                raise SystemExit(f"{source} has no {MEMBER}")
            data = archive.extractfile(members[0]).read()
    else:
        data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        raise SystemExit(f"{source}: model.pkl has SHA-256 {digest}, expected {MODEL_SHA256}; not converted")
    return data


def network_state(data: bytes) -> dict[str, torch.Tensor]:
    """The network's state dict out of model.pkl, unpickled with ``weights_only=True``, checked on FerNet."""
    checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    state = {key: value.contiguous() for key, value in checkpoint["network"].items()}
    FerNet().load_state_dict(state, strict=True)  # raises if the layers differ from our copy
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"where to write (default {weights_path()})")
    parser.add_argument("--source", type=Path, default=None,
                        help="the sdist (.tar.gz) or its model.pkl, instead of downloading it")
    parser.add_argument("--force", action="store_true", help="rewrite the file even if it is current")
    args = parser.parse_args(argv)
    out = args.out or weights_path()
    if out.is_file() and not args.force:
        try:
            FerNet().load_state_dict(load_file(str(out)), strict=True)
            print(f"FER2013 reader weights already at {out}")
            return 0
        except (SafetensorError, OSError, RuntimeError, ValueError):
            pass  # a damaged or different file is fetched again
    with tempfile.TemporaryDirectory(prefix="moee-fer-") as tmp:
        source = args.source or download_sdist(Path(tmp))
        state = network_state(model_bytes(source))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"cannot make the folder {out.parent}: {exc.strerror}") from exc
    metadata = {"source": f"{PACKAGE}=={VERSION} sdist, {MEMBER}", "model_sha256": MODEL_SHA256,
                "labels": ",".join(FER_LABELS), "licence": "MIT"}
    with atomic_path(out) as tmp_path:
        save_file(state, str(tmp_path), metadata=metadata)
    print(f"FER2013 reader weights written to {out}")
    return 0


if __name__ == "__main__":
    from engine.errors import MoEEError

    try:
        sys.exit(main())
    except MoEEError as exc:  # e.g. an unwritable --out
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
