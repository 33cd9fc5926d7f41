"""Images in, MNIST-style digits out: the one preprocessing path shared by train, evaluate, predict and serve."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .cleanup import (
    came_free,
    freed_from_lines,
    keep_digit_components,
    largest_is_frame,
    without_border_shadows,
    without_lines_and_specks,
    without_stray_fragments,
)
from .decode import ANALYSIS_SIDE, read_for_analysis
from .errors import ImageError
from .filters import median, quantile, resampling_weights, resize, sparse_median_filter
from .pieces import LINED_PAGE_SIDE, border_pixels, count_pieces, ink_spans, largest_piece, touches_border
from .sheet import sheet_alone, sheet_in_mask
from .threshold import BACKGROUND_FRACTION, cut_ink, hysteresis_mask

MNIST_SIDE = 28
# MNIST fitted each digit's longer side to 20 pixels and centred its mass in the 28x28 field
# (index 14.0 in both axes, measured on the test set).
INK_BOX = 20
MNIST_CENTRE = 14.0
# The strokes are stretched to full white from the level PEAK_SHARE of their pixels reach, where the brightest
# pixels are specks outshining it by more than 1 / SPECK_OUTSHINES; else from their brightest.
PEAK_SHARE, SPECK_OUTSHINES = 0.98, 0.95
# Ink fainter than this (of 255, after stretching) is anti-aliasing or paper noise, not the digit's extent.
INK_THRESHOLD = 8
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
# A digit joined to a frame round it (cleanup.largest_is_frame) by fainter ink comes free at a stricter lower cut of
# the hysteresis: these multiples of the cut are tried in turn.
STRICTER_THRESHOLDS = (0.7, 1.0, 1.25, 1.5, 1.75, 2.0)


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
        image = resize(image, scale)
        stages.append(("analysis copy", image))
    border = border_pixels(image)
    if border.max() <= INK_THRESHOLD or border.min() >= 255 - INK_THRESHOLD:
        # A clean digit (MNIST itself, a drawing on a blank canvas): the border says the polarity and
        # there is no light to flatten, so only specks need removing. This keeps MNIST as it is, and fast.
        if max(image.shape) > CLEAN_SIDE:
            # A drawing on a blank canvas needs no analysis at full size: a fifth of a 280-pixel canvas is
            # still far more than the 20 pixels the digit ends as.
            scale *= CLEAN_SIDE / max(image.shape)
            image = resize(image, CLEAN_SIDE / max(image.shape))
            stages.append(("analysis copy", image))
        ground = float(median(border))
        ink = np.maximum(image - ground if border.max() <= INK_THRESHOLD else ground - image, 0)
        # Stretched to full range first, so even the faintest ink on a plain ground counts.
        peak = float(ink.max())
        ink = ink * (255 / peak) if peak > 0 else ink
        stages.append(("light ink on black", ink))
        mask = keep_digit_components(ink > 0)
        stages.append(("specks removed", mask))
        return InkMap(ink, mask, scale, tuple(stages))
    turn = 0.0
    sheet = sheet_alone(image)
    if sheet is None:
        # No sheet stood out from the desk by its light, yet the light ink found may be one: a sheet whose light
        # falls off across the desk, found once the background is flattened, with the writing as its holes.
        contrast, mask = _ink_on_paper(image, stages)
        sheet = sheet_in_mask(image, mask)
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
    contrast, threshold, thresholded, mask = cut_ink(image)
    if 0 <= lean < CLEAR_LEAN:
        # Pixels leaning only a little towards light ink may be a bold dark digit cropped tight, its ink near
        # half the image. Read as dark ink too, the reading whose ink holds together in fewer pieces wins:
        # a digit is one or two strokes, while the paper round a bold digit falls apart into corners and
        # counters. (Ties keep the light reading: a light digit on a dark plate leans as little.)
        dark = cut_ink(255 - image)
        if 0 < count_pieces(dark[3]) < count_pieces(mask) or not mask.any() and dark[3].any():
            image, (contrast, threshold, thresholded, mask) = 255 - image, dark
    stages.append(("light ink on dark", image))
    stages.append(("background removed", contrast))
    stages.append(("thresholded", thresholded))
    stages.append(("cleaned", mask))
    for factor in STRICTER_THRESHOLDS:
        if not largest_is_frame(mask):
            break
        # A digit joined to a frame around it by fainter ink comes apart at a stricter cut.
        stricter = without_lines_and_specks(*hysteresis_mask(contrast, threshold * max(factor, 1), threshold * factor))
        if stricter.any() and came_free(largest_piece(stricter), mask):
            mask = stricter
            stages.append((f"stricter cut x{factor:g}", mask))
    if touches_border(mask) and touches_border(largest_piece(mask)):
        freed = freed_from_lines(mask)
        if freed is not None:
            mask = freed
            stages.append(("lines opened", mask))
    unshaded = without_border_shadows(mask, contrast)
    if unshaded is not mask:
        mask = unshaded
        stages.append(("shadows at the border dropped", mask))
    kept = without_stray_fragments(mask)
    if kept is not mask:
        mask = kept
        stages.append(("stray bits dropped", mask))
    return contrast, mask


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
    brightest, strokes = float(values.max()), quantile(values, PEAK_SHARE)
    return strokes if strokes < SPECK_OUTSHINES * brightest else brightest


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


def _ink_lean(image: np.ndarray) -> float:
    """Ink is the minority that stands out from its surroundings: after removing the slowly varying
    background, the pixel values lean towards the ink's side. Their skewness (third moment over the spread
    cubed) has the ink's sign: positive for light ink, negative for dark."""
    scale = POLARITY_SIDE / max(image.shape)
    coarse = resize(image, scale) if scale < 1 else image
    size = max(3, round(min(coarse.shape) * BACKGROUND_FRACTION))
    grid = sparse_median_filter(coarse, size)
    # Pillow's bilinear enlargement of the grid to the image's size, as the product of its two passes.
    rows, columns = (resampling_weights(*sizes, Image.Resampling.BILINEAR) for sizes in zip(grid.shape, image.shape))
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
    middle = (quantile(image, 0.1) + quantile(image, 0.9)) / 2
    dark_ground = float(np.mean(corners < middle))
    if dark_ground >= CORNER_GROUND:
        return CLEAR_LEAN
    if 1 - dark_ground >= CORNER_GROUND:
        return -CLEAR_LEAN
    return lean


def _fit_longer_side(crop: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is `side` pixels, keeping the aspect; area resampling when shrinking keeps thin strokes."""
    height, width = crop.shape
    scale = side / max(height, width)
    if scale == 1:
        return crop
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    rows = resampling_weights(height, max(1, round(height * scale)), method)
    columns = resampling_weights(width, max(1, round(width * scale)), method)
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
