"""Tests for digitlab.faint: faint strokes grown back onto the piece of ink they belong to, and marks that are not."""

from __future__ import annotations

import numpy as np

from digitlab.faint import FaintStrokes

STEM, FAINT = 200.0, 60.0


def page_with_stem() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Light-on-black contrast of a grainy page with one strong vertical stroke, its mask and its box."""
    ink = np.random.default_rng(0).normal(10, 3, size=(200, 200))
    ink[60:140, 118:124] = STEM
    mask = ink > STEM / 2
    return ink, mask, (60, 140, 118, 124)


def test_a_light_loop_joined_to_a_stem_is_grown_back():
    # A 9 whose loop was drawn lightly: the cut kept only the stem.
    ink, mask, box = page_with_stem()
    rows, columns = np.mgrid[:200, :200]
    loop = np.abs(np.hypot(rows - 80, columns - 103) - 17) < 2.5
    ink[loop] = FAINT
    grown = FaintStrokes(ink, mask).grown(mask, box)
    assert grown is not None and grown[mask].all()
    assert np.count_nonzero(grown & loop) > 0.9 * np.count_nonzero(loop & ~mask)


def test_a_stroke_with_nothing_faint_beside_it_is_left_as_it_is():
    ink, mask, box = page_with_stem()
    assert FaintStrokes(ink, mask).grown(mask, box) is None


def test_a_faint_line_running_on_past_the_stroke_is_no_stroke():
    # A ruled line crossing the stem runs out of the window round it: a line, not a part of the digit.
    ink, mask, box = page_with_stem()
    ink[100:102] = np.maximum(ink[100:102], FAINT)
    assert FaintStrokes(ink, mask).grown(mask, box) is None


def test_a_neighbours_strokes_are_never_taken():
    # A second digit close by, joined to the stem by a faint smear: the smear may grow on, the neighbour may not.
    ink, mask, box = page_with_stem()
    ink[60:140, 140:146] = STEM
    ink[95:99, 124:140] = FAINT
    mask = ink > STEM / 2
    piece = mask.copy()
    piece[:, 130:] = False
    grown = FaintStrokes(ink, mask).grown(piece, box)
    assert grown is not None and grown[96, 124:136].all() and not (grown & mask & ~piece).any()
