"""Tests for digitlab.segment: numbers composed from real MNIST test digits and rendered in a real font,
read by the shipped model."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from digitlab.cleanup import SPECK_FRACTION
from digitlab.decode import decode_image
from digitlab.modelfile import load_model
from digitlab.predict import SURE_CONFIDENCE, Predictor
from digitlab.segment import read_digits, segment_digits
from digitlab.vision import find_ink, prepare_digit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from number_probes import broken, faded, widened  # noqa: E402  (the benchmark's own distortions)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def read(predictor: Predictor, gray: np.ndarray) -> str:
    segments = segment_digits(gray)
    if not segments:
        return ""
    digits = np.stack([segment.digit for segment in segments])
    return "".join(str(digit) for digit in predictor.predict_proba_prepared(digits).argmax(axis=1))


def ink_columns(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit cropped to the columns holding ink."""
    columns = np.flatnonzero(digit.max(axis=0) > 0)
    return digit[:, columns[0] : columns[-1] + 1]


def number_on_paper(
    digits: list[np.ndarray], gap: int | list[int], enlarge: int = 4
) -> tuple[np.ndarray, list[int]]:
    """MNIST digits side by side `gap` pixels apart (negative: overlapping; one gap for all, or one per pair of
    neighbours), enlarged and written in dark ink on grey-white paper; also where each digit starts, in the
    returned image's pixels."""
    tiles = [ink_columns(digit) for digit in digits]
    gaps = [gap] * (len(tiles) - 1) if isinstance(gap, int) else gap
    width = 12 + sum(tile.shape[1] for tile in tiles) + sum(gaps)
    canvas = np.zeros((28, width), dtype=np.uint8)
    starts, left = [], 6
    for tile, gap in zip(tiles, [*gaps, 0]):
        region = canvas[:, left : left + tile.shape[1]]
        np.maximum(region, tile, out=region)
        starts.append(left)
        left += tile.shape[1] + gap
    canvas = np.pad(canvas, 6)
    large = Image.fromarray(canvas).resize((canvas.shape[1] * enlarge, canvas.shape[0] * enlarge), Image.Resampling.BILINEAR)
    paper = 232 - np.asarray(large).astype(int) * 190 // 255
    return paper.astype(np.uint8), [(start + 6) * enlarge for start in starts]


