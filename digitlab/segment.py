"""Several digits in one image (a house number, a year, a postcode): find each digit, in reading order,
and prepare it exactly as `vision.prepare_digit` prepares a single one. Where a piece of ink may hold
touching digits, offer the ways of cutting it, and where a piece's faint strokes were left out, the piece with them;
the reader (`Predictor`) lets the model choose."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .cleanup import FRAGMENT_HEIGHT, STRAY_GAP
from .faint import FaintStrokes
from .pieces import SQUARE, box_gap, chained, ink_spans
from .vision import InkMap, find_ink, mnist_style_crop

# Only a piece at least this much wider than tall can hold touching digits (a wide 0 or 2 reaches 1.1).
SPLIT_ASPECT = 1.2
# A digit alone is split by this typical width for its height; pieces narrower than ONE_ASPECT are 1s.
DIGIT_ASPECT = 0.7
ONE_ASPECT = 0.4
# A narrower piece may still be two touching digits (a "49", a "58"): one at least this wide for its height, or
# TRY_WIDTH times its row's other digits (a "10" is narrower than its height), is also offered cut in two. A 1 run
# into a 7 is barely wider than one digit: at 1.3 times, the benchmark's numbers read 80.0%, at 1.15 80.2% (nothing
# lost on any set; at 1.0 the same).
TRY_ASPECT = 0.9
TRY_WIDTH = 1.15
# The cuts in two offered: the deepest minima of the ink profile, at least a stroke (CUT_APART of the
# height) from each other and from the piece's ends; few, since each costs a crop.
CUTS_TRIED = 3
CUT_APART = 0.1
# A cut between touching digits is looked for this fraction of a digit's width either side of where
# an even split would put it.
CUT_SEARCH = 0.35
# Two pieces sharing this share of the narrower one's columns, each at most STACK_PART of the height they span
# together, and that no taller than STACK_HEIGHT times the tallest piece, are one digit broken across.
STACKED, STACK_PART, STACK_HEIGHT = 0.5, 0.8, 1.2
# More pieces of ink than this are a texture, a halftone or noise, not a row of digits and their fragments:
# the image is read whole (joining that many pieces pairwise would take minutes).
MAX_PIECES = 64
# After a cut, pieces of a part with less than this fraction of its largest piece belong to the neighbour.
CUT_SCRAP = 0.2
# Two neighbours in a row sharing JOIN_COLUMNS of the narrower one's columns and JOIN_ROWS of the shorter one's rows
# are also offered joined: one digit broken side by side (a 0's two arcs, a 4 drawn in two strokes), which reads
# unsurely as two. On the benchmark: three images more read right (a "1907" whose 0 read "61", a "500", a lone 4 read
# "11"), none less; at JOIN_ROWS 0 a photo read as "91" (two pieces one above the other), at 0.5 the "500" was lost.
# JOIN_COLUMNS 0.15 reads the benchmark as 0.3 does and 80 (against 74) of 90 numbers with an MNIST digit broken along a
# slanted line; asking no shared columns at all, fourteen numbers were lost (neighbouring digits read joined).
JOIN_COLUMNS, JOIN_ROWS = 0.15, 0.3


@dataclass(frozen=True)
class DigitSegment:
    """One digit found in an image: its box (x0, y0, x1, y1; x1 and y1 exclusive) in the original image's
    pixels, and the 28x28 uint8 digit prepared the MNIST way, ready for the model; `faint` where it holds faint
    strokes grown back onto a piece of ink (`faint.FaintStrokes`)."""

    box: tuple[int, int, int, int]
    digit: np.ndarray
    faint: bool = False


@dataclass(frozen=True)
class InkPiece:
    """One piece of ink in reading order and the ways of reading it, each a tuple of digits: `ways[0]` is
    how its shape alone cuts it (whole, or by its width), the others are other cuts for a model to weigh; the last,
    where `ways[0]` is one digit and faint strokes the cut left out join it, that digit with them. Two pieces that
    may be one digit broken apart are one InkPiece: `ways[0]` holds both, another their join."""

    ways: tuple[tuple[DigitSegment, ...], ...]


def segment_digits(gray: np.ndarray) -> list[DigitSegment]:
    """The digits in a grayscale image in reading order (rows top to bottom, each left to right), cut by
    shape alone. One digit gives one segment, identical to `prepare_digit`'s answer; a blank image none."""
    return [digit for piece in read_digits(gray)[1] for digit in piece.ways[0]]


def read_digits(gray: np.ndarray) -> tuple[np.ndarray, list[InkPiece]]:
    """The whole image as one digit (exactly `prepare_digit`'s answer) and the pieces of ink found in it, from
    one ink analysis: a reader needs both, and finding the ink is the costly part."""
    found = find_ink(gray)
    whole = mnist_style_crop(found.ink, found.mask)
    return whole, _ink_pieces(found, gray.shape, whole)


