"""Images in, MNIST-style digits out: the one preprocessing path shared by train, evaluate, predict and serve."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MNIST_SIDE = 28
# Phone photos reach 12 MP; past 40 MP an upload is far more likely a decompression bomb than a digit.
MAX_PIXELS = 40_000_000
# MNIST is light ink on a dark ground; an image whose border is brighter than this is dark ink on paper.
LIGHT_BACKGROUND = 127
# MNIST fitted each digit's longer side to 20 pixels and centred its mass in the 28x28 field
# (index 14.0 in both axes, measured on the test set).
INK_BOX = 20
MNIST_CENTRE = 14.0
# Ink fainter than this (of 255, after stretching) is anti-aliasing or paper noise, not the digit's extent.
INK_THRESHOLD = 8


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode any format Pillow reads into an upright 8-bit grayscale array, refusing bombs before decoding."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{name}: {width}x{height} is {width * height:,} pixels, over the {MAX_PIXELS:,} limit; "
                    "scale the image down first"
                )
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            return _to_gray(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image in a format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name}: cannot decode the image ({error})") from None


def _to_gray(image: Image.Image) -> np.ndarray:
    """Grayscale with transparency composited on white paper, and 16-bit or float images rescaled to 0..255."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        # Stretch the finite range to 0..255; NaN becomes background and infinities the ends of the range.
        values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return scaled.round().astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into 8-bit grayscale; any failure becomes an ImageError naming the file."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PIXELS * 4)
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror or error})") from None
    return decode_image(data, str(path))


def prepare_digit(gray: np.ndarray) -> np.ndarray:
    """Turn a grayscale image into what the model was trained on, the way MNIST itself was made:
    light ink on black, cropped to the ink, its longer side fitted to 20 pixels, and placed in
    28x28 with its centre of mass at the centre. MNIST digits come through (nearly) unchanged."""
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError(f"expected a non-empty 2-D grayscale image, got shape {gray.shape}")
    gray = gray.astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > LIGHT_BACKGROUND:
        gray, background = 255 - gray, 255 - background
    ink = np.clip(gray - background, 0, None)
    peak = float(ink.max())
    if peak == 0:
        return np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    ink *= 255 / peak
    rows, columns = np.nonzero(ink > INK_THRESHOLD)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    return _centre_by_mass(_fit_longer_side(crop, INK_BOX))


def _fit_longer_side(crop: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is `side` pixels, keeping the aspect; area resampling when shrinking keeps thin strokes."""
    height, width = crop.shape
    scale = side / max(height, width)
    if scale == 1:
        return crop
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(size, method))


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Paste into 28x28 with the ink's centre of mass at (14, 14), where MNIST's digits have theirs."""
    height, width = patch.shape
    total = patch.sum()
    centre_row = (patch.sum(axis=1) @ np.arange(height)) / total
    centre_column = (patch.sum(axis=0) @ np.arange(width)) / total
    top = int(np.clip(round(MNIST_CENTRE - centre_row), 0, MNIST_SIDE - height))
    left = int(np.clip(round(MNIST_CENTRE - centre_column), 0, MNIST_SIDE - width))
    canvas = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = patch
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """Read and prepare one image file: the path every caller uses for files."""
    return prepare_digit(read_image(path))

