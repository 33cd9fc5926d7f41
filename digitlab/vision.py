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
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        return np.nan_to_num(scaled).round().astype(np.uint8)
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
    """Turn a grayscale image into what the model was trained on: a 28x28 uint8 digit, light ink on black."""
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError(f"expected a non-empty 2-D grayscale image, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > LIGHT_BACKGROUND:
        gray = 255 - gray
    if gray.shape != (MNIST_SIDE, MNIST_SIDE):
        gray = _fit_square(gray)
    return np.ascontiguousarray(gray, dtype=np.uint8)


def _fit_square(gray: np.ndarray) -> np.ndarray:
    """Pad to a square on the background, then shrink with area resampling so thin strokes survive."""
    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    return np.asarray(Image.fromarray(square).resize((MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX))


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """Read and prepare one image file: the path every caller uses for files."""
    return prepare_digit(read_image(path))

