"""What is ink but not the digit, taken away: specks, ruled and grid lines, frames, shadows and stubs at the
border, and stray fragments."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .filters import square_opening
from .pieces import (
    LINED_PAGE_SIDE,
    SQUARE,
    border_pixels,
    box_gap,
    box_gaps,
    chained,
    ink_spans,
    inner_pieces,
    labels_at_border,
    largest_area,
    largest_piece,
    piece_boxes,
    touches_border,
    widest_stroke,
)

# A piece at the border spanning FRAME_SPAN of the image both ways, and running along every side (within
# BORDER_BAND of it) for FRAME_SIDE of the side's length, is a frame (perhaps with the digit joined to it by
# fainter ink).
FRAME_SPAN, FRAME_SIDE = 0.85, 0.8
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
# Lines joined to a digit are opened away on a page by squares up to this share of the boldest stroke wide; what the
# opening takes away is lines when at most LINE_BOLD_SHARE of it outlasts an opening twice as wide.
LINE_OPENING, LINE_BOLD_SHARE = 0.4, 0.15


def without_border_shadows(mask: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """The mask of a page without pieces at the border that run along it for SHADOW_CONTACT of the ink inside's size
    or more and are fainter than that ink (under SHADOW_LEVEL of its median contrast): a shadow's corner or edge, lit
    paper's rim. A digit cut at the border meets it only with its strokes' ends, and a photo's shapes at its border
    are as strong as what lies inside (dropping those left a shape inside that read as a digit)."""
    if max(mask.shape) < LINED_PAGE_SIDE:
        return mask
    labels, count = ndimage.label(mask, structure=SQUARE)
    touching = labels_at_border(labels, count)
    at_border, inside = np.flatnonzero(touching[1:]) + 1, np.flatnonzero(~touching[1:]) + 1
    if not len(at_border) or not 0 < len(inside) <= STUB_COMPANIONS:
        return mask
    ink = mask & ~touching[labels]
    rows, columns = ink_spans(ink)
    size = max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1)
    contact = np.bincount(border_pixels(labels), minlength=count + 1)
    level = SHADOW_LEVEL * float(np.median(contrast[ink]))
    boxes = ndimage.find_objects(labels)
    shadows = [
        index for index in at_border[contact[at_border] >= SHADOW_CONTACT * size]
        if np.median(contrast[boxes[index - 1]][labels[boxes[index - 1]] == index]) < level
    ]
    return mask & ~np.isin(labels, shadows) if shadows else mask


def freed_from_lines(mask: np.ndarray) -> np.ndarray | None:
    """The digit freed from lines joined to it (a house-number plate's frame, a squared sheet's grid, ruled lines
    at a tilt the long runs miss), or None. Lines thinner than the strokes part from them under an opening; on a
    page, openings up to LINE_OPENING of the boldest stroke are tried, the narrowest first (a bold marker digit on
    a grid of lines several pixels wide). The first that frees a digit-sized piece decides, and it stands only if
    what it takes away (with the pieces still at the border) spans the image as a frame does, or on a page reaches
    the border and runs across the image one way as ruled lines do; and, beyond the finest lines, is lines: little
    of it is bold enough to outlast an opening twice as wide (the rest of a photo's shapes is)."""
    page = max(mask.shape) >= LINED_PAGE_SIDE
    widest = max(2, int(LINE_OPENING * widest_stroke(mask))) if page else 2
    for size in range(2, widest + 1):
        opened = without_lines_and_specks(square_opening(mask, size), None)
        if opened.any() and came_free(largest_piece(opened), mask):
            break
    else:
        return None
    # The opening also rounds the digit's own corners and thin ends; regrowth within the ink by as many pixels as it
    # took gives them back without reaching along the lines.
    freed = mask & ndimage.maximum_filter(inner_pieces(opened), size=2 * size - 1, mode="constant")
    taken = mask & ~freed
    if not (_spans_image(taken) or page and _runs_across(taken)):
        return None
    if size > 2 and np.count_nonzero(square_opening(taken, 2 * size)) > LINE_BOLD_SHARE * np.count_nonzero(taken):
        return None
    return freed


def without_lines_and_specks(mask: np.ndarray, pieces: tuple[np.ndarray, int] | None) -> np.ndarray:
    """The thresholded ink without ruled lines, specks and frames; `pieces` label the mask as it came, if known."""
    lined = _remove_ruled_lines(mask)
    return keep_digit_components(lined, pieces if lined is mask else None)


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
        if not lines.any() or areas.max() < LINE_DIGIT_RATIO * largest_area(lines):
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


def without_stray_fragments(mask: np.ndarray) -> np.ndarray:
    """The mask without fragments (pieces under FRAGMENT_HEIGHT of the tallest piece) lying farther than
    STRAY_GAP of its height from every taller piece and from every fragment kept: a corner of a frame, a
    shadow's tip or a smudge away from the digit, which would shrink the digit in its crop. A digit's own
    broken strokes lie close to it, or to each other (the stem of a faint 4 below its broken-off top)."""
    if max(mask.shape) < LINED_PAGE_SIDE:
        return mask  # a crop the size of a digit holds the digit, its breaks included
    labels, count = ndimage.label(mask, structure=SQUARE)
    if count < 2:
        return mask
    boxes = piece_boxes(labels)
    heights = boxes[:, 1] - boxes[:, 0]
    reached = heights >= FRAGMENT_HEIGHT * heights.max()
    reach = STRAY_GAP * heights.max()
    reached |= _in_digit_tall_clusters(boxes, reached, reach, FRAGMENT_HEIGHT * heights.max())
    # Outward from the taller pieces, a ring of fragments at a time, every gap of a ring at once.
    ring = reached.copy()
    while ring.any() and not reached.all():
        near = (box_gaps(boxes[ring], boxes) <= reach).any(axis=0) & ~reached
        reached |= near
        ring = near
    return mask if reached.all() else mask & np.concatenate([[False], reached])[labels]


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


def largest_is_frame(mask: np.ndarray) -> bool:
    """Whether the largest piece of ink reaches the border and spans nearly all of the image both ways, as a
    frame does and a digit (even one cut tight, which spans only its height) does not."""
    if not touches_border(mask):
        return False
    largest = largest_piece(mask)
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
    return touches_border(ink) and all(_spans(ink))


def _runs_across(ink: np.ndarray) -> bool:
    """Whether ink reaches the border and spans nearly all of the image one way, as ruled lines do."""
    return touches_border(ink) and any(_spans(ink))


def _spans(ink: np.ndarray) -> tuple[bool, bool]:
    """Whether the ink (not empty) spans FRAME_SPAN or more of the image down, and across."""
    rows, columns = ink_spans(ink)
    height, width = ink.shape
    return rows[-1] - rows[0] + 1 >= FRAME_SPAN * height, columns[-1] - columns[0] + 1 >= FRAME_SPAN * width


def came_free(digit: np.ndarray, before: np.ndarray) -> bool:
    """Whether a stricter cut or an opening freed a digit from its frame or lines: the piece no longer reaches the
    border and is still a digit's size (a digit cut tight, which only looked like a frame, would be left as scraps)."""
    rows = np.flatnonzero(digit.any(axis=1))
    return (
        not touches_border(digit)
        and rows[-1] - rows[0] + 1 >= FREED_HEIGHT * before.shape[0]
        and digit.sum() >= FREED_SHARE * before.sum()
    )


def keep_digit_components(mask: np.ndarray, pieces: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Drop specks, and pieces at the border that are larger than all the ink inside (a frame, the paper's
    edge, a shadow) when there is ink enough inside to be the digits. Digits cut tight stay: they touch
    the border but are no larger than their neighbours. `pieces`: the mask's labels and count, if known."""
    labels, count = pieces or ndimage.label(mask, structure=SQUARE)
    if count == 0 or (count == 1 and not touches_border(mask)):
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    keep = areas >= SPECK_FRACTION * areas.max()
    keep[0] = False
    touching = labels_at_border(labels, len(areas) - 1)
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
    boxes = np.vstack([np.zeros((1, 4), dtype=np.int64), piece_boxes(labels, len(areas) - 1)])
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
    fragments[candidates] = (box_gaps(boxes[candidates], boxes[digits]) <= FRAGMENT_REACH * tall).any(axis=1)
    return fragments
