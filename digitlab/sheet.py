"""A sheet, sticky note or board photographed on a desk or wall: found by its light or its edges, the desk
around it painted over, and the sheet turned upright."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image
from scipy import ndimage, spatial

from .filters import otsu_cut, resampling_weights, resize
from .pieces import CROSS, LINED_PAGE_SIDE, SQUARE, border_pixels, ink_spans, largest_piece

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


def sheet_alone(image: np.ndarray) -> tuple[np.ndarray, float, tuple[slice, slice]] | None:
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
        resampling_weights(*sizes, Image.Resampling.BILINEAR) for sizes in zip(coarse.shape, image.shape)
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


def sheet_in_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float, tuple[slice, slice]] | None:
    """As `sheet_alone`, for a sheet that the ink found in `image` makes out: its largest piece is light paper
    with the writing as its holes (more paper than a stroke is wide, four-cornered), not a digit. None otherwise.
    Most photos show a digit, not such a sheet: they are told apart on the piece's box, so the cost stays small."""
    if min(image.shape) < LINED_PAGE_SIDE or not mask.any():
        return None
    piece = largest_piece(mask)
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
    return (resize(image, scale) if scale < 1 else image), scale


def _coarse_mask(mask: np.ndarray, scale: float, share: float) -> np.ndarray:
    """A mask on the coarse copy: the coarse pixels more than `share` of which the mask covers."""
    return resize(mask.astype(np.float32), scale) > share if scale < 1 else mask


def _find_sheet(coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """On a coarse copy of a photo: the sheet lying on a darker desk (from a coarse pixel in from its edge,
    where the edge's blur and shadow lie), the paper of it (without the ink), and its tilt; None if there is
    none. The sheet is the largest light region, holes filled, or where light falling across the desk joins
    that to the desk or a shadow splits it, the region its edges close round; it must pass every check below."""
    light = coarse > otsu_cut(coarse)
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
    border = border_pixels(sheet)
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
