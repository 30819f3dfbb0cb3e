"""The pixel renderer's frames pasted back into the full-resolution portrait (engine.io.face.paste_back)."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from engine.diffusion.config import tiny_config
from engine.diffusion.pipeline import Animator, centre_square_matrix, paste_target
from engine.io.face import CropTransform, paste_back, paste_mask
from tests.engine_helpers import tiny_model

#: The largest step between neighbouring pixels across the seam, in grey levels (a hard edge would be 190).
SEAM_STEP_LIMIT = 60


def _portrait(height: int = 120, width: int = 200) -> np.ndarray:
    """A smooth synthetic portrait (gradients, no sharp edges of its own)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 120 + 60], -1)
    return image.round().astype(np.uint8)


def _outside(weight_shape: tuple[int, int], matrix: np.ndarray, crop_side: int) -> np.ndarray:
    """Portrait pixels outside the crop's inscribed disc (their crop position is beyond its rim)."""
    yy, xx = np.mgrid[:weight_shape[0], :weight_shape[1]].astype(np.float64)
    cx = matrix[0, 0] * xx + matrix[0, 1] * yy + matrix[0, 2]
    cy = matrix[1, 0] * xx + matrix[1, 1] * yy + matrix[1, 2]
    centre = (crop_side - 1) / 2
    return np.hypot(cx - centre, cy - centre) > crop_side / 2 + 1


def test_paste_back_keeps_the_portrait_outside_and_feathers_the_seam() -> None:
    portrait = np.full((90, 160, 3), 60, np.uint8)
    frame = np.full((64, 64, 3), 250, np.uint8)
    matrix = centre_square_matrix(portrait.shape, 64)
    out = paste_back(portrait, frame, matrix)
    assert out.shape == portrait.shape and out.dtype == np.uint8
    outside = _outside(portrait.shape[:2], matrix, 64)
    assert outside.any() and np.array_equal(out[outside], portrait[outside])
    assert np.all(out[45, 80] == 250)  # the crop's centre is the frame's
    # The seam: 60 -> 250 spread over the feather (about 6% of the 90 px crop side), no hard edge.
    steps = np.abs(np.diff(out.astype(int), axis=1)).max()
    assert steps <= SEAM_STEP_LIMIT, steps
    assert np.abs(np.diff(out.astype(int), axis=0)).max() <= SEAM_STEP_LIMIT


def test_paste_mask_is_a_soft_disc() -> None:
    mask = paste_mask(64)
    assert mask[32, 32] == 1.0 and mask[0, 0] == 0.0 and mask[32, 0] < 0.1
    ramp = mask[32, :32]
    assert np.all(np.diff(ramp) >= 0) and 0 < ramp[1] < ramp[2] < 1  # rises over the feather (~4 px at 6%)


def test_paste_back_inverts_a_face_crop() -> None:
    image = data.astronaut()
    theta, scale = np.radians(10.0), 64 / 160
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]) * scale
    matrix = np.hstack([rot, (32 - rot @ np.array([230.0, 150.0]))[:, None]])  # face centre -> crop centre
    transform = CropTransform(matrix=matrix, size=64, angle_deg=10.0, landmarks=np.zeros((0, 2), np.float32))
    crop = cv2.warpAffine(image, matrix, (64, 64), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    out = paste_back(image, crop, transform)  # the crop itself, pasted back: the portrait, up to resampling
    assert out.shape == image.shape
    outside = _outside(image.shape[:2], transform.matrix, 64)
    assert np.array_equal(out[outside], image[outside])
    assert np.abs(out.astype(int) - image.astype(int))[~outside].mean() < 12


def test_paste_target_caps_the_long_side() -> None:
    image = _portrait(300, 1200)
    matrix = centre_square_matrix(image.shape, 64)
    target, scaled = paste_target(image, matrix, 600)
    assert target.shape[:2] == (150, 600)
    # The crop's centre lands on the same spot, in each portrait's own pixels.
    centre = np.array([31.5, 31.5])
    inv_full = np.linalg.solve(matrix[:, :2], centre - matrix[:, 2])
    inv_small = np.linalg.solve(scaled[:, :2], centre - scaled[:, 2])
    assert np.allclose((inv_full + 0.5) / 2 - 0.5, inv_small, atol=1e-6)


def test_pixel_renderer_pastes_its_frames_back_into_the_portrait() -> None:
    animator = Animator(tiny_model(), device="cpu")
    animator.cfg.sampling.keep_background = False
    portrait = _portrait()
    crop_only = animator.prepare(portrait, crop="none", num_frames=2)
    pasted = animator.prepare(portrait, crop="none", num_frames=2, paste_back=True)
    small = animator.render_frame(crop_only, 0, steps=2)
    assert small.shape[:2] == (animator.cfg.image_size,) * 2
    frames = [r.image for r in animator.render_clip(pasted, steps=2)]
    frame = animator.render_frame(pasted, 0, steps=2)
    assert frame.shape == portrait.shape and all(f.shape == portrait.shape for f in frames)
    outside = _outside(portrait.shape[:2], pasted.paste_matrix, animator.cfg.image_size)
    assert np.array_equal(frame[outside], portrait[outside])
    centre = (slice(45, 75), slice(85, 115))
    assert np.abs(frame[centre].astype(int) - portrait[centre].astype(int)).mean() > 5


def test_pixel_renderer_paste_back_respects_the_size_cap() -> None:
    animator = Animator(tiny_model(), device="cpu")
    animator.cfg.sampling.keep_background = False
    prepared = animator.prepare(_portrait(120, 200), crop="none", num_frames=1, paste_back=True, paste_max_size=100)
    assert animator.render_frame(prepared, 0, steps=1).shape == (60, 100, 3)


def test_cli_pixel_render_is_the_portraits_size_unless_paste_back_no(tmp_path) -> None:
    from PIL import Image

    from engine.cli import main
    from engine.diffusion.checkpoint import save_model

    model = save_model(tiny_model(), tmp_path / "tiny")
    portrait = _portrait()
    Image.fromarray(portrait).save(tmp_path / "face.png")

    def first_frame(*extra: str) -> np.ndarray:
        folder = tmp_path / f"frames{len(extra)}"
        code = main(["render", str(tmp_path / "face.png"), "--duration", "0.08", "-o", str(folder) + ".mp4",
                     "--model", str(model), "--renderer", "pixel", "--crop", "none", "--keep-background", "no",
                     "--steps", "1", "--frames-dir", str(folder), *extra])
        assert code == 0
        return np.asarray(Image.open(sorted(folder.glob("*.png"))[0]).convert("RGB"))

    pasted = first_frame()
    assert pasted.shape == portrait.shape
    assert np.array_equal(pasted[:, :10], portrait[:, :10])  # the side strips are the portrait's own
    side = tiny_config().image_size
    assert first_frame("--paste-back", "no").shape == (side, side, 3)