def rendered(text: str, size: int) -> np.ndarray:
    """`text` in DejaVu Sans (bundled with matplotlib), dark grey on light paper."""
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    image = Image.new("L", (size * len(text) + 2 * size, 2 * size), 240)
    ImageDraw.Draw(image).text((size, size // 3), text, font=font, fill=30)
    return np.asarray(image)


# Test digits the shipped model reads right on their own, so a wrong number can only come from segmentation.
NUMBER = [3, 2, 1, 18, 4, 8]  # indices of MNIST test digits: 0, 1, 2, 3, 4, 5


def test_blank_page_has_no_digits():
    assert segment_digits(np.full((200, 300), 220, dtype=np.uint8)) == []


def test_one_digit_gives_one_segment_identical_to_prepare_digit(mnist_test):
    paper, _ = number_on_paper([mnist_test[0][0]], gap=0)
    segments = segment_digits(paper)
    assert len(segments) == 1
    np.testing.assert_array_equal(segments[0].digit, prepare_digit(paper))


@pytest.mark.parametrize("gap", [8, 2], ids=["apart", "close"])
def test_read_digits_gives_prepare_digits_answer_beside_the_segments(mnist_test, gap):
    paper, _ = number_on_paper([mnist_test[0][index] for index in NUMBER], gap=gap)
    whole, pieces = read_digits(paper)
    np.testing.assert_array_equal(whole, prepare_digit(paper))
    assert [segment.box for piece in pieces for segment in piece.ways[0]] == [
        segment.box for segment in segment_digits(paper)
    ]


@pytest.mark.parametrize("gap", [8, 2], ids=["apart", "close"])
def test_mnist_digits_are_read_in_order(mnist_test, predictor, gap):
    images, labels = mnist_test
    paper, starts = number_on_paper([images[index] for index in NUMBER], gap=gap)
    assert read(predictor, paper) == "".join(str(labels[index]) for index in NUMBER)
    boxes = [segment.box for segment in segment_digits(paper)]
    assert [box[0] for box in boxes] == sorted(box[0] for box in boxes)
    for (x0, y0, x1, y1), start in zip(boxes, starts):
        assert abs(x0 - start) <= 8 and 0 <= y0 < y1 <= paper.shape[0] and x1 <= paper.shape[1]


@pytest.mark.parametrize("pair", [(3, 3), (30, 4)], ids=["00", "34"])
def test_touching_digits_are_split(mnist_test, predictor, pair):
    images, labels = mnist_test
    paper, _ = number_on_paper([images[index] for index in pair], gap=-1)  # strokes run into each other
    assert ndimage.label(find_ink(paper).mask, structure=np.ones((3, 3)))[1] == 1  # one piece of ink
    assert read(predictor, paper) == "".join(str(labels[index]) for index in pair)


@pytest.mark.parametrize("overlap", [2, 4])
def test_three_touching_digits_of_uneven_widths_are_split(mnist_test, predictor, overlap):
    # A "120" in one piece beside a 4: cut evenly in three, the narrow 1 is lost; cut at the deepest column, one
    # part still holds two digits and is cut again at its own.
    images, labels = mnist_test
    assert labels[[4, 2, 1, 3]].tolist() == [4, 1, 2, 0]
    paper, _ = number_on_paper([images[index] for index in (4, 2, 1, 3)], gap=[12, -overlap, -overlap])
    assert predictor.answer([("number", paper)])[0]["number"] == "4120"


@pytest.mark.parametrize(
    "number", [(4, 14, 3), (1, 19, 12), (1, 2, 17)], ids=["4 and 10", "2 and 49", "2 and 17"]
)
def test_touching_digits_too_narrow_to_split_by_shape_are_cut_where_the_model_reads_them(
    mnist_test, predictor, number
):
    # The touching pair is narrower than SPLIT_ASPECT times its height: its shape alone leaves it whole, and
    # only reading the ways of cutting it finds its two digits.
    images, labels = mnist_test
    paper, _ = number_on_paper([images[index] for index in number], gap=[8, -1])
    assert ndimage.label(find_ink(paper).mask, structure=np.ones((3, 3)))[1] == 2  # a digit, and a touching pair
    assert len(segment_digits(paper)) == 2
    answer = predictor.answer([("number", paper)])[0]
    assert answer["number"] == "".join(str(labels[index]) for index in number)
    assert [entry["box"][0] for entry in answer["digits"]] == sorted(entry["box"][0] for entry in answer["digits"])


@pytest.mark.parametrize("one", [14, 31, 37])
def test_a_one_run_into_a_seven_is_cut(mnist_test, predictor, one):
    # A 7 and a 1 touching make a piece barely wider than the row's other digits (a 0 and a 4): it is offered cut.
    images, labels = mnist_test
    indices = [3, 4, 0, one]
    assert labels[indices].tolist() == [0, 4, 7, 1]
    paper, _ = number_on_paper([images[index] for index in indices], gap=[8, 8, -2])
    assert ndimage.label(find_ink(paper).mask, structure=np.ones((3, 3)))[1] == 3  # the 0, the 4 and "71"
    assert predictor.answer([("number", paper)])[0]["number"] == "0471"


def test_a_number_with_a_digit_under_the_bar_is_no_number(mnist_test):
    images, labels = mnist_test
    paper, _ = number_on_paper([images[1], images[0]], gap=8)
    model = load_model()
    answer = Predictor(model).answer([("number", paper)])[0]
    assert answer["number"] == f"{labels[1]}{labels[0]}"
    least_sure = min(entry["confidence"] for entry in answer["digits"])
    model.calibration["reject_threshold"] = least_sure + 1e-6
    stricter = Predictor(model).answer([("number", paper)])[0]
    assert stricter["number"] is None
    assert any("below the" in (entry["reason"] or "") for entry in stricter["digits"])
    assert [entry["box"] for entry in stricter["digits"]] == [entry["box"] for entry in answer["digits"]]


def test_one_unsure_digit_among_sure_ones_is_still_read(mnist_test):
    images, labels = mnist_test
    paper, _ = number_on_paper([images[1], images[0], images[2]], gap=8)
    model = load_model()
    answer = Predictor(model).answer([("number", paper)])[0]
    assert answer["number"] == f"{labels[1]}{labels[0]}{labels[2]}"
    least_sure, *others = sorted(entry["confidence"] for entry in answer["digits"])
    assert min(others) >= SURE_CONFIDENCE
    model.calibration["reject_threshold"] = least_sure + 1e-6
    vouched = Predictor(model).answer([("number", paper)])[0]
    assert vouched["number"] == answer["number"]
    assert all(entry["reason"] is None for entry in vouched["digits"])


def test_enough_sure_digits_vouch_for_an_unsure_one_though_another_is_only_fairly_sure(mnist_test):
    images, labels = mnist_test
    indices = [1, 8, 0, 18]  # a 2, a 5 and a 3 the model reads only fairly surely, a 7
    paper, _ = number_on_paper([images[index] for index in indices], gap=8)
    model = load_model()
    answer = Predictor(model).answer([("number", paper)])[0]
    assert answer["number"] == "".join(str(labels[index]) for index in indices)
    least_sure, fairly_sure, *sure = sorted(entry["confidence"] for entry in answer["digits"])
    assert fairly_sure < SURE_CONFIDENCE <= min(sure) and len(sure) == 2
    model.calibration["reject_threshold"] = least_sure + 1e-6
    vouched = Predictor(model).answer([("number", paper)])[0]
    assert vouched["number"] == answer["number"]


def test_ones_do_not_vouch_for_an_unsure_digit(mnist_test):
    # Stripes, trouser legs and letters' stems read as sure 1s: beside them, an unsure digit stays unread.
    images, labels = mnist_test
    assert labels[[18, 2, 5]].tolist() == [3, 1, 1]
    paper, _ = number_on_paper([images[18], images[2], images[5]], gap=8)
    model = load_model()
    answer = Predictor(model).answer([("number", paper)])[0]
    assert answer["number"] == "311"
    model.calibration["reject_threshold"] = answer["digits"][0]["confidence"] + 1e-6
    assert min(entry["confidence"] for entry in answer["digits"][1:]) >= model.calibration["reject_threshold"]
    stricter = Predictor(model).answer([("number", paper)])[0]
    assert stricter["number"] is None
    assert "below the" in stricter["digits"][0]["reason"]


@pytest.mark.parametrize("index", [72, 53, 34, 13])
def test_a_digit_as_wide_as_two_is_read_whole(mnist_test, predictor, index):
    # A 2 with a long foot, a 5 with a long bar, a 0 drawn wide: its width says two digits, its reading says one.
    images, labels = mnist_test
    paper, _ = number_on_paper([widened(images[index], 1.9), images[3], images[4]], gap=10)
    assert predictor.answer([("number", paper)])[0]["number"] == f"{labels[index]}04"


@pytest.mark.parametrize("index, slope", [(3, 0.5), (4, 1.0), (19, 2.0), (42, 0.5)])
def test_a_digit_broken_in_two_side_by_side_is_read_joined(mnist_test, predictor, index, slope):
    # A pen skipping along a slanted line leaves two pieces that share columns and rows, each read unsurely.
    images, labels = mnist_test
    digit = broken(images[index], slope)
    assert ndimage.label(digit > 60, structure=np.ones((3, 3)))[1] >= 2
    paper, _ = number_on_paper([images[0], digit, images[4]], gap=10)
    assert predictor.answer([("number", paper)])[0]["number"] == f"{labels[0]}{labels[index]}{labels[4]}"


@pytest.mark.parametrize("index", [9, 12, 17, 23, 50], ids=["9", "9b", "7", "5", "6"])
def test_a_digit_half_drawn_faintly_is_read_whole_in_a_number_and_alone(mnist_test, predictor, index):
    # A 9's loop, a 7's bar, a 5's top or a 6's loop drawn at under a third of the rest's ink: the cut keeps only the
    # strong half, which read as a 7, a 1, a 7 and a 1.
    images, labels = mnist_test
    digit = faded(images[index], labels[index] in (5, 7, 9), 0.3)
    number, _ = number_on_paper([images[3], digit, images[4]], gap=10)
    alone, _ = number_on_paper([digit], gap=0)
    answers = predictor.answer([("number", number), ("alone", alone)])
    assert answers[0]["number"] == f"{labels[3]}{labels[index]}{labels[4]}"
    assert answers[1]["digit"] == labels[index] and "number" not in answers[1]


def test_a_lone_digit_slanted_as_wide_as_two_is_read_whole(mnist_test, predictor):
    # A 7 slanted far: its width says two digits ("12"), its whole reads more surely than the two together.
    images, labels = mnist_test
    slanted = Image.fromarray(images[97]).transform(
        (50, 28), Image.Transform.AFFINE, (1, 0.8, -22.4, 0, 1, 0), Image.Resampling.BILINEAR
    )
    paper, _ = number_on_paper([np.asarray(slanted)], gap=0)
    answer = predictor.answer([("digit", paper)])[0]
    assert "number" not in answer and answer["digit"] == labels[97] == 7


def test_a_mark_off_the_row_that_is_no_digit_leaves_the_number_read(mnist_test, predictor):
    # Glare across a board above a number: a solid band, no digit, over a row of surely read digits.
    images, labels = mnist_test
    indices = [1, 3, 4]
    paper, _ = number_on_paper([images[index] for index in indices], gap=8)
    band_top = np.full((100, paper.shape[1]), 232, dtype=np.uint8)
    band_top[20:85, 30:-30] = 90
    page = np.vstack([band_top, paper])
    answer = predictor.answer([("number", page)])[0]
    assert answer["number"] == "".join(str(labels[index]) for index in indices)
    assert all(entry["box"][1] >= band_top.shape[0] for entry in answer["digits"])


def test_a_fragment_of_a_light_digit_beside_bold_ones_is_kept(mnist_test):
    # A light digit in a row of bold ones breaks into pieces far smaller than a bold digit (a faint 9's loop off its
    # stem), which the speck rule alone dropped: a piece of stroke just above the 1 stays.
    images, labels = mnist_test
    assert labels[[3, 2, 10]].tolist() == [0, 1, 0]
    bold = [ndimage.grey_dilation(images[index], size=(3, 3)) for index in (3, 10)]
    one = images[2]
    top = np.flatnonzero(one.max(axis=1))[0]
    left = np.flatnonzero(one[top])[0]
    marked = one.copy()
    marked[top - 3 : top - 1, left : left + 2] = 255
    plain, _ = number_on_paper([bold[0], one, bold[1]], gap=10)
    paper, _ = number_on_paper([bold[0], marked, bold[1]], gap=10)
    fragment = plain.astype(int) - paper.astype(int) > 60
    mask = find_ink(paper).mask
    largest = np.bincount(ndimage.label(mask, structure=np.ones((3, 3)))[0].ravel())[1:].max()
    assert np.count_nonzero(fragment) < SPECK_FRACTION * largest
    assert mask[fragment].mean() > 0.8


def test_a_texture_of_many_pieces_is_not_read_as_a_number(predictor):
    # A halftone or dotted texture holds thousands of pieces of ink: no row of digits, and not minutes of joining.
    page = np.full((400, 400), 240, dtype=np.uint8)
    for row in range(4, 400, 12):
        for column in range(4 + row % 24 // 2, 400, 12):
            page[row : row + 4, column : column + 3] = 30
    assert read_digits(page)[1] == []
    assert "digits" not in predictor.answer([("dots", page)])[0]


@pytest.mark.parametrize("start, bend, width", [((40, 100), 80, 12), ((40, 100), 90, 14), ((50, 100), 100, 16), ((50, 110), 100, 12)])
def test_a_tick_mark_is_no_number(predictor, start, bend, width):
    # One stroke bent into a tick: cut at the bend, each arm reads surely as a 1, and it was read as "11".
    image = Image.new("L", (300, 220), 235)
    ImageDraw.Draw(image).line([start, (bend, 160), (190, 50)], fill=50, width=width, joint="curve")
    answer = predictor.answer([("tick", np.asarray(image))])[0]
    assert answer.get("number") is None and answer["digit"] is None


@pytest.mark.parametrize("index", [40, 111, 113, 198, 273])
def test_a_lone_digit_broken_across_is_no_number(mnist_test, predictor, index):
    # A pen skipping across a digit's middle leaves its top above its foot: read apart they looked surer than the
    # whole (a 9 as "171", a 7 as "71"), but digits of a number stand in a row, side by side, not one above another.
    images, labels = mnist_test
    digit = images[index].astype(np.float32) / 255
    rows = np.flatnonzero(digit.max(axis=1) > 0.3)
    cut = rows[0] + int(0.45 * (rows[-1] - rows[0]))
    digit[cut : cut + 2] = 0
    large = Image.fromarray((digit * 255).astype(np.uint8)).resize((168, 168), Image.Resampling.BILINEAR)
    paper = np.full((260, 240), 235.0)
    paper[40:208, 36:204] -= 180 * np.asarray(large, dtype=np.float32) / 255
    answer = predictor.answer([("photo", np.clip(paper, 0, 255).astype(np.uint8))])[0]
    assert answer.get("number") is None and answer["digit"] == labels[index]


def test_a_broken_stroke_stays_one_digit(mnist_test, predictor):
    images, labels = mnist_test
    seven = images[0].copy()
    seven[12:14] = 0  # a gap across the 7's stem, as a skipping pen leaves
    paper, _ = number_on_paper([images[2], seven], gap=8)
    assert read(predictor, paper) == "17"


@pytest.mark.parametrize("index", [6, 19])
def test_a_digit_broken_in_pieces_each_short_of_a_digit_is_kept_and_read_whole(mnist_test, predictor, index):
    # A 4 broken across its middle falls into pieces each under half the 1's height: its top lies near the 1, its
    # stem beyond a stray fragment's reach of it, but close to the top. Both stay, and join as one digit.
    images, labels = mnist_test
    four = images[index].copy()
    assert labels[index] == 4
    rows = np.flatnonzero(four.max(axis=1) > 0)
    middle = (rows[0] + rows[-1]) // 2
    four[middle - 1 : middle + 2] = 0
    paper, _ = number_on_paper([images[2], four], gap=8)
    assert read(predictor, paper) == "14"


def test_a_digit_broken_into_short_strokes_far_from_its_neighbours_is_kept_and_read_whole(mnist_test, predictor):
    # A 0 broken into four arcs, each under half a digit's height and each farther from the 1 and the 2 beside it
    # than a stray fragment may lie: chained to one another, the arcs stand as tall as a digit, so they are one.
    images, labels = mnist_test
    zero = images[3].copy()
    assert labels[3] == 0
    zero[13:15] = 0
    zero[:, 13:15] = 0
    paper, _ = number_on_paper([images[2], zero, images[1]], gap=12)
    assert read(predictor, paper) == "102"


def test_a_tall_digit_broken_across_its_middle_is_one_digit(mnist_test, predictor):
    # A 3 written taller than the 1 and the 2 beside it and broken across its waist: each bowl is over half the
    # others' height, no fragment, yet the two share their columns one above the other, as digits never do.
    images, labels = mnist_test
    assert labels[30] == 3
    rows = np.flatnonzero(images[30].max(axis=1) > 0)
    tall = np.asarray(Image.fromarray(images[30][rows[0] : rows[-1] + 1]).resize((28, 23), Image.Resampling.BILINEAR))
    three = np.zeros((28, 28), dtype=np.uint8)
    three[2:25] = tall
    three[13] = 0
    paper, _ = number_on_paper([images[2], three, images[1]], gap=8)
    assert read(predictor, paper) == "132"


@pytest.mark.parametrize("pair", [(0, 4), (2, 8)], ids=["74", "15"])
def test_a_lighter_digit_beside_a_dark_one_keeps_its_faint_strokes(mnist_test, predictor, pair):
    # The second digit written lightly, its lower half lighter still: cut by the dark digit's strength, its
    # lower half falls away and what is left passes for a fragment of its neighbour.
    images, labels = mnist_test
    light = images[pair[1]].astype(float)
    light[:14] *= 0.55
    light[14:] *= 0.3
    paper, _ = number_on_paper([images[pair[0]], light.astype(np.uint8)], gap=8)
    assert read(predictor, paper) == "".join(str(labels[index]) for index in pair)


@pytest.mark.parametrize("share", [0.45, 0.4])
def test_a_digit_written_more_lightly_than_the_rest_of_its_row_is_read(mnist_test, predictor, share):
    # The last digit of a number at under half the others' ink (a pen running dry) never reaches the cut set by the
    # strongest ink, yet it stands in the row as tall and wide as a digit.
    images, labels = mnist_test
    assert labels[[18, 4, 3]].tolist() == [3, 4, 0]
    light = (images[3] * share).astype(np.uint8)
    paper, _ = number_on_paper([images[18], images[4], light], gap=10)
    assert read(predictor, paper) == "340"


def test_a_light_digit_whose_darkest_stroke_reached_the_cut_is_read_whole(mnist_test, predictor):
    # Only the top of the light 0 reaches the cut at half the strongest ink: that fragment is found first, and the
    # digit sought at the lower cut takes it in instead of passing for ink already found.
    images, labels = mnist_test
    light = (images[3] * 0.35).astype(np.uint8)
    top = np.flatnonzero(images[3].max(axis=1))[0]
    light[top : top + 3] = images[3][top : top + 3]
    paper, _ = number_on_paper([images[18], images[4], light], gap=10)
    assert read(predictor, paper) == "340"


@pytest.mark.parametrize("text, size", [("2024", 40), ("314159", 64), ("57", 120)])
def test_rendered_numbers_are_read(predictor, text, size):
    assert read(predictor, rendered(text, size)) == text


def test_two_rows_are_read_top_row_first(predictor):
    top, bottom = rendered("12", 60), rendered("34", 60)
    assert read(predictor, np.concatenate([top, bottom])) == "1234"


def test_boxes_are_in_the_original_image_pixels(predictor):
    # A 12-megapixel photo is analysed on a copy of 512 pixels; boxes must still land on the digits.
    small = rendered("47", 200)
    photo = np.full((3000, 4000), 240, dtype=np.uint8)
    photo[1000 : 1000 + small.shape[0], 1500 : 1500 + small.shape[1]] = small
    segments = segment_digits(photo)
    assert read(predictor, photo) == "47"
    for segment in segments:
        x0, y0, x1, y1 = segment.box
        assert 1500 <= x0 < x1 <= 1500 + small.shape[1] + 10 and 1000 <= y0 < y1 <= 1000 + small.shape[0] + 10
        assert (photo[y0:y1, x0:x1] < 128).any()


def test_boxes_of_a_big_jpeg_decoded_small_are_in_its_full_pixels(predictor):
    # The photo's bytes are decoded at a quarter of its size; the boxes are those found in the full decode.
    small = rendered("47", 200)
    photo = np.full((3000, 4000), 240, dtype=np.uint8)
    photo[1000 : 1000 + small.shape[0], 1500 : 1500 + small.shape[1]] = small
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=90)
    (answer,) = predictor.answer([("photo.jpg", buffer.getvalue())])
    assert answer["number"] == "47"
    for entry, segment in zip(answer["digits"], segment_digits(decode_image(buffer.getvalue()))):
        assert np.abs(np.subtract(entry["box"], segment.box)).max() <= 8  # a pixel of the quarter-size decode
