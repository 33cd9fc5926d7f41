"""Images in, MNIST-style digits out: the one preprocessing path shared by train, evaluate, predict and serve."""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from scipy import ndimage, spatial
from scipy.sparse.csgraph import connected_components

from .errors import ImageError

MNIST_SIDE = 28
# Phone photos reach 12 MP; past 40 MP an upload is far more likely a decompression bomb than a digit.
MAX_PIXELS = 40_000_000
# MNIST fitted each digit's longer side to 20 pixels and centred its mass in the 28x28 field
# (index 14.0 in both axes, measured on the test set).
INK_BOX = 20
MNIST_CENTRE = 14.0
# The strokes are stretched to full white from the level PEAK_SHARE of their pixels reach, where the brightest
# pixels are specks outshining it by more than 1 / SPECK_OUTSHINES; else from their brightest.
PEAK_SHARE, SPECK_OUTSHINES = 0.98, 0.95
# Ink fainter than this (of 255, after stretching) is anti-aliasing or paper noise, not the digit's extent.
INK_THRESHOLD = 8
# Analysis runs on a copy whose longer side is at most this: a 12 MP photo shrinks 8-fold, and a digit
# that fills a tenth of the photo still keeps about 50 pixels, more than the 20 it ends as.
ANALYSIS_SIDE = 512
# A clean image (plain ground all round, a canvas drawing) is analysed at most this large.
CLEAN_SIDE = 112
# Polarity needs only the coarse picture; its median filter runs on a copy this small.
POLARITY_SIDE = 64
# Pixels leaning towards the light by less than this (their skewness) leave the polarity open: a bold dark
# digit cropped tight leans up to 0.8 so, nearly every light one on a plain dark ground 0.9 and more.
CLEAR_LEAN = 1.0
# A digit drawn to fill a crop the size of a digit (a postal scanner's 16x16 box) is near half its pixels, and
# the lean is unsure. The ground then shows in the corners, which round strokes miss (though they touch every
# edge, as a bold 0 does): when at least CORNER_GROUND of four squares CORNER_SIDE of the crop's side lies on
# one side of the grey levels' midpoint, that side is the ground.
CORNER_SIDE, CORNER_GROUND = 0.15, 0.6
# The background is estimated over windows this fraction of the shorter side: wider than any stroke
# (MNIST's thickest are about 6 of 28 pixels), narrower than the changes of light across a photo.
BACKGROUND_FRACTION = 0.4
# Strokes wider than this share of that window are not all taken away by it; it then grows by this factor.
BOLD_SHARE, WINDOW_GROWTH = 0.5, 1.5
# Ink must stand out from the paper by at least this much (of 255) to count, whatever Otsu says.
MIN_CONTRAST = 24
# ... nor less than this many times the paper's noise (grain, sensor noise), so a blank page stays blank.
NOISE_MARGIN = 6
# ... measured on at least this many steps between neighbours that are both paper, where there are so many.
PLAIN_STEPS = 8
# A region inside the image where the background climbs this share of the way from the paper to the ink is a
# filled shape, not paper (0.5 took the dark corners of photos for shapes, 0.75 missed a filled bag).
FILLED_SHARE = 0.6
# Pen strokes are the strongest marks on the page; printed rules and grid lines, shadows' edges and stains
# are fainter. A cut at this share of the ink's level keeps them out even when the digit is so small that
# Otsu splits the paper from the lines instead of the lines from the ink.
INK_SHARE = 0.5
# Hysteresis grows the strokes only into pixels this far from the paper towards the ink, which faint
# lines crossing a digit do not reach (else a whole ruled line grows in from where a stroke crosses it).
GROW_SHARE = 0.35
# Hysteresis keeps fainter pixels (above this fraction of the cut) that are joined to clear ink, so a
# faded stroke stays whole.
HYSTERESIS_LOW = 0.5
# A piece at the border spanning FRAME_SPAN of the image both ways, and running along every side (within
# BORDER_BAND of it) for FRAME_SIDE of the side's length, is a frame (perhaps with the digit joined to it by
# fainter ink); then stricter lower cuts of the hysteresis, as multiples of Otsu's cut, are tried until the
# digit comes free.
FRAME_SPAN, FRAME_SIDE = 0.85, 0.8
STRICTER_THRESHOLDS = (0.7, 1.0, 1.25, 1.5, 1.75, 2.0)
# A digit freed from a frame still spans this share of the image's height and keeps this share of the ink.
FREED_HEIGHT, FREED_SHARE = 0.4, 0.15
# Pieces with less than this fraction of the largest piece's pixels are dust, noise or JPEG debris.
SPECK_FRACTION = 0.05
# Pieces touching the border (frames, paper edges, shadows) are dropped when the ink inside has at
# least this fraction of their pixels (otherwise the digit itself touches the border and stays) ...
FRAME_RATIO = 0.2
# ... and when they are this much taller or wider than all the ink inside together.
BORDER_GROWTH = 1.2
# ... or when they lie wholly in this outer band of the image (the bits of a frame along the edge).
BORDER_BAND = 0.08
# ... or when they run in from the border as a bar STUB_LENGTH times longer than thick and at most STUB_SPAN of the
# ink inside's height (or width) across: the stub of a ruled line or of a shadow's edge, beside ink inside of at most
# STUB_COMPANIONS pieces (a digit or a number, not a texture of stripes, whose own pieces would then be read).
STUB_LENGTH, STUB_SPAN, STUB_COMPANIONS = 3, 0.5, 8
# ... or, beside as few pieces inside, when they run along the border for SHADOW_CONTACT of the ink inside's size and
# are fainter than it (SHADOW_LEVEL of its median contrast): a shadow's corner or edge.
SHADOW_CONTACT, SHADOW_LEVEL = 0.5, 0.9
# Ruled and grid lines run across the image: straight runs longer than this fraction of its side, looked
# for only in images at least LINED_PAGE_SIDE pixels across (a page or a photo; in an image the size of a
# digit, a long straight stroke is the digit itself).
LINE_SPAN = 0.5
LINED_PAGE_SIDE = 64
# ... and the ink left beside them must be a digit in its own right, not a scrap of a digit made of a line.
LINE_DIGIT_RATIO = 0.5
# A ruled line is also much longer than the digit is wide (or tall, for a vertical line).
LINE_LENGTH_RATIO = 2.0
# A piece shorter than this fraction of the tallest is a fragment (a 5's top bar, a 7's crossbar, a broken
# stroke), not a digit: digits written side by side differ less in height than that. A fragment farther than
# STRAY_GAP of the tallest piece's height from every taller piece belongs to none of them: it is dirt, a
# frame's corner or a shadow's tip, and in the crop it would shrink the digit.
FRAGMENT_HEIGHT, STRAY_GAP = 0.5, 0.5
# In a row of digits, a piece smaller than a speck yet this share of the digits' height from one is a fragment of it.
FRAGMENT_REACH = 0.15
# A digit of a row written more lightly than the others is sought at this share of the strongest ink. It must stand
# LIGHT_HEIGHTS times the row's digits' height, be LIGHT_WIDTHS times its own height wide (a grid line's stretch
# between two crossings is as tall as a digit and as thin as a 1; a light 1 is not sought), lie LIGHT_ROW of its height
# within the row, share at most LIGHT_SHARED of its columns with any digit found and lie at most LIGHT_GAP digit
# heights from one.
LIGHT_SHARE, LIGHT_HEIGHTS, LIGHT_WIDTHS = 0.3, (0.6, 1.3), (0.45, 1.2)
LIGHT_ROW, LIGHT_SHARED, LIGHT_GAP = 0.6, 0.2, 1.0
# A piece fainter than the strongest ink grows by a cut scaled to its own strength. Growth to more than
# OWN_GROWTH times the ink it grows from is a shadow spreading; a piece ELONGATED times longer than wide is a line.
OWN_GROWTH, ELONGATED = 6, 4
# A sheet, sticky note or board photographed lying on a darker desk or wall is sought on a copy SHEET_SIDE pixels
# across. It covers SHEET_AREA of the frame and at most SHEET_BORDER of the frame's edge, stands SHEET_CONTRAST
# grey levels above its surroundings behind an edge whose gradient is SHEET_EDGE of that step or more, fills
# SHEET_RECTANGLE of the smallest rectangle round it, and carries dark marks (between the two SHEET_INK shares of
# it) no wider than SHEET_MARKS of its side, while at most SHEET_OUTSIDE_MARKS of the surroundings is that dark
# (round a region its edges close, only marks narrower than SHEET_STROKE coarse pixels count). Where light and
# shade do not part it from the desk, its edges do: gradients of SHEET_CLOSED of the step or more, after a blur
# of SHEET_SMOOTHING pixels.
SHEET_SIDE = 96
SHEET_AREA = (0.04, 0.9)
SHEET_BORDER = 0.5
SHEET_CONTRAST = 40
SHEET_EDGE = 0.12
SHEET_RECTANGLE = 0.85
SHEET_INK, SHEET_MARKS, SHEET_OUTSIDE_MARKS, SHEET_STROKE = (0.002, 0.3), 0.12, 0.02, 5
SHEET_CLOSED, SHEET_SMOOTHING = 0.15, 0.7
# A sheet found as light ink is paper twice SHEET_PAPER of its length wide somewhere, wider than a bold light
# digit's strokes; the writing (its holes) is narrower than SHEET_STROKES of that, unlike a bold digit's counters,
# and reaches SHEET_WRITING of the sheet's side, unlike specks and grain.
SHEET_PAPER, SHEET_STROKES, SHEET_WRITING = 0.15, 0.6, 0.2
# A sheet tilted by this many degrees or more is turned upright.
SHEET_TURN = 2
SQUARE = np.ones((3, 3), dtype=bool)
CROSS = ndimage.generate_binary_structure(2, 1)
# Lines joined to a digit are opened away on a page by squares up to this share of the boldest stroke wide; what the
# opening takes away is lines when at most LINE_BOLD_SHARE of it outlasts an opening twice as wide.
LINE_OPENING, LINE_BOLD_SHARE = 0.4, 0.15


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