def _ink_pieces(found: InkMap, shape: tuple[int, int], whole: np.ndarray) -> list[InkPiece]:
    labels, count = ndimage.label(found.mask, structure=SQUARE)
    if not 0 < count <= MAX_PIECES:
        return []
    rows = _reading_order(_merge_broken([_Piece.of(labels == index + 1) for index in range(count)]))
    # Other cuts are offered only beside other pieces of ink: a lone piece keeps its shape's cut (or is read whole),
    # since halves of a 4 or a wide 0 read surely as a 6 and a 1 or a 3, and halves of a shoe or a star as digits.
    others = sum(len(row) for row in rows) > 1
    ways = [way for row in rows for way in _row_ways(row, found.ink, others)]
    faint = FaintStrokes(found.ink, found.mask)
    grown = [_with_faint_strokes(piece_ways[0], faint) for piece_ways in ways]
    ways = [piece_ways + [[part]] if part else piece_ways for piece_ways, part in zip(ways, grown)]
    crops: dict[_Piece, DigitSegment] = {}
    if len(ways) == 1 and len(ways[0][0]) == 1:
        # One digit: exactly what prepare_digit gives, so the single-digit answer and `digits` agree. Its box
        # is all the ink's (specks far from the digit included, as in the crop), which a lone piece already has.
        piece = ways[0][0][0] if count == 1 else _Piece.of(found.mask)
        crops[ways[0][0][0]] = DigitSegment(_original_box(piece, found, shape), whole)
    for part in {part for piece_ways in ways for way in piece_ways for part in way} - crops.keys():
        crops[part] = DigitSegment(
            _original_box(part, found, shape), mnist_style_crop(found.ink, part.mask), faint=part in grown
        )
    return [InkPiece(tuple(tuple(crops[part] for part in way) for way in piece_ways)) for piece_ways in ways]


def _with_faint_strokes(way: list[_Piece], faint: FaintStrokes) -> _Piece | None:
    """A piece its shape reads as one digit (`way`, its first way) grown by the faint strokes joined to it, or None
    where it is cut, or has none."""
    if len(way) > 1:
        return None
    piece = way[0]
    grown = faint.grown(piece.mask, (piece.top, piece.bottom, piece.left, piece.right))
    return None if grown is None else _Piece.of(grown)


