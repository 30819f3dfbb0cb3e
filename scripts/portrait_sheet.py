"""The README's sheet of a portrait: portrait, neutral and the six emotions at 1.0 (silent, still head).

    python scripts/portrait_sheet.py [PORTRAIT] --face-sheet docs/images/portrait_astronaut_face.png \
        --frames-sheet docs/images/portrait_astronaut.jpg

Without PORTRAIT it uses scikit-image's astronaut (public domain; the shared portraits may not be shipped).
The face sheet crops the face at 1:1; the frames sheet shows the whole frames at --max-size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator
from engine.portrait.performance import STILL_LIFE


def render_row(portrait: object, max_size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(portrait, neutral, six emotions) frames and the face box (x0, y0, x1, y1) of the portrait."""
    animator = PortraitAnimator.from_pretrained()
    prepared = animator.prepare(portrait, max_size=max_size, life=STILL_LIFE)
    frames = [prepared.portrait]
    for index in range(-1, len(animator.emotions)):
        weights = np.zeros(len(animator.emotions), np.float32)
        if index >= 0:
            weights[index] = 1.0
        frames.append(animator.render_frame(prepared, 0, GateControl(weights)))
    mesh = prepared.rig.mesh
    pad = 0.12 * float(np.ptp(mesh[:, 0]))
    h, w = prepared.portrait.shape[:2]
    box = np.array([max(0, mesh[:, 0].min() - pad), max(0, mesh[:, 1].min() - 2 * pad),
                    min(w, mesh[:, 0].max() + pad), min(h, mesh[:, 1].max() + pad)]).round().astype(int)
    return frames, box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("portrait", nargs="?", default=None, help="portrait image (default: the astronaut)")
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--face-sheet", default=None, help="PNG: the faces at 1:1, side by side")
    parser.add_argument("--frames-sheet", default=None, help="JPG/PNG: the whole frames, side by side")
    args = parser.parse_args()
    if args.portrait is None:
        from skimage.data import astronaut

        portrait: object = astronaut()
    else:
        portrait = args.portrait
    frames, (x0, y0, x1, y1) = render_row(portrait, args.max_size)
    if args.face_sheet:
        Image.fromarray(np.concatenate([f[y0:y1, x0:x1] for f in frames], axis=1)).save(args.face_sheet)
        print(f"wrote {args.face_sheet}")
    if args.frames_sheet:
        path = Path(args.frames_sheet)
        Image.fromarray(np.concatenate(frames, axis=1)).save(path, quality=88)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