@dataclass(frozen=True)
class InkMap:
    """Where the ink is, at analysis resolution: `ink` is light-on-black contrast (0..255, float32), `mask` the
    cleaned ink pixels, `scale` analysis pixels per original pixel, `stages` the named steps that led there,
    `turn` the degrees (counter-clockwise) the analysis copy was turned to set a photographed sheet upright."""

    ink: np.ndarray
    mask: np.ndarray
    scale: float
    stages: tuple[tuple[str, np.ndarray], ...]
    turn: float = 0.0

    def unturned(self, points: np.ndarray) -> np.ndarray:
        """(x, y) points of the analysis copy as they lay before it was turned upright."""
        if not self.turn:
            return points
        height, width = self.mask.shape
        centre = np.array([width / 2, height / 2])
        angle = np.radians(self.turn)
        back = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return (points - centre) @ back.T + centre


def find_ink(gray: np.ndarray) -> InkMap:
    """Separate the ink from the paper the way a scanner operator would: downscale, choose the polarity,
    flatten uneven light, threshold with hysteresis, drop specks, ruled lines and frames at the border."""
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError(f"expected a non-empty 2-D grayscale image, got shape {gray.shape}")
    stages = [("input", gray)]
    image = gray.astype(np.float32)
    scale = min(1.0, ANALYSIS_SIDE / max(image.shape))
    if scale < 1:
        image = _resize(image, scale)
        stages.append(("analysis copy", image))
    border = _border_pixels(image)
    if border.max() <= INK_THRESHOLD or border.min() >= 255 - INK_THRESHOLD:
        # A clean digit (MNIST itself, a drawing on a blank canvas): the border says the polarity and
        # there is no light to flatten, so only specks need removing. This keeps MNIST as it is, and fast.
        if max(image.shape) > CLEAN_SIDE:
            # A drawing on a blank canvas needs no analysis at full size: a fifth of a 280-pixel canvas is
            # still far more than the 20 pixels the digit ends as.
            scale *= CLEAN_SIDE / max(image.shape)
            image = _resize(image, CLEAN_SIDE / max(image.shape))
            stages.append(("analysis copy", image))
        ground = float(_median(border))
        ink = np.maximum(image - ground if border.max() <= INK_THRESHOLD else ground - image, 0)
        # Stretched to full range first, so even the faintest ink on a plain ground counts.
        peak = float(ink.max())
        ink = ink * (255 / peak) if peak > 0 else ink
        stages.append(("light ink on black", ink))
        mask = _keep_digit_components(ink > 0)
        stages.append(("specks removed", mask))
        return InkMap(ink, mask, scale, tuple(stages))
    turn = 0.0
    sheet = _sheet_alone(image)
    if sheet is None:
        # No sheet stood out from the desk by its light, yet the light ink found may be one: a sheet whose light
        # falls off across the desk, found once the background is flattened, with the writing as its holes.
        contrast, mask = _ink_on_paper(image, stages)
        sheet = _sheet_in_mask(image, mask)
    if sheet is not None:
        # The ink is sought within the sheet's box, however little of the photo the sheet fills: its paper alone
        # then sets the cut and the background's window, and its lines run across the image searched (with the
        # painted desk round it, a note's grid or its shadow passed for ink).
        image, turn, window = sheet
        stages.append(("sheet alone" + (", upright" if turn else ""), image))
        contrast, mask = np.zeros_like(image), np.zeros(image.shape, dtype=bool)
        contrast[window], mask[window] = _ink_on_paper(image[window], stages)
    return InkMap(contrast, mask, scale, tuple(stages), turn)


