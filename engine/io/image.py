"""Portrait loading: any readable image becomes an RGB ``uint8`` ``H x W x 3`` array, or a clear error.

:func:`load_image` accepts a path, a numpy array or a PIL image and handles grayscale, palette and
alpha images (composited onto white), 16-bit and floating-point images (scaled to 0..255), EXIF
orientation, huge images (downscaled so the longest side is at most :data:`MAX_SIDE`, or the caller's
``max_side``; absurd sizes, above :data:`MAX_INPUT_PIXELS`, are refused before decoding) and tiny images
(refused below :data:`MIN_SIDE`). Every failure is an :class:`InputImageError` that names the file.

Memory stays bounded for any accepted file: a JPEG larger than :data:`MAX_SIDE` is decoded at 1/2, 1/4 or
1/8 scale (``draft``); another format is decoded once at full size (4 bytes a pixel at most, so at most
600 MB at the pixel limit), then converted to RGB band by band and shrunk by a whole factor (``reduce``)
before anything else is made of it; alpha compositing works on bands of rows as well. A 12000 x 12000
RGBA PNG rendered at 1024 px peaks at 1.17 GB resident, 0.61 GB of which the render of a small portrait
holds too (it was 9.2 GB when the image was converted at full size).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from engine.errors import InputImageError

#: Smallest accepted side of a portrait, in pixels.
MIN_SIDE = 32
#: Smallest accepted side of a painted mask, in pixels (a mask is resized to the portrait, so any size works).
MIN_MASK_SIDE = 1
#: Longest side of a loaded portrait; larger images are downscaled (area average) to this.
MAX_SIDE = 4096
#: Images with more pixels than this are refused before decoding (decompression-bomb guard).
MAX_INPUT_PIXELS = 150_000_000
#: Pixels converted (alpha composited, scaled to 8 bits) at a time: bounds the float32 temporaries.
BAND_PIXELS = 2_000_000
#: Largest value of 8-bit and 16-bit samples.
UINT8_MAX = 255
UINT16_MAX = 65535
#: 65535 / 255: divides a 16-bit sample into an 8-bit one.
UINT16_TO_UINT8 = UINT16_MAX / UINT8_MAX
#: Background the transparent parts of an image are composited onto (white).
BACKGROUND_RGB = (255, 255, 255)
#: Floating-point images whose maximum is at most this are taken to be in 0..1 (else 0..255).
FLOAT_UNIT_RANGE_MAX = 1.0 + 1e-6

ImageSource = str | os.PathLike | np.ndarray | Image.Image


def load_image(source: ImageSource, max_side: int | None = None) -> np.ndarray:
    """Load a portrait as an RGB ``uint8`` array of shape ``H x W x 3``.

    ``source`` is a file path, a numpy array (``H x W``, ``H x W x 1/3/4``; uint8, uint16, other
    integers, bool or float in 0..1 or 0..255) or a PIL image. ``max_side``: the long side the caller
    needs (the result is area-downscaled to it, never enlarged; a huge file is decoded reduced, see the
    module docstring); default and cap :data:`MAX_SIDE`. Raises :class:`InputImageError` for missing,
    unreadable, corrupt, absurdly large or too small images.
    """
    longest = MAX_SIDE if max_side is None else max(1, min(int(max_side), MAX_SIDE))
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        image = _pil_to_rgb(_oriented(source, name), name)
    elif isinstance(source, np.ndarray):
        name = "<array>"
        image = _array_to_rgb(source, name)
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        image = _load_path(Path(source), longest)
    else:
        raise InputImageError(
            f"cannot use a {type(source).__name__} as an image; give a file path, an array or a PIL image"
        )
    _check_min_size(image, name)
    if max(image.shape[:2]) > MAX_SIDE:
        image = _fit_longest_side(image, MAX_SIDE)
        _check_min_size(image, name)
    if max(image.shape[:2]) > longest:
        image = _fit_longest_side(image, longest)
    return np.ascontiguousarray(image)


def load_mask(source: ImageSource) -> np.ndarray:
    """Load a painted mask as ``H x W`` float32 in 0..1 (white = on); any size from 1 px up (it is
    resized to the portrait later). Colour masks are averaged to grey; transparent parts are composited
    onto white, as portraits are.

    Raises :class:`InputImageError` with mask-specific messages (missing, unreadable, empty, ...).
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<mask>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputImageError(f"mask file not found: {path}")
        if path.is_dir() or path.stat().st_size == 0:
            raise InputImageError(f"mask {path} is {'a folder' if path.is_dir() else 'an empty file'}, "
                                  f"not an image; paint it as a grey PNG (white = on)")
        try:
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_INPUT_PIXELS:
                    raise InputImageError(f"mask {path} is {width}x{height} pixels, too large to load safely")
                img.load()
                if max(img.size) > MAX_SIDE:  # resized to the portrait later: shrink a huge mask right away
                    rgb = _reduced_rgb(img, max(img.size) // MAX_SIDE, str(path))
                else:
                    rgb = _pil_to_rgb(img, str(path))
        except InputImageError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise InputImageError(f"mask {path} is not a readable image ({exc}); paint it as a grey PNG") from exc
    elif isinstance(source, Image.Image):
        rgb = _pil_to_rgb(source, name)
    else:
        rgb = _array_to_rgb(np.asarray(source), name)
    grey = rgb.astype(np.float32).mean(axis=2) / UINT8_MAX
    if min(grey.shape[:2]) < MIN_MASK_SIDE:
        raise InputImageError(f"mask {name} is empty (0 pixels)")
    return np.ascontiguousarray(np.clip(grey, 0.0, 1.0), dtype=np.float32)


def center_crop_square(image: np.ndarray) -> np.ndarray:
    """Crop the largest centred square out of an ``H x W (x C)`` image."""
    height, width = image.shape[:2]
    side = min(height, width)
    top = (height - side) // 2
    left = (width - side) // 2
    return image[top : top + side, left : left + side]


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (an int for a square, or ``(width, height)``).

    Uses area averaging when shrinking (no aliasing) and bicubic interpolation when enlarging.
    """
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width <= 0 or height <= 0:
        raise InputImageError(f"cannot resize an image to {width}x{height} pixels")
    src_height, src_width = image.shape[:2]
    if (src_width, src_height) == (width, height):
        return image.copy()
    shrinking = width * height < src_width * src_height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[:, :, None]
    return out


def _fit_longest_side(image: np.ndarray, longest: int) -> np.ndarray:
    """Downscale so the longest side is ``longest`` pixels, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = longest / max(height, width)
    return resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))


