"""load_image(): every kind of input becomes RGB uint8, or an InputImageError naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputImageError
from engine.io import image as image_module
from engine.io.image import MAX_SIDE, MIN_SIDE, center_crop_square, load_image, resize


def _check_rgb(image: np.ndarray, height: int, width: int) -> None:
    assert image.dtype == np.uint8
    assert image.shape == (height, width, 3)


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    _check_rgb(out, 40, 50)
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), pixels)


def test_grayscale_file_and_array(tmp_path: Path) -> None:
    gray = np.tile(np.arange(64, dtype=np.uint8)[None, :] * 4, (48, 1))
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    _check_rgb(out, 48, 64)
    np.testing.assert_array_equal(out[:, :, 0], gray)
    np.testing.assert_array_equal(out[:, :, 2], gray)
    np.testing.assert_array_equal(load_image(gray), out)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # opaque red
    rgba[:, 20:] = (255, 0, 0, 0)  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 39], [255, 255, 255])
    half = rgba.copy()
    half[..., 3] = 128
    assert abs(int(load_image(half)[0, 0, 1]) - 127) <= 1  # 50 % red over white


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.paste(1, (0, 0, 20, 40))
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 0], [10, 200, 30])
    np.testing.assert_array_equal(out[0, 39], [255, 255, 255])


def test_16_bit_png(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 65535, 64)[None, :].repeat(40, axis=0)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    out = load_image(tmp_path / "deep.png")
    _check_rgb(out, 40, 64)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert abs(int(out[0, 32, 0]) - round(ramp[0, 32] / 257)) <= 1


def test_float_and_uint16_arrays() -> None:
    unit = np.full((40, 40, 3), 0.5, dtype=np.float32)
    assert load_image(unit)[0, 0, 0] in (127, 128)
    scaled = np.full((40, 40, 3), 200.0, dtype=np.float64)
    assert load_image(scaled)[0, 0, 0] == 200
    deep = np.full((40, 40, 3), 65535, dtype=np.uint16)
    assert load_image(deep)[0, 0, 0] == 255
    with pytest.raises(InputImageError, match="NaN"):
        load_image(np.full((40, 40, 3), np.nan, dtype=np.float32))
    with pytest.raises(InputImageError, match="shape"):
        load_image(np.zeros((3, 40, 40, 2), dtype=np.uint8))


def test_pil_image_input() -> None:
    img = Image.new("LA", (40, 36), (0, 255))
    _check_rgb(load_image(img), 36, 40)


def test_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # white stripe on the left
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "r.jpg")
    _check_rgb(out, 60, 40)
    assert out[:10].mean() > 200  # the left stripe is now at the top
    assert out[-10:].mean() < 50


def test_tiny_image_refused(tmp_path: Path) -> None:
    Image.new("RGB", (MIN_SIDE - 1, 100)).save(tmp_path / "tiny.png")
    with pytest.raises(InputImageError, match=f"at least {MIN_SIDE}") as info:
        load_image(tmp_path / "tiny.png")
    assert "tiny.png" in str(info.value)


def test_corrupt_and_garbage_files(tmp_path: Path) -> None:
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputImageError, match="garbage.png"):
        load_image(tmp_path / "garbage.png")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")


def test_missing_file_and_bad_type(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="not found.*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(InputImageError):
        load_image(42)  # type: ignore[arg-type]


def test_huge_image_downscaled(tmp_path: Path) -> None:
    Image.new("RGB", (MAX_SIDE + 904, 100), (10, 20, 30)).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png")
    assert max(out.shape[:2]) == MAX_SIDE
    assert out.shape[0] == round(100 * MAX_SIDE / (MAX_SIDE + 904))
    np.testing.assert_array_equal(out[5, 5], [10, 20, 30])


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_module, "MAX_INPUT_PIXELS", 100 * 100)
    Image.new("RGB", (200, 200)).save(tmp_path / "bomb.png")
    with pytest.raises(InputImageError, match="too large"):
        load_image(tmp_path / "bomb.png")


def test_crop_and_resize() -> None:
    img = np.zeros((40, 60, 3), dtype=np.uint8)
    img[:, 10:50] = 200
    square = center_crop_square(img)
    assert square.shape == (40, 40, 3) and square.min() == 200
    small = resize(np.full((64, 64, 3), 100, np.uint8), 32)
    assert small.shape == (32, 32, 3) and small.min() == 100
    assert resize(img, (30, 20)).shape == (20, 30, 3)
    assert resize(img, (120, 80)).shape == (80, 120, 3)
    # Area interpolation: a 1-pixel checkerboard averages to grey instead of aliasing.
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert abs(int(resize(checker, 16).mean()) - 127) <= 1
    assert np.ptp(resize(checker, 16)) <= 1