def _ink_on_paper(image: np.ndarray, stages: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The ink's contrast and its cleaned mask in a photo or scan of paper: the polarity chosen, the light
    flattened and cut, frames and lines taken away; each step's image is appended to `stages`."""
    lean = _ink_lean(image)
    if abs(lean) < CLEAR_LEAN and max(image.shape) < LINED_PAGE_SIDE:
        lean = _lean_by_corners(image, lean)
    if lean < 0:
        image = 255 - image
    contrast, threshold, thresholded, mask = _cut_ink(image)
    if 0 <= lean < CLEAR_LEAN:
        # Pixels leaning only a little towards light ink may be a bold dark digit cropped tight, its ink near
        # half the image. Read as dark ink too, the reading whose ink holds together in fewer pieces wins:
        # a digit is one or two strokes, while the paper round a bold digit falls apart into corners and
        # counters. (Ties keep the light reading: a light digit on a dark plate leans as little.)
        dark = _cut_ink(255 - image)
        if 0 < _count_pieces(dark[3]) < _count_pieces(mask) or not mask.any() and dark[3].any():
            image, (contrast, threshold, thresholded, mask) = 255 - image, dark
    stages.append(("light ink on dark", image))
    stages.append(("background removed", contrast))
    stages.append(("thresholded", thresholded))
    stages.append(("cleaned", mask))
    for factor in STRICTER_THRESHOLDS:
        if not _largest_is_frame(mask):
            break
        # A digit joined to a frame around it by fainter ink comes apart at a stricter cut.
        stricter = _without_lines_and_specks(*_hysteresis_mask(contrast, threshold * max(factor, 1), threshold * factor))
        if stricter.any() and _came_free(_largest_piece(stricter), mask):
            mask = stricter
            stages.append((f"stricter cut x{factor:g}", mask))
    if _touches_border(mask) and _touches_border(_largest_piece(mask)):
        freed = _freed_from_lines(mask)
        if freed is not None:
            mask = freed
            stages.append(("lines opened", mask))
    unshaded = _without_border_shadows(mask, contrast)
    if unshaded is not mask:
        mask = unshaded
        stages.append(("shadows at the border dropped", mask))
    kept = _without_stray_fragments(mask)
    if kept is not mask:
        mask = kept
        stages.append(("stray bits dropped", mask))
    return contrast, mask


def _without_border_shadows(mask: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """The mask of a page without pieces at the border that run along it for SHADOW_CONTACT of the ink inside's size
    or more and are fainter than that ink (under SHADOW_LEVEL of its median contrast): a shadow's corner or edge, lit
    paper's rim. A digit cut at the border meets it only with its strokes' ends, and a photo's shapes at its border
    are as strong as what lies inside (dropping those left a shape inside that read as a digit)."""
    if max(mask.shape) < LINED_PAGE_SIDE:
        return mask
    labels, count = ndimage.label(mask, structure=SQUARE)
    touching = _at_border(labels, count)
    at_border, inside = np.flatnonzero(touching[1:]) + 1, np.flatnonzero(~touching[1:]) + 1
    if not len(at_border) or not 0 < len(inside) <= STUB_COMPANIONS:
        return mask
    ink = mask & ~touching[labels]
    rows, columns = ink_spans(ink)
    size = max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1)
    contact = np.bincount(_border_pixels(labels), minlength=count + 1)
    level = SHADOW_LEVEL * float(np.median(contrast[ink]))
    boxes = ndimage.find_objects(labels)
    shadows = [
        index for index in at_border[contact[at_border] >= SHADOW_CONTACT * size]
        if np.median(contrast[boxes[index - 1]][labels[boxes[index - 1]] == index]) < level
    ]
    return mask & ~np.isin(labels, shadows) if shadows else mask


def _freed_from_lines(mask: np.ndarray) -> np.ndarray | None:
    """The digit freed from lines joined to it (a house-number plate's frame, a squared sheet's grid, ruled lines
    at a tilt the long runs miss), or None. Lines thinner than the strokes part from them under an opening; on a
    page, openings up to LINE_OPENING of the boldest stroke are tried, the narrowest first (a bold marker digit on
    a grid of lines several pixels wide). The first that frees a digit-sized piece decides, and it stands only if
    what it takes away (with the pieces still at the border) spans the image as a frame does, or on a page reaches
    the border and runs across the image one way as ruled lines do; and, beyond the finest lines, is lines: little
    of it is bold enough to outlast an opening twice as wide (the rest of a photo's shapes is)."""
    page = max(mask.shape) >= LINED_PAGE_SIDE
    widest = max(2, int(LINE_OPENING * _widest_stroke(mask))) if page else 2
    for size in range(2, widest + 1):
        opened = _keep_digit_components(_remove_ruled_lines(_square_opening(mask, size)))
        if opened.any() and _came_free(_largest_piece(opened), mask):
            break
    else:
        return None
    # The opening also rounds the digit's own corners and thin ends; regrowth within the ink by as many pixels as it
    # took gives them back without reaching along the lines.
    freed = mask & ndimage.maximum_filter(_inner_pieces(opened), size=2 * size - 1, mode="constant")
    taken = mask & ~freed
    if not (_spans_image(taken) or page and _runs_across(taken)):
        return None
    if size > 2 and np.count_nonzero(_square_opening(taken, 2 * size)) > LINE_BOLD_SHARE * np.count_nonzero(taken):
        return None
    return freed


def _square_opening(mask: np.ndarray, size: int) -> np.ndarray:
    """`ndimage.binary_opening` by a size x size square, exactly, as two separable filters: several times faster."""
    shrunk = ndimage.minimum_filter(mask, size=size, mode="constant")
    return ndimage.maximum_filter(shrunk, size=size, mode="constant", origin=0 if size % 2 else -1)


def mnist_style_crop(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ink under `mask` as an MNIST digit: grey anti-aliased strokes, cropped, fitted to 20x20 with area
    resampling and centred by mass in 28x28. An empty mask gives a black image (a blank page)."""
    rows, columns = ink_spans(mask)
    if not rows.size:
        return np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    # One pixel of margin keeps the strokes' anti-aliased edges, which the threshold cut off.
    top, bottom = max(rows[0] - 1, 0), rows[-1] + 2
    left, right = max(columns[0] - 1, 0), columns[-1] + 2
    window = mask[top:bottom, left:right]
    strokes = ink[top:bottom, left:right] * _grow(window)
    strokes = np.minimum(strokes * (255 / _strokes_peak(strokes[window])), 255)
    rows, columns = ink_spans(strokes > INK_THRESHOLD)
    crop = strokes[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    return _centre_by_mass(_fit_longer_side(crop, INK_BOX))


def _strokes_peak(values: np.ndarray) -> float:
    """The level the strokes are stretched from to full white: their brightest, unless their brightest few pixels
    outshine the rest (a dark speck of grit or a hot pixel on a stroke), which would dim the digit to faint grey."""
    brightest, strokes = float(values.max()), _quantile(values, PEAK_SHARE)
    return strokes if strokes < SPECK_OUTSHINES * brightest else brightest


def ink_spans(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and the columns that hold any of the mask, in order."""
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def preprocess_stages(gray: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every intermediate image of `prepare_digit`, named, ending with the 28x28 digit the model sees."""
    found = find_ink(gray)
    return [*found.stages, ("MNIST-style digit", mnist_style_crop(found.ink, found.mask))]


def stages_image(stages: list[tuple[str, np.ndarray]], tile: int = 160) -> Image.Image:
    """The stages side by side, each scaled to fit a `tile`-pixel square under its title, as a grayscale
    picture (masks white on black, contrast maps stretched to their own maximum)."""
    font = ImageFont.load_default(size=12)
    title_height = 18
    strip = Image.new("L", (len(stages) * (tile + 8) + 8, tile + title_height + 16), 255)
    draw = ImageDraw.Draw(strip)
    for index, (title, picture) in enumerate(stages):
        values = np.asarray(picture, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if picture.dtype == bool or peak > 255:
            values = values * (255 / max(peak, 1))
        shown = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
        scale = tile / max(shown.size)
        # Nearest neighbour keeps small images' pixels visible; box averaging keeps large ones smooth.
        method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
        shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))), method)
        left = 8 + index * (tile + 8)
        draw.text((left, 4), title, fill=0, font=font)
        strip.paste(shown, (left, title_height + 8))
    return strip


def prepare_digit(gray: np.ndarray) -> np.ndarray:
    """Turn a grayscale image into what the model was trained on, the way MNIST itself was made:
    light ink on black, cropped to the ink, its longer side fitted to 20 pixels, and placed in
    28x28 with its centre of mass at the centre. MNIST digits come through (nearly) unchanged."""
    return preprocess_stages(gray)[-1][1]


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel in all eight directions: a separable 3x3 dilation in plain numpy, since
    on a digit-sized window scipy's call overhead costs more than the work."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    wide = grown.copy()
    wide[:, 1:] |= grown[:, :-1]
    wide[:, :-1] |= grown[:, 1:]
    return wide


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Area (box) resampling: every source pixel counts, so thin strokes fade instead of vanishing."""
    height, width = image.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image, mode="F").resize(size, Image.Resampling.BOX))


def _sheet_alone(image: np.ndarray) -> tuple[np.ndarray, float, tuple[slice, slice]] | None:
    """A photo of a sheet, a sticky note or a board lying on a darker desk or wall, with everything round the
    sheet painted in its paper's grey and the sheet turned upright, the degrees it was turned and the sheet's
    window; None when the photo shows no such sheet. Left in, the desk is darker than the paper as ink is, and a
    small light note on it passes for a light stroke on a dark ground. Upright, its ruled lines run straight
    across, and the digit stands as it was written."""
    if min(image.shape) < LINED_PAGE_SIDE:
        return None
    coarse, _ = _coarse_copy(image)
    found = _find_sheet(coarse)
    return None if found is None else _paint_round_sheet(image, coarse, *found)


def _paint_round_sheet(
    image: np.ndarray, coarse: np.ndarray, inside: np.ndarray, paper: np.ndarray, tilt: float
) -> tuple[np.ndarray, float, tuple[slice, slice]]:
    """The photo with everything outside the sheet (`inside`, on the coarse copy) painted in its paper's grey
    and turned upright when it is tilted by SHEET_TURN degrees or more, the degrees it was turned, and the
    window of it the sheet fills."""
    # Round the sheet, each place takes the grey of the nearest paper of it, so light falling off across the
    # sheet carries on past its edge instead of ending in a step that would pass for ink.
    nearest = ndimage.distance_transform_edt(~paper, return_indices=True)[1]
    rows, columns = (
        _resampling_weights(*sizes, Image.Resampling.BILINEAR) for sizes in zip(coarse.shape, image.shape)
    )
    paint = rows @ coarse[nearest[0], nearest[1]] @ columns.T
    sheet = rows @ inside.astype(np.float32) @ columns.T
    on_sheet = sheet > 0.5
    alone = np.where(on_sheet, image, paint).astype(np.float32)
    if abs(tilt) < SHEET_TURN:
        return alone, 0.0, _window(on_sheet)
    upright = Image.fromarray(alone, mode="F").rotate(
        tilt, Image.Resampling.BILINEAR, fillcolor=float(np.median(paint))
    )
    upright_sheet = np.asarray(Image.fromarray(sheet, mode="F").rotate(tilt, Image.Resampling.BILINEAR)) > 0.5
    return np.asarray(upright), tilt, _window(upright_sheet)


def _window(mask: np.ndarray) -> tuple[slice, slice]:
    """The smallest window holding all of the mask (all of the image, if the mask is empty)."""
    rows, columns = ink_spans(mask)
    if not rows.size:
        return slice(None), slice(None)
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def _sheet_in_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float, tuple[slice, slice]] | None:
    """As `_sheet_alone`, for a sheet that the ink found in `image` makes out: its largest piece is light paper
    with the writing as its holes (more paper than a stroke is wide, four-cornered), not a digit. None otherwise.
    Most photos show a digit, not such a sheet: they are told apart on the piece's box, so the cost stays small."""
    if min(image.shape) < LINED_PAGE_SIDE or not mask.any():
        return None
    piece = _largest_piece(mask)
    rows, columns = ink_spans(piece)
    height, width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    if height * width < SHEET_AREA[0] * mask.size:
        return None  # even filled, the piece would be too small for a sheet
    window = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    # Within the piece's box and a pixel of paper round it: its holes and distances are the same there.
    piece_in_box = np.pad(piece[window], 1)
    sheet_in_box = ndimage.binary_fill_holes(piece_in_box)
    holes_in_box = sheet_in_box & ~np.pad(mask[window], 1)
    area = np.count_nonzero(sheet_in_box)
    if not SHEET_AREA[0] * mask.size <= area <= SHEET_AREA[1] * mask.size:
        return None
    if not SHEET_INK[0] * area <= np.count_nonzero(holes_in_box) <= SHEET_INK[1] * area:
        return None
    # Measured with the grain's pinholes closed: a sheet's paper cut speckled under uneven light is still paper.
    paper_width = float(ndimage.distance_transform_edt(ndimage.binary_closing(piece_in_box, SQUARE)).max())
    if paper_width < SHEET_PAPER * max(height, width):
        return None  # light strokes (a bold light digit), not paper round writing
    if ndimage.distance_transform_edt(holes_in_box).max() > SHEET_STROKES * paper_width:
        return None  # the counters of a bold light digit, not writing on paper
    writing = [max(down.stop - down.start, across.stop - across.start) for down, across
               in ndimage.find_objects(ndimage.label(holes_in_box, structure=SQUARE)[0])]
    if max(writing) < SHEET_WRITING * np.sqrt(area):
        return None  # only specks and grain: a light thing with a texture, nothing written on it
    sheet, holes = np.zeros_like(mask), np.zeros_like(mask)
    sheet[window], holes[window] = sheet_in_box[1:-1, 1:-1], holes_in_box[1:-1, 1:-1]
    coarse, scale = _coarse_copy(image)
    # Opened, so bits of the desk's pattern joined to the sheet's edge do not pass for its corners.
    coarse_sheet = ndimage.binary_opening(_coarse_mask(sheet, scale, 0.5), SQUARE)
    if not coarse_sheet.any():
        return None
    rectangle_area, tilt = _bounding_rectangle(np.argwhere(coarse_sheet), coarse_sheet.shape)
    if np.count_nonzero(coarse_sheet) < SHEET_RECTANGLE * rectangle_area:
        return None
    inside = ndimage.binary_erosion(coarse_sheet, SQUARE)
    paper = inside & ~_coarse_mask(holes, scale, 0.0)
    return _paint_round_sheet(image, coarse, inside, paper, tilt) if paper.any() else None