def _check_min_size(image: np.ndarray, name: str) -> None:
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputImageError(
            f"{name}: the image is {width}x{height} pixels; a portrait must be at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels (minimum {MIN_SIDE} px on each side)"
        )


def _load_path(path: Path, longest: int = MAX_SIDE) -> np.ndarray:
    """Open, guard, orient and convert an image file (one larger than :data:`MAX_SIDE` decoded reduced
    toward ``longest``: module docstring)."""
    if not path.exists():
        raise InputImageError(f"image file not found: {path}")
    if path.is_dir():
        raise InputImageError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise InputImageError(f"image file is empty: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_INPUT_PIXELS:
                    raise InputImageError(
                        f"{path}: the image is {width}x{height} pixels, too large to load safely "
                        f"(limit {MAX_INPUT_PIXELS:,} pixels); downscale it first"
                    )
                if img.format == "JPEG" and max(width, height) > MAX_SIDE:
                    # Decode at 1/2, 1/4 or 1/8 scale directly: memory stays bounded.
                    img.draft("RGB", (longest, longest))
                img.load()
                if max(img.size) > MAX_SIDE:
                    return _oriented_array(_reduced_rgb(img, max(1, max(img.size) // longest), str(path)), img)
                return _pil_to_rgb(_oriented(img, str(path)), str(path))
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"{path}: the image is too large to load safely ({exc}); downscale it first") from exc
    except UnidentifiedImageError as exc:
        raise InputImageError(f"{path} is not a readable image file (unknown or unsupported format)") from exc
    except PermissionError as exc:
        raise InputImageError(f"cannot read image file {path}: permission denied") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputImageError(f"{path} is corrupt or truncated and cannot be decoded ({exc})") from exc


def _reduced_rgb(img: Image.Image, factor: int, name: str) -> np.ndarray:
    """A loaded image as RGB uint8, shrunk by the whole ``factor`` (box average) without a full-size copy.

    8-bit modes are converted (alpha composited onto white) band by band, each band reduced at once: the
    result equals reducing the whole converted image. 16-bit and float modes are reduced first (averaging
    raw values) and then scaled to 8 bits.
    """
    width, height = img.size
    rows = factor * max(1, BAND_PIXELS // (width * factor))
    boxes = [(0, top, width, min(height, top + rows)) for top in range(0, height, rows)]
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        raw = "F" if img.mode == "F" else "I"
        bands = [img.crop(box).convert(raw) for box in boxes]
        array = np.concatenate([np.asarray(band.reduce(factor) if factor > 1 else band) for band in bands], axis=0)
        if img.mode.startswith("I;16"):  # keep the 16-bit reading of the values (engine/image._to_uint8)
            array = array.astype(np.uint16)
        return _array_to_rgb(array, name)
    bands = []
    for box in boxes:
        band = _pil_to_rgb(img.crop(box), name)
        bands.append(np.asarray(Image.fromarray(band).reduce(factor)) if factor > 1 else band)
    return np.concatenate(bands, axis=0)


def _oriented_array(image: np.ndarray, img: Image.Image) -> np.ndarray:
    """``image`` (converted from ``img``) turned as ``img``'s EXIF orientation tag says (a broken tag: as is)."""
    try:
        orientation = int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, AttributeError):
        return image
    turned = Image.fromarray(image)
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return image if method is None else np.asarray(turned.transpose(method))


def _oriented(img: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation tag (a broken EXIF block is ignored)."""
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return img


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    """Convert any PIL mode to RGB uint8 (alpha composited onto white, high bit depths scaled)."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(img), name)
    if mode == "P" and "transparency" in img.info or mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        return _composite_on_white(np.asarray(img, dtype=np.uint8))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an ``H x W x 4`` uint8 image over the white background (in bands of rows: the float32
    temporaries stay small however large the image)."""
    height, width = rgba.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    background = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    rows = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        band = rgba[top : top + rows]
        alpha = band[:, :, 3:4].astype(np.float32) / UINT8_MAX
        blended = band[:, :, :3].astype(np.float32) * alpha + background * (1.0 - alpha)
        out[top : top + rows] = np.clip(np.rint(blended), 0, UINT8_MAX).astype(np.uint8)
    return out


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Scale any numeric array to uint8 0..255 (16-bit and float ranges detected)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * UINT8_MAX
    if array.size == 0:
        raise InputImageError(f"{name}: the image is empty")
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InputImageError(f"{name}: the image contains NaN or infinite values")
        if float(values.max()) <= FLOAT_UNIT_RANGE_MAX:
            values = values * UINT8_MAX
        return np.clip(np.rint(values), 0, UINT8_MAX).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise InputImageError(f"{name}: the image has negative pixel values ({low})")
        if array.dtype == np.uint16 or UINT8_MAX < high <= UINT16_MAX:
            return np.rint(array.astype(np.float32) / UINT16_TO_UINT8).astype(np.uint8)
        if high <= UINT8_MAX:
            return array.astype(np.uint8)
        raise InputImageError(f"{name}: pixel values up to {high} are outside the 8/16-bit range")
    raise InputImageError(f"{name}: unsupported pixel type {array.dtype}")


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """Convert a numpy image (gray, gray+alpha, RGB, RGBA; any numeric type) to RGB uint8."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputImageError(
            f"{name}: an image array must be H x W or H x W x 1/2/3/4, got shape {tuple(array.shape)}"
        )
    pixels = _to_uint8(np.asarray(array), name)
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 2:
        gray, alpha = pixels[:, :, :1], pixels[:, :, 1:]
        return _composite_on_white(np.concatenate([gray, gray, gray, alpha], axis=2))
    if channels == 4:
        return _composite_on_white(pixels)
    return pixels.copy()
