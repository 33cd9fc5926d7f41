"""Faint strokes the ink's cut left out: a 9's loop drawn lightly beside its stem, a hairline of a calligraphic font,
a 5's thin bar above its bold bowl. The cut is set by the strongest ink of the image, so such a stroke is lost and
the rest reads as another digit (a 1, most often); grown back from the piece it belongs to, the digit reads whole."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .filters import median
from .pieces import SQUARE, touches_border

# A piece grows into pixels whose 3x3 mean (grain averages out there, a stroke keeps its level) lies this share of the
# way from the paper to the piece's own median ink. On the benchmark with the shipped model, against 0.15: at 0.1
# grain and grid lines grew on (3 numbers, 2 photos and 3 hairline fonts fewer read right), at 0.2 lighter loops
# were missed (1 number, 1 photo on a desk, 1 font fewer).
FAINT_SHARE = 0.15
# ... within this many of the piece's heights round its box, which holds the rest of a digit the piece is a part of
# (a 5's bowl is half of its height); growth that reaches the window's edge is a line or a shadow, not a stroke. At 1.5
# heights, against 1: 2 photos on a desk fewer read right, 1 font more.
FAINT_REACH = 1.0
# Growth by less than this share of the piece is its strokes' edges, which the crop keeps anyway; by more than
# FAINT_GROWTH times it, grain or a shadow spreading (on the benchmark, 6 read the same as 3).
FAINT_LEAST, FAINT_GROWTH = 0.1, 3.0
# Other pieces, grown by this many pixels, are kept out: a neighbour's strokes are not this piece's, nor is the paper
# measured there.
NEIGHBOUR_MARGIN = 2


class FaintStrokes:
    """One image's light-on-black contrast (`ink`) and its ink's mask, ready to grow pieces of the ink into the faint
    strokes joined to them."""

    def __init__(self, ink: np.ndarray, mask: np.ndarray):
        self.ink = ink
        # Every piece's pixels and those within NEIGHBOUR_MARGIN of them: no paper, and but for a piece's own, its
        # neighbours'. Grown once for the image, since the windows round its pieces overlap.
        self.near = ndimage.binary_dilation(mask, SQUARE, NEIGHBOUR_MARGIN)

    def grown(self, piece: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        """The `piece` (a mask of the ink, `box` its top, bottom, left and right) grown into the faint strokes joined
        to it, or None where there are none, or the growth is no stroke."""
        top, bottom, left, right = box
        reach = round(FAINT_REACH * (bottom - top))
        window = slice(max(0, top - reach), bottom + reach), slice(max(0, left - reach), right + reach)
        near = self.near[window]
        if near.all():
            return None
        own, contrast = piece[window], self.ink[window]
        inner = (top - window[0].start, bottom - window[0].start, left - window[1].start, right - window[1].start)
        paper, level = float(median(contrast[~near])), float(median(contrast[own]))
        cut = paper + FAINT_SHARE * (level - paper)
        neighbours = near & ~_dilated(own, inner, NEIGHBOUR_MARGIN)
        labels, _ = ndimage.label((ndimage.uniform_filter(contrast, 3) > cut) & ~neighbours | own, structure=SQUARE)
        grown = np.isin(labels, np.unique(labels[own]))
        # The mean reaches a pixel past every stroke's edge, which the crop keeps anyway.
        added = np.count_nonzero(grown & ~_dilated(own, inner, 1)) / np.count_nonzero(own)
        if touches_border(grown) or not FAINT_LEAST <= added <= FAINT_GROWTH:
            return None
        found = np.zeros_like(piece)
        found[window] = grown
        return found


def _dilated(mask: np.ndarray, box: tuple[int, int, int, int], steps: int) -> np.ndarray:
    """The mask, whose pixels lie within `box` (top, bottom, left, right), grown by `steps` pixels every way: grown
    within the box and its margin alone, a small part of the window round it."""
    top, bottom, left, right = max(0, box[0] - steps), box[1] + steps, max(0, box[2] - steps), box[3] + steps
    found = np.zeros_like(mask)
    found[top:bottom, left:right] = ndimage.binary_dilation(mask[top:bottom, left:right], SQUARE, steps)
    return found