@dataclass(frozen=True, eq=False)
class _Piece:
    """A set of ink pixels (a full-size mask) and its bounding box at analysis resolution; equal only to
    itself, so two ways that share a part crop it once."""

    mask: np.ndarray
    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def of(cls, mask: np.ndarray) -> _Piece:
        rows, columns = ink_spans(mask)
        return cls(mask, int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def joined(self, other: _Piece) -> _Piece:
        return _Piece.of(self.mask | other.mask)


def _merge_broken(pieces: list[_Piece]) -> list[_Piece]:
    """Join each fragment (a piece much shorter than the tallest piece beside it: a 5's top bar, a broken
    stroke), largest first, to the piece it overlaps most in x, or else the nearest one; a lone fragment far
    from any piece is a speck of dirt and is dropped. Fragments may join each other: the halves of a faint 4
    that broke apart share their columns, and together stand as tall as a digit."""
    tallest = max(piece.height for piece in pieces)
    pieces = _joined_stacks(_joined_clusters(pieces, tallest), tallest)
    while True:
        fragments = [piece for piece in pieces if piece.height < FRAGMENT_HEIGHT * tallest]
        if not fragments:
            return pieces
        # The tallest piece is never a fragment, so others are always left to join.
        fragment = max(fragments, key=lambda piece: piece.height)
        pieces.remove(fragment)
        nearest = min(pieces, key=lambda piece: (-_overlap(fragment, piece), box_gap(fragment.box, piece.box)))
        if _overlap(fragment, nearest) > 0 or box_gap(fragment.box, nearest.box) <= STRAY_GAP * tallest:
            pieces[pieces.index(nearest)] = nearest.joined(fragment)


def _joined_clusters(pieces: list[_Piece], tallest: int) -> list[_Piece]:
    """The pieces with each cluster of fragments chained by gaps of at most STRAY_GAP of the tallest piece, and
    together at least FRAGMENT_HEIGHT of it from top to bottom and too narrow for two digits (SPLIT_ASPECT), joined
    into one: a digit broken into strokes (a faint 5 in a number), which joined one by one to their nearest
    neighbours made two half digits."""
    fragments = [piece for piece in pieces if piece.height < FRAGMENT_HEIGHT * tallest]
    if len(fragments) < 2:
        return list(pieces)
    boxes = np.array([(piece.top, piece.bottom, piece.left, piece.right) for piece in fragments])
    cluster = chained(boxes, STRAY_GAP * tallest)
    joined = [piece for piece in pieces if piece.height >= FRAGMENT_HEIGHT * tallest]
    for label in range(cluster.max() + 1):
        members = [fragment for fragment, own in zip(fragments, cluster) if own == label]
        whole = functools.reduce(_Piece.joined, members)
        one_digit = whole.height >= FRAGMENT_HEIGHT * tallest and whole.width < SPLIT_ASPECT * whole.height
        joined.extend([whole] if one_digit else members)
    return joined


def _joined_stacks(pieces: list[_Piece], tallest: int) -> list[_Piece]:
    """The pieces with any two that share STACKED of the narrower one's columns, each spanning at most
    STACK_PART of the rows they span together, and together no taller than STACK_HEIGHT times the tallest piece,
    joined: the halves of a digit broken across (a 3's two bowls, a 9 cut by a grid line), which digits side by
    side never are, even slanted into each other, nor digits in rows one above the other."""
    pieces = list(pieces)
    for a, b in itertools.combinations(pieces, 2):
        height = max(a.bottom, b.bottom) - min(a.top, b.top)
        stacked = max(a.height, b.height) <= STACK_PART * height
        if stacked and _overlap(a, b) >= STACKED * min(a.width, b.width) and height <= STACK_HEIGHT * tallest:
            pieces.remove(a)
            pieces.remove(b)
            return _joined_stacks([a.joined(b), *pieces], tallest)
    return pieces


def _overlap(a: _Piece, b: _Piece) -> int:
    """How many columns the two pieces share."""
    return max(0, min(a.right, b.right) - max(a.left, b.left))


def _reading_order(pieces: list[_Piece]) -> list[list[_Piece]]:
    """Rows top to bottom (a piece whose middle lies within a row's height joins it), each left to right."""
    rows: list[list[_Piece]] = []
    for piece in sorted(pieces, key=lambda piece: -piece.height):
        middle = (piece.top + piece.bottom) / 2
        row = next((row for row in rows if min(p.top for p in row) <= middle <= max(p.bottom for p in row)), None)
        if row is None:
            rows.append([piece])
        else:
            row.append(piece)
    rows.sort(key=lambda row: min(piece.top for piece in row))
    return [sorted(row, key=lambda piece: piece.left) for row in rows]


def _row_ways(row: list[_Piece], ink: np.ndarray, others: bool) -> list[list[list[_Piece]]]:
    """The ways of reading each piece of a row (`_ways`), left to right, where two uncut neighbours broken apart
    (`_broken_apart`) are one entry: read as they are, or joined."""
    ways = [_ways(piece, row, ink, others) for piece in row]
    found, index = [], 0
    while index < len(row):
        pair = row[index : index + 2]
        if len(pair) == 2 and ways[index] == [pair[:1]] and ways[index + 1] == [pair[1:]] and _broken_apart(*pair):
            found.append([pair, [pair[0].joined(pair[1])]])
            index += 2
        else:
            found.append(ways[index])
            index += 1
    return found


def _broken_apart(left: _Piece, right: _Piece) -> bool:
    """Whether two neighbours share JOIN_COLUMNS of the narrower one's columns and JOIN_ROWS of the shorter one's
    rows, as the halves of one digit do and digits side by side seldom do."""
    rows = min(left.bottom, right.bottom) - max(left.top, right.top)
    return (
        _overlap(left, right) >= JOIN_COLUMNS * min(left.width, right.width)
        and rows >= JOIN_ROWS * min(left.height, right.height)
    )


def _ways(piece: _Piece, row: list[_Piece], ink: np.ndarray, others: bool) -> list[list[_Piece]]:
    """The ways of cutting a piece into digits. First the one its shape suggests: whole, or, when it is too
    wide for one digit, as many digits as its width holds (measured against the other digits of its row, or
    a typical digit's shape when it is alone), cut where the ink is thinnest near even spacing; a piece cut in two
    so is also offered whole. Then, with `others` (other pieces of ink in the image), for a piece wide enough to
    hold touching digits, one digit more or fewer and other cuts in two, and in three where a part of a cut in two
    is wide enough for two."""
    height = max(other.height for other in row)
    # Widths of the row's other digits, leaving out 1s, which are no guide to the others.
    widths = [other.width for other in row if other is not piece and other.width >= ONE_ASPECT * height]
    typical = float(np.median(widths)) if widths else None
    # Never wider than a typical digit: when every piece of the row holds touching digits (a "20" and a
    # "01"), the other pieces' widths are those of pairs.
    expected = DIGIT_ASPECT * height if typical is None else min(typical, DIGIT_ASPECT * height)
    count = round(piece.width / expected) if piece.width >= SPLIT_ASPECT * height else 1
    wide = piece.width >= TRY_ASPECT * height or (typical is not None and piece.width >= TRY_WIDTH * typical)
    if count < 2 and not (others and wide):
        return [[piece]]
    profile = (ink * piece.mask)[:, piece.left : piece.right].sum(axis=0)
    cut_ways = [_even_cuts(profile, count)] if count >= 2 else [[]]
    # A piece its width takes for two digits is also offered whole: one wide digit (a 5's long bar, a 2's long foot, a
    # 4 written wide), alone or beside others.
    if count == 2:
        cut_ways.append([])
    if others and wide:
        apart = round(CUT_APART * height)
        deepest = _deepest_cuts(profile, apart)
        cut_ways += [[cut] for cut in deepest]
        # A part of a cut in two still TRY_ASPECT wide (a "559" cut after its first 5) is offered cut again.
        for cut in deepest:
            for start, stop in ((0, cut), (cut, len(profile))):
                if stop - start >= TRY_ASPECT * height:
                    cut_ways += [sorted([cut, start + inner]) for inner in _deepest_cuts(profile[start:stop], apart)]
        # Two or three digits are cut at the profile's minima above; as many as the width holds, one more or one
        # fewer also evenly, each at least two columns wide (a speck of a few pixels has no room for more cuts).
        cut_ways += [_even_cuts(profile, other) for other in (count - 1, count + 1) if 2 < other <= piece.width / 2]
    ways, seen = [], set()
    for cuts in cut_ways:
        parts = _cut(piece, cuts, height)
        boxes = tuple((part.left, part.top, part.right, part.bottom) for part in parts)
        if boxes not in seen:
            seen.add(boxes)
            ways.append(parts)
    return ways


def _even_cuts(profile: np.ndarray, count: int) -> list[int]:
    """Cuts into `count` digits, each at the column with the least ink near where an even split puts it."""
    step = len(profile) / count
    cuts = []
    for index in range(1, count):
        expected_cut = round(index * step)
        low = max(1, round(expected_cut - CUT_SEARCH * step))
        high = min(len(profile) - 1, round(expected_cut + CUT_SEARCH * step))
        cuts.append(low + int(np.argmin(profile[low : high + 1])))
    return cuts


def _deepest_cuts(profile: np.ndarray, apart: int) -> list[int]:
    """Up to CUTS_TRIED columns where the ink profile has a minimum, thinnest first, `apart` from each other
    and from the ends: where two touching digits meet, wherever along the piece that is."""
    apart = max(apart, 1)
    floor = ndimage.minimum_filter1d(profile, 2 * apart + 1, mode="nearest")
    minima = [column for column in range(apart, len(profile) - apart) if profile[column] == floor[column]]
    cuts: list[int] = []
    for column in sorted(minima, key=lambda column: profile[column]):
        if len(cuts) < CUTS_TRIED and all(abs(column - cut) >= apart for cut in cuts):
            cuts.append(column)
    return cuts


def _cut(piece: _Piece, cuts: list[int], height: int) -> list[_Piece]:
    """The piece cut straight down at the given columns (counted from its left)."""
    if not cuts:
        return [piece]
    parts = []
    for start, stop in zip([0, *cuts], [*cuts, piece.width]):
        part = np.zeros_like(piece.mask)
        part[:, piece.left + start : piece.left + stop] = piece.mask[:, piece.left + start : piece.left + stop]
        # Bits of the neighbour's strokes that the straight cut took along stay with the neighbour.
        labels, count = ndimage.label(part, structure=SQUARE)
        if count:
            areas = np.bincount(labels.ravel())
            areas[0] = 0
            parts.append(_Piece.of(np.isin(labels, np.flatnonzero(areas >= CUT_SCRAP * areas.max()))))
    # A cut that leaves a sliver (the tip of a stroke) undoes itself: the sliver rejoins its neighbour.
    while len(parts) > 1 and min(part.height for part in parts) < FRAGMENT_HEIGHT * height:
        index = min(range(len(parts)), key=lambda index: parts[index].height)
        sliver = parts.pop(index)
        neighbour = max(index - 1, 0)
        parts[neighbour] = parts[neighbour].joined(sliver)
    return parts if len(parts) > 1 else [piece]


def _original_box(piece: _Piece, found: InkMap, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The piece's box in the original image's pixels (analysis ran on a copy `found.scale` times the size,
    perhaps turned to set a sheet upright: then the box holds the piece's turned-back corners)."""
    height, width = shape
    corners = np.array([[x, y] for x in (piece.left, piece.right) for y in (piece.top, piece.bottom)], dtype=float)
    corners = found.unturned(corners) / found.scale
    (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
    return max(0, int(left)), max(0, int(top)), min(width, math.ceil(right)), min(height, math.ceil(bottom))