def _coarse_copy(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The copy SHEET_SIDE pixels across that a sheet is sought on (the image itself if smaller), and its scale."""
    scale = SHEET_SIDE / max(image.shape)
    return (_resize(image, scale) if scale < 1 else image), scale


def _coarse_mask(mask: np.ndarray, scale: float, share: float) -> np.ndarray:
    """A mask on the coarse copy: the coarse pixels more than `share` of which the mask covers."""
    return _resize(mask.astype(np.float32), scale) > share if scale < 1 else mask


def _find_sheet(coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """On a coarse copy of a photo: the sheet lying on a darker desk (from a coarse pixel in from its edge,
    where the edge's blur and shadow lie), the paper of it (without the ink), and its tilt; None if there is
    none. The sheet is the largest light region, holes filled, or where light falling across the desk joins
    that to the desk or a shadow splits it, the region its edges close round; it must pass every check below."""
    light = coarse > _otsu(coarse)
    labels, count = ndimage.label(light, structure=SQUARE)
    if count == 0:
        return None
    paper = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    sheet = ndimage.binary_fill_holes(paper)
    gradient = np.hypot(*np.gradient(coarse))
    # Paper and surroundings apart, not one page's paper shading from its lit part to its dark one.
    if not sheet.all() and np.percentile(coarse[~sheet], 95) < np.percentile(coarse[paper], 5):
        found = _as_sheet(coarse, gradient, sheet)
        if found is not None:
            return found
    # How far each pixel lies under a grey closing: thin dark strokes stand out, the desk's grain and shade do not.
    strokes = ndimage.grey_closing(coarse, size=(SHEET_STROKE, SHEET_STROKE)) - coarse
    for sheet in _closed_by_edges(coarse, light):
        found = _as_sheet(coarse, gradient, sheet, strokes)
        if found is not None:
            return found
    return None


def _closed_by_edges(coarse: np.ndarray, light: np.ndarray) -> Iterator[np.ndarray]:
    """Regions that edges steeper than SHEET_CLOSED of the light's step above the dark close round, holes
    filled and widened by the edge they stop short of: those large enough for a sheet, the most light first."""
    step = float(np.median(coarse[light]) - np.median(coarse[~light]))
    edges = np.hypot(*np.gradient(ndimage.gaussian_filter(coarse, SHEET_SMOOTHING))) > SHEET_CLOSED * step
    regions, count = ndimage.label(~edges, structure=CROSS)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    lit = np.bincount(regions[light], minlength=count + 1)
    large = np.flatnonzero(sizes[1:] >= SHEET_AREA[0] * coarse.size) + 1  # label 0 is the edges
    for label in large[np.argsort(-lit[large])]:
        yield ndimage.binary_dilation(ndimage.binary_fill_holes(regions == label), SQUARE)


def _as_sheet(
    coarse: np.ndarray, gradient: np.ndarray, sheet: np.ndarray, strokes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The sheet, its paper and its tilt, if the region `sheet` passes for a sheet lying on a desk. `gradient` is
    the photo's; `strokes` (each pixel's depth under a grey closing) is given for a region its edges close round."""
    area = np.count_nonzero(sheet)
    border = _border_pixels(sheet)
    if not SHEET_AREA[0] * sheet.size <= area <= SHEET_AREA[1] * sheet.size or border.mean() > SHEET_BORDER:
        return None
    surroundings = coarse[~sheet]
    level = float(np.median(coarse[sheet]))
    step = level - float(np.median(surroundings))
    if step < SHEET_CONTRAST:
        return None
    # The sheet's edge is a step all round, not light falling off across a page (vignetting, a soft shadow).
    edge = sheet ^ ndimage.binary_erosion(sheet, border_value=1)
    if np.percentile(gradient[edge], 25) < SHEET_EDGE * step:
        return None
    marks = sheet & (coarse < level - step / 2)
    if not SHEET_INK[0] * area <= np.count_nonzero(marks) <= SHEET_INK[1] * area:
        return None  # nothing written on it, or more dark than light: a pattern (a checkerboard), not writing
    if ndimage.distance_transform_edt(marks).max() > SHEET_MARKS * np.sqrt(area):
        return None  # the counter of a light digit (the inside of a 0), not pen strokes on paper
    # Marks outside too: the "sheet" is the lit part of a page, and the digit may lie outside it. Outside a
    # region found by its light, any dark counts, shade included; outside one its edges close round, only
    # thin strokes on their own ground (not the desk's grain, nor the shadow along the sheet's edge).
    if strokes is not None:
        dark = (strokes > step / 2) & ~ndimage.binary_dilation(sheet, SQUARE, iterations=SHEET_STROKE // 2)
    else:
        dark = ~sheet & (coarse < np.median(surroundings) - step / 2)
    if np.count_nonzero(dark) > SHEET_OUTSIDE_MARKS * surroundings.size:
        return None
    rectangle_area, tilt = _bounding_rectangle(np.argwhere(sheet), sheet.shape)
    if area < SHEET_RECTANGLE * rectangle_area:
        return None  # a bold light digit, not a four-cornered sheet
    inside = ndimage.binary_erosion(sheet, SQUARE)
    paper = inside & ~marks
    if not paper.any():
        return None
    return inside, paper, tilt


def _bounding_rectangle(points: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """The smallest rectangle, at any angle, holding the pixels at (row, column) `points`: how many pixels of
    a frame of `shape` it covers (a sheet running off the photo fills the part of its rectangle the photo
    shows), and its tilt: the degrees (within 45 of level, counter-clockwise) that set it square. One of its
    sides lies along an edge of the points' convex hull."""
    hull = points[spatial.ConvexHull(points).vertices].astype(np.float64)
    edges = np.roll(hull, -1, axis=0) - hull
    directions = edges / np.maximum(np.hypot(*edges.T), 1e-12)[:, None]
    normals = np.stack([-directions[:, 1], directions[:, 0]], axis=1)
    spans = (np.ptp(hull @ directions.T, axis=0) + 1) * (np.ptp(hull @ normals.T, axis=0) + 1)
    best = spans.argmin()
    pixels = np.indices(shape).reshape(2, -1).T.astype(np.float64)
    covered = np.ones(len(pixels), dtype=bool)
    for axis in (directions[best], normals[best]):
        reach, sides = pixels @ axis, hull @ axis
        covered &= (reach >= sides.min() - 0.5) & (reach <= sides.max() + 0.5)
    down, across = directions[best]
    return float(np.count_nonzero(covered)), float((np.degrees(np.arctan2(down, across)) + 45) % 90 - 45)


def _ink_lean(image: np.ndarray) -> float:
    """Ink is the minority that stands out from its surroundings: after removing the slowly varying
    background, the pixel values lean towards the ink's side. Their skewness (third moment over the spread
    cubed) has the ink's sign: positive for light ink, negative for dark."""
    scale = POLARITY_SIDE / max(image.shape)
    coarse = _resize(image, scale) if scale < 1 else image
    size = max(3, round(min(coarse.shape) * BACKGROUND_FRACTION))
    grid = _sparse_median_filter(coarse, size)
    # Pillow's bilinear enlargement of the grid to the image's size, as the product of its two passes.
    rows, columns = (_resampling_weights(*sizes, Image.Resampling.BILINEAR) for sizes in zip(grid.shape, image.shape))
    background = rows @ grid @ columns.T
    deviation = (image - background).ravel()
    deviation -= deviation.sum() / deviation.size
    spread = float(deviation @ deviation) / deviation.size
    return float(deviation @ (deviation * deviation)) / deviation.size / max(spread, 1e-12) ** 1.5


def _lean_by_corners(image: np.ndarray, lean: float) -> float:
    """A clear lean (±CLEAR_LEAN) towards the ink's side when the crop's corners are mostly one ground (light
    ink if it is dark), else `lean` as it was."""
    side = max(1, round(min(image.shape) * CORNER_SIDE))
    corners = np.concatenate([image[:side, :side], image[:side, -side:], image[-side:, :side], image[-side:, -side:]])
    middle = (_quantile(image, 0.1) + _quantile(image, 0.9)) / 2
    dark_ground = float(np.mean(corners < middle))
    if dark_ground >= CORNER_GROUND:
        return CLEAR_LEAN
    if 1 - dark_ground >= CORNER_GROUND:
        return -CLEAR_LEAN
    return lean


@functools.lru_cache(maxsize=256)  # at most 256 x 20 x 512 floats: 10 MB
def _resampling_weights(source: int, target: int, method: Image.Resampling) -> np.ndarray:
    """The (target, source) matrix of Pillow's resampling along one axis, read off by resizing an identity:
    a product with it costs a fifth of a Pillow call on a digit-sized image, and agrees to float rounding."""
    spikes = Image.fromarray(np.eye(source, dtype=np.float32), mode="F")
    return np.asarray(spikes.resize((target, source), method)).T.copy()


def _sparse_median_filter(image: np.ndarray, size: int) -> np.ndarray:
    """The median of each `size` x `size` window (edges repeated), taken only every third of a window apart:
    the paper's level changes slowly, so a coarse grid of medians, enlarged, stands for the full filter at a
    small fraction of its cost."""
    step = max(1, size // 3)
    padded = _pad_edges(image, size // 2)
    # The windows as a strided view (sliding_window_view's own checks cost as much as the view).
    rows, columns = (length - size + 1 for length in padded.shape)
    row_stride, column_stride = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded,
        ((rows - 1) // step + 1, (columns - 1) // step + 1, size, size),
        (row_stride * step, column_stride * step, row_stride, column_stride),
        writeable=False,
    )
    return _median(windows.reshape(*windows.shape[:2], -1)).astype(np.float32)


def _pad_edges(image: np.ndarray, width: int) -> np.ndarray:
    """np.pad(image, width, mode="edge") by indexing, at a fifth of np.pad's cost on a digit-sized image."""
    height, breadth = image.shape
    rows = np.minimum(np.maximum(np.arange(-width, height + width), 0), height - 1)  # np.clip costs 3x more
    columns = np.minimum(np.maximum(np.arange(-width, breadth + width), 0), breadth - 1)
    return image.take(rows, axis=0).take(columns, axis=1)


def _median(values: np.ndarray) -> np.ndarray:
    """np.median along the last axis, by the same partition but without its generic checks, which cost more
    than the work on a digit-sized image (preprocessing takes half a dozen medians per image)."""
    count = values.shape[-1]
    middle = count // 2
    if count % 2:
        return np.partition(values, middle, axis=-1)[..., middle]
    halves = np.partition(values, (middle - 1, middle), axis=-1)
    return (halves[..., middle - 1] + halves[..., middle]) / 2


def _cut_ink(image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Light ink's contrast over the paper, the cut, the thresholded mask and the mask cleaned of specks
    and ruled lines."""
    window = max(3, round(min(image.shape) * BACKGROUND_FRACTION))
    contrast, threshold, (mask, pieces) = _threshold(image, window)
    # In a digit-sized image (a form's box, scanned), strokes nearly as wide as the window (a bold digit
    # cropped tight) partly pass for paper, so the cut finds them narrower than they are: the window widens
    # until it clears the widest of them. Photos and pages keep theirs, which their shadows need.
    side = min(image.shape)
    while max(image.shape) < LINED_PAGE_SIDE and window < side and _widest_stroke(mask) > BOLD_SHARE * window:
        window = min(side, round(window * WINDOW_GROWTH))
        contrast, threshold, (mask, pieces) = _threshold(image, window)
    return contrast, threshold, mask, _without_lines_and_specks(mask, pieces)


def _count_pieces(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=SQUARE)[1]


def _widest_stroke(mask: np.ndarray) -> float:
    """Twice the largest distance from any ink pixel to the paper: the width of the boldest stroke."""
    return 2 * float(ndimage.distance_transform_edt(mask).max()) if mask.any() else 0.0


def _threshold(image: np.ndarray, window: int) -> tuple[np.ndarray, float, tuple]:
    """Ink's contrast over the paper (`_background`), the cut and the hysteresis mask."""
    contrast = image - _background(image, window)
    # Otsu's cut, but never within the paper's own grain: its spread is measured robustly (ink edges are
    # the minority) on differences of neighbouring pixels, which slow changes of light do not affect.
    # Every third row is plenty for these robust statistics, at a third of the cost.
    sample = contrast[::3]
    paper = float(_median(sample.ravel()))
    steps = (sample[:, 1:] - sample[:, :-1]).ravel()
    otsu = _otsu(contrast)
    if max(image.shape) < LINED_PAGE_SIDE:
        paper, steps = _plain_paper(contrast, otsu, paper, steps)
    noise = 1.4826 * float(_median(np.abs(steps - _median(steps)))) / np.sqrt(2) if steps.size else 0.0
    # How strongly the digit stands out: the brightest contrast after a 3x3 median, which a hot pixel or a
    # speck of JPEG debris cannot set but a pen stroke two pixels wide can.
    strength = _median_3x3(contrast)
    ink_level = float(strength.max())
    # In an image at least LINED_PAGE_SIDE pixels both ways (a page or a photo; unlike the line and fragment
    # checks, a strip of digits narrower than that is left out too, as measured) the strokes' seeds are sought
    # on a 3x3 mean of the contrast: a stroke two or more pixels wide keeps its level there while grain falls
    # to a third, so a digit written lightly in a grainy photo clears the grain's margin. The strokes then
    # grow over the contrast itself.
    seeds, seed_noise = contrast, noise
    if min(image.shape) >= LINED_PAGE_SIDE:
        seeds, seed_noise = ndimage.uniform_filter(contrast, 3, mode="nearest"), noise / 3
    threshold = max(otsu, MIN_CONTRAST, paper + NOISE_MARGIN * seed_noise, paper + INK_SHARE * (ink_level - paper))
    floor = paper + NOISE_MARGIN / 2 * noise
    low = max(threshold * HYSTERESIS_LOW, floor, paper + GROW_SHARE * (ink_level - paper))
    mask, pieces = _hysteresis_mask(contrast, threshold, low, seeds)
    grown = _grown_by_own_strength(contrast, strength, ink_level, mask, pieces, paper, low, floor)
    if max(image.shape) >= LINED_PAGE_SIDE:
        light_cut = max(
            MIN_CONTRAST, otsu, paper + NOISE_MARGIN * seed_noise, paper + LIGHT_SHARE * (ink_level - paper)
        )
        if light_cut < threshold:
            grown = _with_lighter_digits(grown, seeds, light_cut, paper + NOISE_MARGIN / 2 * seed_noise)
    return contrast, threshold, (grown, pieces if grown is mask else None)


def _with_lighter_digits(mask: np.ndarray, seeds: np.ndarray, cut: float, floor: float) -> np.ndarray:
    """The mask with the digits of a row written more lightly than the rest (a pen running dry at a number's end, a
    digit in a shadow's edge) that never reached the cut at INK_SHARE of the strongest ink: pieces above the lower
    `cut` on `seeds` (the contrast, or its 3x3 mean, where grain drowns single pixels of faint strokes), grown down to
    half of it but never below the grain's `floor`, kept only where shaped and placed like another digit of a row of
    two or more found (LIGHT_HEIGHTS, LIGHT_WIDTHS, LIGHT_ROW, LIGHT_GAP, LIGHT_SHARED)."""
    labels, _ = ndimage.label(mask, structure=SQUARE)
    boxes = _piece_boxes(labels)
    if len(boxes) < 2:
        return mask
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    compact = np.maximum(heights, widths) <= ELONGATED * np.minimum(heights, widths)
    digits = boxes[(heights >= FRAGMENT_HEIGHT * heights.max()) & compact]
    if len(digits) < 2:
        return mask
    height = float(np.median(digits[:, 1] - digits[:, 0]))
    top, bottom = digits[:, 0].min(), digits[:, 1].max()
    light, _ = _hysteresis_mask(seeds, cut, max(cut * HYSTERESIS_LOW, floor))
    light_labels, _ = ndimage.label(light, structure=SQUARE)
    found = mask
    for index, (rows, columns) in enumerate(ndimage.find_objects(light_labels), start=1):
        piece_height, piece_width = rows.stop - rows.start, columns.stop - columns.start
        digit_sized = (
            LIGHT_HEIGHTS[0] * height <= piece_height <= LIGHT_HEIGHTS[1] * height
            and LIGHT_WIDTHS[0] * piece_height <= piece_width <= LIGHT_WIDTHS[1] * piece_height
        )
        in_row = min(rows.stop, bottom) - max(rows.start, top) >= LIGHT_ROW * piece_height
        at_border = rows.start == 0 or columns.start == 0 or rows.stop == mask.shape[0] or columns.stop == mask.shape[1]
        # The gap to the nearest digit found, negative where they share columns. Fragments of the light digit, found
        # at the higher cut, may lie within it.
        gap = (np.maximum(columns.start, digits[:, 2]) - np.minimum(columns.stop, digits[:, 3])).min()
        beside = -LIGHT_SHARED * piece_width <= gap <= LIGHT_GAP * height
        if digit_sized and in_row and beside and not at_border:
            found = found | (light_labels == index)
    return found


def _plain_paper(contrast: np.ndarray, otsu: float, paper: float, steps: np.ndarray) -> tuple[float, np.ndarray]:
    """The paper's level and the steps between neighbours to measure its grain by, in a crop the size of a digit:
    a digit drawn to fill it leaves too little paper for the statistics of the whole crop (its edges outnumber the
    grain's steps; its ink may outnumber the paper, putting the median above Otsu's cut), so the steps, and the
    level where the median is above the cut, are taken from the pixels below it."""
    plain = contrast < otsu
    if paper >= otsu and plain.any():
        paper = float(_median(contrast[plain]))
    plain_steps = np.concatenate([
        (contrast[:, 1:] - contrast[:, :-1])[plain[:, 1:] & plain[:, :-1]],
        (contrast[1:] - contrast[:-1])[plain[1:] & plain[:-1]],
    ])
    return paper, plain_steps if plain_steps.size >= PLAIN_STEPS else steps


def _background(image: np.ndarray, window: int) -> np.ndarray:
    """The paper's level under each pixel of light ink on dark paper: a grey opening by `window` removes every light
    feature narrower than it (strokes) and follows what is wider (uneven light, shadows), mended where it is not the
    paper. Specks darker than the paper (salt grains on a scan, once the polarity is set) are the minimum
    of every window over them, so sparse ones cut window-sized holes into the opening, blocks of ink in the contrast:
    where the opening falls that far below its median, the opening of the 3x3 median, which has no holes, shifted down
    by its typical distance from the plain one (grain lifts it), fills the holes deeper than ink's least contrast,
    leaving the rest, and so the contrast's zero, as it was. A filled shape wider than the window is followed as
    paper and left a hollow ring (a 0): where the opening climbs FILLED_SHARE of the way to the ink inside the image,
    away from the border that shadows and dark corners reach, the level is the paper's, so the shape stays whole and
    is judged as the blot it is."""
    background = _opening(image, window)
    if background.min() < float(_median(background[::3, ::3].ravel())) - MIN_CONTRAST:
        lifted = _opening(_median_3x3(image), window)
        lifted -= float(_median((lifted - background)[::3].ravel()))
        background = np.where(lifted - background > MIN_CONTRAST, lifted, background)
    # The paper and the ink as the darkest tenth of the background and the brightest of the image (a shape may
    # cover half the image, a hot pixel outshine the ink).
    paper, ink = _quantile(background[::3, ::3], 0.1), _quantile(image[::3, ::3], 0.995)
    filled = background > paper + FILLED_SHARE * max(ink - paper, 0.0)
    if filled.any():
        background = np.where(_inner_pieces(filled), paper, background)
    return background


def _grown_by_own_strength(
    contrast: np.ndarray, strength: np.ndarray, top: float, mask: np.ndarray, pieces: tuple[np.ndarray, int],
    paper: float, low: float, floor: float,
) -> np.ndarray:
    """The mask with each piece fainter than the strongest ink (`top`, the most of `strength`) grown into pixels
    above a cut scaled to its own strength (`low` is the strongest's, `floor` the grain's): a lighter digit beside
    a dark one keeps its faint strokes instead of leaving a fragment behind. Specks, lines and growth that is a
    shadow spreading (too much of it, or out to the border) are left as they were."""
    labels, count = pieces
    if count < 2 or top <= paper:
        return mask
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    levels = np.zeros(len(areas))
    np.maximum.at(levels, labels[mask], strength[mask])
    boxes = ndimage.find_objects(labels)
    grown = mask
    for index in np.flatnonzero(areas >= SPECK_FRACTION * areas.max()):
        own_low = max(floor, paper + (low - paper) * (levels[index] - paper) / (top - paper))
        rows, columns = boxes[index - 1]
        height, width = rows.stop - rows.start, columns.stop - columns.start
        if own_low >= low or max(height, width) > ELONGATED * min(height, width):
            continue
        reach = max(height, width)
        window = (
            slice(max(0, rows.start - reach), rows.stop + reach),
            slice(max(0, columns.start - reach), columns.stop + reach),
        )
        region, _ = ndimage.label(contrast[window] > own_low, structure=SQUARE)
        # The piece lies wholly within one region: its pixels are all above `low`, and `low` > `own_low`.
        piece_rows, piece_columns = np.nonzero(labels[window] == index)
        added = region == region[piece_rows[0], piece_columns[0]]
        spreads = np.count_nonzero(added) > OWN_GROWTH * np.count_nonzero(added & mask[window])
        if spreads or _reaches_border(added, window, mask.shape):
            continue
        if grown is mask:
            grown = mask.copy()
        grown[window] |= added
    return grown


def _reaches_border(part: np.ndarray, window: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    """Whether a mask of the `window` of an image of `shape` has a pixel on the image's border."""
    rows, columns = ink_spans(part)
    return bool(
        window[0].start + rows[0] == 0 or window[1].start + columns[0] == 0
        or window[0].start + rows[-1] == shape[0] - 1 or window[1].start + columns[-1] == shape[1] - 1
    )


def _opening(image: np.ndarray, size: int) -> np.ndarray:
    """ndimage.grey_opening(image, size=(size, size), mode="nearest") as its four 1-D passes, without the
    general call's overhead (a third of its cost on a digit-sized image). Dilation shifts even windows."""
    shift = -1 if size % 2 == 0 else 0
    eroded = ndimage.minimum_filter1d(ndimage.minimum_filter1d(image, size, 0, mode="nearest"), size, 1, mode="nearest")
    opened = ndimage.maximum_filter1d(eroded, size, 0, mode="nearest", origin=shift)
    return ndimage.maximum_filter1d(opened, size, 1, mode="nearest", origin=shift)


def _median_3x3(image: np.ndarray) -> np.ndarray:
    """ndimage.median_filter(image, size=3) (edges mirrored), at half its cost: each column of three is
    sorted once, and a window's median is the median of its columns' largest low, middle median and
    smallest high."""
    padded = _pad_edges(image, 1)  # scipy mirrors the edge, which at one pixel repeats it
    above, middle, below = padded[:-2], padded[1:-1], padded[2:]
    low = np.minimum(np.minimum(above, below), middle)
    high = np.maximum(np.maximum(above, below), middle)
    mid = _median_of_three(above, middle, below)
    lows = np.maximum(np.maximum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    highs = np.minimum(np.minimum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    return _median_of_three(lows, _median_of_three(mid[:, :-2], mid[:, 1:-1], mid[:, 2:]), highs)


def _quantile(values: np.ndarray, share: float) -> float:
    """The value `share` of the way up the sorted values (np.quantile's lower value, by a partition)."""
    flat = values.ravel()
    index = min(len(flat) - 1, int(share * (len(flat) - 1)))
    return float(np.partition(flat, index)[index])


def _median_of_three(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold: the cut between two classes of values that maximises their between-class variance."""
    counts, edges = _histogram(values, 64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = counts.cumsum()
    mass = (counts * centres).cumsum()
    below, above = weight[:-1], weight[-1] - weight[:-1]
    valid = (below > 0) & (above > 0)
    if not valid.any():
        return float(edges[-1])
    mean_below = mass[:-1] / np.maximum(below, 1)
    mean_above = (mass[-1] - mass[:-1]) / np.maximum(above, 1)
    spread = np.where(valid, below * above * (mean_below - mean_above) ** 2, -1)
    return float(edges[1 + spread.argmax()])


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram's counts and edges for `bins` equal bins over the values' range, by one bincount: its
    general checks cost more than the counting on a digit-sized image."""
    low, high = float(values.min()), float(values.max())
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = np.arange(bins + 1) * ((high - low) / bins) + low  # np.linspace's own arithmetic, without its checks
    edges[-1] = high
    index = ((values.ravel() - low) * (bins / (high - low))).astype(np.intp)
    return np.bincount(np.minimum(index, bins - 1), minlength=bins), edges


def _hysteresis_mask(
    contrast: np.ndarray, high: float, low: float, seeds: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
    """Pixels above the cut `high` (in `seeds`, if given, else in `contrast`), grown into the fainter pixels
    (above `low`) connected to them, so a faded stroke stays whole while faint noise away from the strokes
    stays out. Also the mask's pieces (labels, numbered with gaps, and how many), which spare the speck
    removal labelling them again."""
    weak = contrast > low
    labels, count = ndimage.label(weak, structure=SQUARE)
    keep = np.zeros(count + 1, dtype=bool)
    keep[labels[(contrast if seeds is None else seeds) > high]] = True
    keep[0] = False
    mask = keep[labels]
    return mask, (labels * mask, int(np.count_nonzero(keep)))


def _without_lines_and_specks(mask: np.ndarray, pieces: tuple[np.ndarray, int] | None) -> np.ndarray:
    """The thresholded ink without ruled lines, specks and frames; `pieces` label the mask as it came, if known."""
    lined = _remove_ruled_lines(mask)
    return _keep_digit_components(lined, pieces if lined is mask else None)


def _remove_ruled_lines(mask: np.ndarray) -> np.ndarray:
    """Remove straight lines that run past the digit on both sides (ruled or squared paper, the edges of
    a frame or a sheet), then restore their pixels where a stroke crosses them. Only in images the size of
    a page or a photo: in one the size of a digit, a long straight stroke is the digit (a 1)."""
    if max(mask.shape) < LINED_PAGE_SIDE:
        return mask
    horizontal = _long_runs(mask, max(1, round(mask.shape[1] * LINE_SPAN)))
    vertical = _long_runs(mask.T, max(1, round(mask.shape[0] * LINE_SPAN))).T
    if not (horizontal.any() or vertical.any()):
        return mask
    rest = mask & ~(horizontal | vertical)
    labels, count = ndimage.label(rest, structure=SQUARE)
    if count == 0:
        return mask
    # The largest piece left is (part of) the digit; the corners of a frame are not.
    areas = np.bincount(labels.ravel())[1:]
    digit = labels == np.argmax(areas) + 1
    for lines, axis in ((horizontal, 0), (vertical, 1)):
        if not lines.any() or areas.max() < LINE_DIGIT_RATIO * _largest_area(lines):
            continue  # what is left is a scrap of a digit that is itself a line (a 1, a 7's bar)
        along, ink_along = np.flatnonzero(lines.any(axis=axis)), np.flatnonzero(digit.any(axis=axis))
        margin = 0.05 * mask.shape[1 - axis]
        if along[0] > ink_along[0] - margin or along[-1] < ink_along[-1] + margin:
            continue  # the digit's own bar (a 7's top, a 2's foot) reaches as far as the line does
        if len(along) < LINE_LENGTH_RATIO * len(ink_along):
            continue  # a stroke of a digit that fills the image (a 4's stem), not a ruled line
        thickness = int(np.ceil(lines.sum() / len(along)))
        across = (2 * thickness + 3, 1) if axis == 0 else (1, 2 * thickness + 3)
        mask = (mask & ~lines) | (lines & ndimage.binary_closing(rest, np.ones(across, dtype=bool)))
    return mask


def _long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """The pixels of horizontal runs at least `length` long: a binary opening by a 1 x length line, found
    from the runs' ends in time linear in the pixels (the opening itself costs `length` times more)."""
    height, width = mask.shape
    steps = np.diff(np.pad(mask, ((0, 0), (1, 1))).view(np.int8), axis=1)
    rows, starts = np.nonzero(steps == 1)
    ends = np.nonzero(steps == -1)[1]  # row-major order pairs each run's start with its end
    long = ends - starts >= length
    marks = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(marks, (rows[long], starts[long]), 1)
    np.add.at(marks, (rows[long], ends[long]), -1)
    return np.cumsum(marks, axis=1)[:, :width] > 0


def _without_stray_fragments(mask: np.ndarray) -> np.ndarray:
    """The mask without fragments (pieces under FRAGMENT_HEIGHT of the tallest piece) lying farther than
    STRAY_GAP of its height from every taller piece and from every fragment kept: a corner of a frame, a
    shadow's tip or a smudge away from the digit, which would shrink the digit in its crop. A digit's own
    broken strokes lie close to it, or to each other (the stem of a faint 4 below its broken-off top)."""
    if max(mask.shape) < LINED_PAGE_SIDE:
        return mask  # a crop the size of a digit holds the digit, its breaks included
    labels, count = ndimage.label(mask, structure=SQUARE)
    if count < 2:
        return mask
    boxes = _piece_boxes(labels)
    heights = boxes[:, 1] - boxes[:, 0]
    reached = heights >= FRAGMENT_HEIGHT * heights.max()
    reach = STRAY_GAP * heights.max()
    reached |= _in_digit_tall_clusters(boxes, reached, reach, FRAGMENT_HEIGHT * heights.max())
    # Outward from the taller pieces, a ring of fragments at a time, every gap of a ring at once.
    ring = reached.copy()
    while ring.any() and not reached.all():
        near = (_box_gaps(boxes[ring], boxes) <= reach).any(axis=0) & ~reached
        reached |= near
        ring = near
    return mask if reached.all() else mask & np.concatenate([[False], reached])[labels]


def _piece_boxes(labels: np.ndarray, count: int = 0) -> np.ndarray:
    """The boxes (rows of top, bottom, left, right; stops exclusive) of the labelled pieces 1.. (up to `count`, if
    given), a label no pixel carries boxed as all zeros."""
    found = ndimage.find_objects(labels, count)
    return np.array(
        [(box[0].start, box[0].stop, box[1].start, box[1].stop) if box else (0, 0, 0, 0) for box in found],
        dtype=np.int64,
    ).reshape(len(found), 4)


def chained(boxes: np.ndarray, link: float) -> np.ndarray:
    """Cluster labels of `boxes` (rows of top, bottom, left, right) chained to one another by gaps of at most `link`."""
    return connected_components(_box_gaps(boxes, boxes) <= link, directed=False)[1]


def _in_digit_tall_clusters(boxes: np.ndarray, digits: np.ndarray, reach: float, tall: float) -> np.ndarray:
    """Which of the `boxes` that are not `digits` are fragments that, chained to one another by gaps of at most
    `reach`, make up a cluster at least `tall` from its top to its bottom, lying mostly beside the digits (within
    their rows): a digit broken into pieces (a faint 5 in a number, each of its strokes apart), not dirt or the
    remains of a grid line, however far it lies from the digits beside it."""
    indices = np.flatnonzero(~digits)
    kept = np.zeros(len(boxes), dtype=bool)
    if len(indices) < 2:
        return kept
    cluster = chained(boxes[indices], reach)
    tops = np.full(cluster.max() + 1, np.inf)
    bottoms = np.zeros(cluster.max() + 1)
    np.minimum.at(tops, cluster, boxes[indices, 0])
    np.maximum.at(bottoms, cluster, boxes[indices, 1])
    beside = np.minimum(bottoms, boxes[digits, 1].max()) - np.maximum(tops, boxes[digits, 0].min())
    kept[indices] = ((bottoms - tops >= tall) & (beside >= (bottoms - tops) / 2))[cluster]
    return kept


def _box_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The gaps between each of the boxes `a` and each of `b` (rows of top, bottom, left, right; stops
    exclusive; 0 where they touch or overlap)."""
    down = np.maximum(0, np.maximum(a[:, None, 0], b[None, :, 0]) - np.minimum(a[:, None, 1], b[None, :, 1]))
    across = np.maximum(0, np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 3], b[None, :, 3]))
    return np.hypot(down, across)


def box_gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> float:
    """The gap between two boxes given as (rows, columns) slices, as ndimage.find_objects gives them (0 where
    they touch or overlap)."""
    corners = np.array([[box[0].start, box[0].stop, box[1].start, box[1].stop] for box in (a, b)])
    return float(_box_gaps(corners[:1], corners[1:])[0, 0])


def _border_pixels(image: np.ndarray) -> np.ndarray:
    """The image's outermost rows and columns, one after another (corners twice)."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=SQUARE)
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _largest_is_frame(mask: np.ndarray) -> bool:
    """Whether the largest piece of ink reaches the border and spans nearly all of the image both ways, as a
    frame does and a digit (even one cut tight, which spans only its height) does not."""
    if not _touches_border(mask):
        return False
    largest = _largest_piece(mask)
    return _runs_round(largest) and _spans_image(largest)


def _runs_round(piece: np.ndarray) -> bool:
    """Whether the piece runs along all four sides of the image, within BORDER_BAND of each, for FRAME_SIDE of each
    side's length, as a frame does and a bold digit filling its crop (touching the sides in places) does not."""
    band_rows, band_columns = max(2, round(BORDER_BAND * piece.shape[0])), max(2, round(BORDER_BAND * piece.shape[1]))
    sides = (
        piece[:band_rows].any(axis=0), piece[-band_rows:].any(axis=0),
        piece[:, :band_columns].any(axis=1), piece[:, -band_columns:].any(axis=1),
    )
    return all(side.mean() >= FRAME_SIDE for side in sides)


def _spans_image(ink: np.ndarray) -> bool:
    """Whether ink reaches the border and spans nearly all of the image both ways, as a frame does."""
    return _touches_border(ink) and all(_spans(ink))


def _runs_across(ink: np.ndarray) -> bool:
    """Whether ink reaches the border and spans nearly all of the image one way, as ruled lines do."""
    return _touches_border(ink) and any(_spans(ink))


def _spans(ink: np.ndarray) -> tuple[bool, bool]:
    """Whether the ink (not empty) spans FRAME_SPAN or more of the image down, and across."""
    rows, columns = ink_spans(ink)
    height, width = ink.shape
    return rows[-1] - rows[0] + 1 >= FRAME_SPAN * height, columns[-1] - columns[0] + 1 >= FRAME_SPAN * width


def _came_free(digit: np.ndarray, before: np.ndarray) -> bool:
    """Whether a stricter cut freed a digit from its frame: the piece no longer reaches the border and is still
    a digit's size (a digit cut tight, which only looked like a frame, would be left as scraps)."""
    rows = np.flatnonzero(digit.any(axis=1))
    return (
        not _touches_border(digit)
        and rows[-1] - rows[0] + 1 >= FREED_HEIGHT * before.shape[0]
        and digit.sum() >= FREED_SHARE * before.sum()
    )


def _at_border(labels: np.ndarray, count: int) -> np.ndarray:
    """Which of the labelled pieces (and the background, label 0) reach the image's border."""
    touching = np.zeros(count + 1, dtype=bool)
    touching[_border_pixels(labels)] = True
    return touching


def _inner_pieces(mask: np.ndarray) -> np.ndarray:
    """The ink of the pieces that do not reach the border."""
    labels, count = ndimage.label(mask, structure=SQUARE)
    touching = _at_border(labels, count)
    touching[0] = True
    return ~touching[labels]


def _largest_area(mask: np.ndarray) -> int:
    labels, count = ndimage.label(mask, structure=SQUARE)
    return int(np.bincount(labels.ravel())[1:].max()) if count else 0


def _keep_digit_components(mask: np.ndarray, pieces: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Drop specks, and pieces at the border that are larger than all the ink inside (a frame, the paper's
    edge, a shadow) when there is ink enough inside to be the digits. Digits cut tight stay: they touch
    the border but are no larger than their neighbours. `pieces`: the mask's labels and count, if known."""
    labels, count = pieces or ndimage.label(mask, structure=SQUARE)
    if count == 0 or (count == 1 and not _touches_border(mask)):
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    keep = areas >= SPECK_FRACTION * areas.max()
    keep[0] = False
    touching = _at_border(labels, len(areas) - 1)
    page = max(mask.shape) >= LINED_PAGE_SIDE
    fragments = _fragments_beside_digits(labels, areas, keep, touching) if page else np.zeros_like(keep)
    keep |= fragments
    inner = keep & ~touching
    # In an image the size of a digit (a scanner's crop), ink at the border is the digit cut tight, unless it
    # runs round the whole image, about ink inside: then it is the frame of a small plate.
    enough_inside = inner.any() and areas[inner].sum() >= FRAME_RATIO * areas[keep & touching].sum()
    if enough_inside and not page:
        for index in np.flatnonzero(keep & touching):
            keep[index] = not _spans_image(labels == index)
    elif enough_inside:
        boxes = ndimage.find_objects(labels)
        inside = [boxes[index - 1] for index in np.flatnonzero(inner)]
        inside_box = (
            slice(min(box[0].start for box in inside), max(box[0].stop for box in inside)),
            slice(min(box[1].start for box in inside), max(box[1].stop for box in inside)),
        )
        height = inside_box[0].stop - inside_box[0].start
        width = inside_box[1].stop - inside_box[1].start
        inside_area = areas[inner].sum()
        band_rows, band_columns = max(2, BORDER_BAND * mask.shape[0]), max(2, BORDER_BAND * mask.shape[1])
        few_inside = np.count_nonzero(inner) <= STUB_COMPANIONS
        for index in np.flatnonzero(keep & touching):
            rows, columns = boxes[index - 1]
            larger = rows.stop - rows.start > BORDER_GROWTH * height or columns.stop - columns.start > BORDER_GROWTH * width
            sliver = (
                rows.stop <= band_rows or rows.start >= mask.shape[0] - band_rows
                or columns.stop <= band_columns or columns.start >= mask.shape[1] - band_columns
            )
            # A smaller piece at the border far from the ink inside: a shadow's edge or a corner of light.
            apart = areas[index] < inside_area and box_gap(boxes[index - 1], inside_box) > STRAY_GAP * height
            stub = few_inside and _line_stub(boxes[index - 1], areas[index], mask.shape, (height, width))
            keep[index] = not (larger or sliver or apart or stub)
        keep &= (areas >= SPECK_FRACTION * areas[keep].max()) | fragments
    return keep[labels]


def _line_stub(box: tuple[slice, slice], area: int, shape: tuple[int, int], inside: tuple[int, int]) -> bool:
    """Whether a piece at the border (its box and pixel count, in an image of `shape`) runs in from a side as a bar:
    STUB_LENGTH times longer than its mean thickness, and at most STUB_SPAN of the ink inside's (height, width)
    across, as a ruled line's or a shadow edge's stub does; a digit cut at the border is thicker or wider."""
    rows, columns = box
    height, width = rows.stop - rows.start, columns.stop - columns.start
    from_side = (columns.start == 0 or columns.stop == shape[1]) and height <= STUB_SPAN * inside[0]
    from_end = (rows.start == 0 or rows.stop == shape[0]) and width <= STUB_SPAN * inside[1]
    return from_side and width * width >= STUB_LENGTH * area or from_end and height * height >= STUB_LENGTH * area


def _fragments_beside_digits(
    labels: np.ndarray, areas: np.ndarray, keep: np.ndarray, touching: np.ndarray
) -> np.ndarray:
    """Which pieces under SPECK_FRACTION of the largest are fragments of a digit in a row of digits, not specks:
    those within FRAGMENT_REACH of the digits' height from one of two or more digit-tall pieces inside the image, and
    at least SPECK_FRACTION of the smallest piece kept inside. A lighter digit beside bold ones breaks into pieces
    far smaller than the boldest digit (a faint 9's loop apart from its stem), which the speck rule alone dropped."""
    boxes = np.vstack([np.zeros((1, 4), dtype=np.int64), _piece_boxes(labels, len(areas) - 1)])
    heights = boxes[:, 1] - boxes[:, 0]
    inner = np.flatnonzero(keep & ~touching)
    fragments = np.zeros(len(areas), dtype=bool)
    if len(inner) < 2:
        return fragments
    tall = heights[inner].max()
    digits = inner[heights[inner] >= FRAGMENT_HEIGHT * tall]
    candidates = np.flatnonzero(~keep & ~touching & (areas >= SPECK_FRACTION * areas[inner].min()))
    if len(digits) < 2 or not len(candidates):
        return fragments
    fragments[candidates] = (_box_gaps(boxes[candidates], boxes[digits]) <= FRAGMENT_REACH * tall).any(axis=1)
    return fragments


def _fit_longer_side(crop: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is `side` pixels, keeping the aspect; area resampling when shrinking keeps thin strokes."""
    height, width = crop.shape
    scale = side / max(height, width)
    if scale == 1:
        return crop
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    rows = _resampling_weights(height, max(1, round(height * scale)), method)
    columns = _resampling_weights(width, max(1, round(width * scale)), method)
    return rows @ np.asarray(crop, dtype=np.float32) @ columns.T


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Paste into 28x28 with the ink's centre of mass at (14, 14), where MNIST's digits have theirs."""
    height, width = patch.shape
    total = patch.sum()
    centre_row = (patch.sum(axis=1) @ np.arange(height)) / total
    centre_column = (patch.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(MNIST_CENTRE - centre_row), 0), MNIST_SIDE - height)
    left = min(max(round(MNIST_CENTRE - centre_column), 0), MNIST_SIDE - width)
    canvas = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
    canvas[top : top + height, left : left + width] = np.round(np.minimum(patch, 255))
    return canvas


def load_digit(path: str | os.PathLike) -> np.ndarray:
    """Read and prepare one image file as answers read it (a big JPEG decoded small, `read_for_analysis`)."""
    return prepare_digit(read_for_analysis(path)[0])

