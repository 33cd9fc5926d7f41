"""Image files and bytes in, upright 8-bit grayscale arrays out: any format Pillow reads, EXIF orientation,
transparency on white paper, 16-bit and float images, and bombs refused before decoding."""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Phone photos reach 12 MP; past 40 MP an upload is far more likely a decompression bomb than a digit.
MAX_PIXELS = 40_000_000
# Analysis runs on a copy whose longer side is at most this: a 12 MP photo shrinks 8-fold, and a digit
# that fills a tenth of the photo still keeps about 50 pixels, more than the 20 it ends as.
ANALYSIS_SIDE = 512


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode any format Pillow reads into an upright 8-bit grayscale array, refusing bombs before decoding."""
    return _decode(data, name, None)[0]


def decode_for_analysis(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, tuple[int, int]]:
    """`decode_image`, but a JPEG at least twice the analysis copy's size is decoded straight to a half,
    a quarter or an eighth of it (libjpeg scales while decoding, at a fraction of the cost: a 12 MP photo in 8 ms
    instead of 150), never smaller than the analysis copy. Also the full image's upright (height, width), which
    boxes found in the smaller array are scaled back to."""
    return _decode(data, name, ANALYSIS_SIDE)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into 8-bit grayscale; any failure becomes an ImageError naming the file."""
    return decode_image(_read_file(path), str(path))


def read_for_analysis(path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, int]]:
    """`read_image` the way `decode_for_analysis` decodes."""
    return decode_for_analysis(_read_file(path), str(path))


def _read_file(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(MAX_PIXELS * 4)
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror or error})") from None


def _decode(data: bytes, name: str, draft_side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
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
            longer = max(width, height)
            if draft_side and image.format == "JPEG" and longer >= 2 * draft_side:
                image.draft("L", (math.ceil(width * draft_side / longer), math.ceil(height * draft_side / longer)))
            image.load()
            loaded = image.size
            if _may_be_turned(image):
                # In place: a copy of every upright image costs a tenth of a small image's whole answer.
                ImageOps.exif_transpose(image, in_place=True)
            # Turned a quarter, the full image stands as tall as it was wide.
            return _to_gray(image), (height, width) if image.size == loaded else (width, height)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image in a format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name}: cannot decode the image ({error})") from None


def _may_be_turned(image: Image.Image) -> bool:
    """Whether the loaded image may carry an orientation for exif_transpose. Pillow's full EXIF parse costs more
    than the rest of a small image's decoding (GIMP writes 6 KB of EXIF into its PNGs), and EXIF without the
    Orientation tag's bytes (0x0112, in either byte order) holds none. TIFF tags and XMP take the full path."""
    info = image.info
    if hasattr(image, "tag_v2") or "xmp" in info or "XML:com.adobe.xmp" in info:
        return True
    exif = info.get("exif")
    if exif is not None:
        return not isinstance(exif, bytes) or b"\x01\x12" in exif or b"\x12\x01" in exif
    profile = info.get("Raw profile type exif")  # PNG's hexadecimal EXIF (ImageMagick, GIMP)
    if profile is not None:
        # The tag's hexadecimal digits have no case; a TIFF header near the start says the byte order.
        digits = str(profile)
        head = digits[:80].lower()
        big_endian, little_endian = "4d4d002a" in head, "49492a00" in head
        return ("0112" in digits and not little_endian) or ("1201" in digits and not big_endian)
    return False


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
    opaque = image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] == 255
    if not opaque and (image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)
