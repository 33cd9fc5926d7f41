"""Masks of ink as pieces: their spans, boxes, gaps and sizes, and where they meet the image's border."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import connected_components

# An image at least this many pixels both ways is a page or a photo, where ruled lines, grain and sheets are sought;
# a smaller one is a digit's own crop, where a long straight stroke is the digit itself.
LINED_PAGE_SIDE = 64
# Pieces are 8-connected; a few operations grow by the 4-connected cross.
SQUARE = np.ones((3, 3), dtype=bool)
CROSS = ndimage.generate_binary_structure(2, 1)


def ink_spans(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows and the columns that hold any of the mask, in order."""
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def count_pieces(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=SQUARE)[1]


def widest_stroke(mask: np.ndarray) -> float:
    """Twice the largest distance from any ink pixel to the paper: the width of the boldest stroke."""
    return 2 * float(ndimage.distance_transform_edt(mask).max()) if mask.any() else 0.0


def piece_boxes(labels: np.ndarray, count: int = 0) -> np.ndarray:
    """The boxes (rows of top, bottom, left, right; stops exclusive) of the labelled pieces 1.. (up to `count`, if
    given), a label no pixel carries boxed as all zeros."""
    found = ndimage.find_objects(labels, count)
    return np.array(
        [(box[0].start, box[0].stop, box[1].start, box[1].stop) if box else (0, 0, 0, 0) for box in found],
        dtype=np.int64,
    ).reshape(len(found), 4)


def chained(boxes: np.ndarray, link: float) -> np.ndarray:
    """Cluster labels of `boxes` (rows of top, bottom, left, right) chained to one another by gaps of at most `link`."""
    return connected_components(box_gaps(boxes, boxes) <= link, directed=False)[1]


def box_gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The gaps between each of the boxes `a` and each of `b` (rows of top, bottom, left, right; stops
    exclusive; 0 where they touch or overlap)."""
    down = np.maximum(0, np.maximum(a[:, None, 0], b[None, :, 0]) - np.minimum(a[:, None, 1], b[None, :, 1]))
    across = np.maximum(0, np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 3], b[None, :, 3]))
    return np.hypot(down, across)


def box_gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> float:
    """The gap between two boxes given as (rows, columns) slices, as ndimage.find_objects gives them (0 where
    they touch or overlap)."""
    corners = np.array([[box[0].start, box[0].stop, box[1].start, box[1].stop] for box in (a, b)])
    return float(box_gaps(corners[:1], corners[1:])[0, 0])


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The image's outermost rows and columns, one after another (corners twice)."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def largest_piece(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=SQUARE)
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def labels_at_border(labels: np.ndarray, count: int) -> np.ndarray:
    """Which of the labelled pieces (and the background, label 0) reach the image's border."""
    touching = np.zeros(count + 1, dtype=bool)
    touching[border_pixels(labels)] = True
    return touching


def inner_pieces(mask: np.ndarray) -> np.ndarray:
    """The ink of the pieces that do not reach the border."""
    labels, count = ndimage.label(mask, structure=SQUARE)
    touching = labels_at_border(labels, count)
    touching[0] = True
    return ~touching[labels]


def largest_area(mask: np.ndarray) -> int:
    labels, count = ndimage.label(mask, structure=SQUARE)
    return int(np.bincount(labels.ravel())[1:].max()) if count else 0
