"""The cut between ink and paper: the paper's uneven light flattened, a cut set by the ink's strength and the
paper's grain, and hysteresis that keeps faint strokes joined to clear ones."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .cleanup import FRAGMENT_HEIGHT, SPECK_FRACTION, without_lines_and_specks
from .filters import median, median_3x3, opening, otsu_cut, quantile
from .pieces import LINED_PAGE_SIDE, SQUARE, ink_spans, inner_pieces, piece_boxes, widest_stroke

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


def cut_ink(image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Light ink's contrast over the paper, the cut, the thresholded mask and the mask cleaned of specks
    and ruled lines."""
    window = max(3, round(min(image.shape) * BACKGROUND_FRACTION))
    contrast, threshold, (mask, pieces) = _threshold(image, window)
    # In a digit-sized image (a form's box, scanned), strokes nearly as wide as the window (a bold digit
    # cropped tight) partly pass for paper, so the cut finds them narrower than they are: the window widens
    # until it clears the widest of them. Photos and pages keep theirs, which their shadows need.
    side = min(image.shape)
    while max(image.shape) < LINED_PAGE_SIDE and window < side and widest_stroke(mask) > BOLD_SHARE * window:
        window = min(side, round(window * WINDOW_GROWTH))
        contrast, threshold, (mask, pieces) = _threshold(image, window)
    return contrast, threshold, mask, without_lines_and_specks(mask, pieces)


def _threshold(image: np.ndarray, window: int) -> tuple[np.ndarray, float, tuple]:
    """Ink's contrast over the paper (`_background`), the cut and the hysteresis mask."""
    contrast = image - _background(image, window)
    # Otsu's cut, but never within the paper's own grain: its spread is measured robustly (ink edges are
    # the minority) on differences of neighbouring pixels, which slow changes of light do not affect.
    # Every third row is plenty for these robust statistics, at a third of the cost.
    sample = contrast[::3]
    paper = float(median(sample.ravel()))
    steps = (sample[:, 1:] - sample[:, :-1]).ravel()
    otsu = otsu_cut(contrast)
    if max(image.shape) < LINED_PAGE_SIDE:
        paper, steps = _plain_paper(contrast, otsu, paper, steps)
    noise = 1.4826 * float(median(np.abs(steps - median(steps)))) / np.sqrt(2) if steps.size else 0.0
    # How strongly the digit stands out: the brightest contrast after a 3x3 median, which a hot pixel or a
    # speck of JPEG debris cannot set but a pen stroke two pixels wide can.
    strength = median_3x3(contrast)
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
    mask, pieces = hysteresis_mask(contrast, threshold, low, seeds)
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
    boxes = piece_boxes(labels)
    if len(boxes) < 2:
        return mask
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    compact = np.maximum(heights, widths) <= ELONGATED * np.minimum(heights, widths)
    digits = boxes[(heights >= FRAGMENT_HEIGHT * heights.max()) & compact]
    if len(digits) < 2:
        return mask
    height = float(np.median(digits[:, 1] - digits[:, 0]))
    top, bottom = digits[:, 0].min(), digits[:, 1].max()
    light, _ = hysteresis_mask(seeds, cut, max(cut * HYSTERESIS_LOW, floor))
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
        paper = float(median(contrast[plain]))
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
    background = opening(image, window)
    if background.min() < float(median(background[::3, ::3].ravel())) - MIN_CONTRAST:
        lifted = opening(median_3x3(image), window)
        lifted -= float(median((lifted - background)[::3].ravel()))
        background = np.where(lifted - background > MIN_CONTRAST, lifted, background)
    # The paper and the ink as the darkest tenth of the background and the brightest of the image (a shape may
    # cover half the image, a hot pixel outshine the ink).
    paper, ink = quantile(background[::3, ::3], 0.1), quantile(image[::3, ::3], 0.995)
    filled = background > paper + FILLED_SHARE * max(ink - paper, 0.0)
    if filled.any():
        background = np.where(inner_pieces(filled), paper, background)
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


def hysteresis_mask(
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
