"""Tests for digitlab.vision: real MNIST digits, and photos, scans and pages made from them, prepared the MNIST way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from PIL import Image, ImageFilter

from digitlab.decode import ANALYSIS_SIDE, read_for_analysis, read_image
from digitlab.errors import ImageError
from digitlab.segment import segment_digits
from digitlab.vision import find_ink, load_digit, prepare_digit, preprocess_stages, stages_image


# ---- prepare_digit ----

def test_light_background_is_inverted(paper, digit):
    np.testing.assert_array_equal(prepare_digit(paper), digit)


def test_mnist_digits_come_through_nearly_unchanged(mnist_test):
    """MNIST is already cropped, fitted to 20 pixels and centred by mass, so preparing it is close to a no-op."""
    images = mnist_test[0][:500]
    prepared = np.stack([prepare_digit(image) for image in images])
    assert prepared.dtype == np.uint8
    identical = np.mean([(a == b).all() for a, b in zip(prepared, images)])
    assert identical > 0.8
    assert np.abs(prepared.astype(int) - images).mean() < 0.1


def test_small_off_centre_digit_on_paper_is_cropped_scaled_and_centred(mnist_test):
    digit = mnist_test[0][0]  # a 7
    rows, columns = np.nonzero(digit)
    ink = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    large = np.asarray(Image.fromarray(ink).resize((ink.shape[1] * 4, ink.shape[0] * 4), Image.Resampling.BILINEAR))
    paper = np.full((400, 300), 235, dtype=np.uint8)  # grey-white paper, digit near a corner in dark ink
    paper[20 : 20 + large.shape[0], 30 : 30 + large.shape[1]] = 235 - (large.astype(int) * 200 // 255)
    prepared = prepare_digit(paper)
    rows, columns = np.nonzero(prepared > 8)
    assert max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 in (19, 20, 21)
    grid = np.arange(28)
    mass = prepared.astype(float)
    assert abs((mass.sum(axis=1) @ grid) / mass.sum() - 14) < 1
    assert abs((mass.sum(axis=0) @ grid) / mass.sum() - 14) < 1
    assert np.abs(prepared.astype(int) - digit).mean() < 12  # looks like the MNIST digit it came from


def test_blank_image_prepares_to_black():
    assert prepare_digit(np.full((50, 40), 200, dtype=np.uint8)).max() == 0


def test_big_non_square_photo_becomes_28x28_light_ink_on_black():
    photo = np.full((300, 120), 230, dtype=np.uint8)  # light paper, taller than wide
    photo[60:240, 50:70] = 20  # a dark vertical stroke: a "1"
    prepared = prepare_digit(photo)
    assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
    assert prepared[:, :3].max() == 0 and prepared[:, -3:].max() == 0  # padding is black background
    assert prepared[14, 14] > 150  # the stroke is light ink in the middle


def test_dark_speck_on_a_grey_stroke_leaves_the_digit_at_full_strength():
    photo = np.full((120, 90), 200, dtype=np.uint8)  # grey paper
    photo[20:100, 40:50] = 140  # a "1" in grey pencil
    photo[60, 44] = 0  # a grain of grit on it, far darker than the pencil
    prepared = prepare_digit(photo)
    assert np.percentile(prepared[prepared > 8], 50) > 200  # the stroke is full white, not the pencil's grey


def test_file_path_and_array_path_agree(tmp_path, paper, digit):
    path = tmp_path / "seven.png"
    Image.fromarray(paper).save(path)
    np.testing.assert_array_equal(load_digit(path), digit)


@pytest.mark.parametrize(
    "array",
    [np.zeros((28, 28, 3), dtype=np.uint8), np.zeros(784, dtype=np.uint8), np.zeros((0, 28), dtype=np.uint8)],
    ids=["rgb", "flat", "empty"],
)
def test_prepare_digit_refuses_non_2d_or_empty(array):
    with pytest.raises(ImageError, match="2-D"):
        prepare_digit(array)


def test_one_nan_or_infinite_pixel_does_not_blank_a_float_image(tmp_path):
    values = np.linspace(0.0, 1.0, 28 * 28, dtype=np.float32).reshape(28, 28)
    values[3, 3], values[5, 5] = np.nan, np.inf
    path = tmp_path / "float.tiff"
    Image.fromarray(values).save(path)
    gray = read_image(path)
    assert gray[0, 0] == 0 and gray[-1, -1] == 255  # the finite range still spans 0..255
    assert gray[5, 5] == 255


# ---- MNIST-style preprocessing of real-world images ----
# Each synthetic photo below defeats the naive method (border median for polarity, no thresholding,
# no cleaning); the prepared digit must still match the clean digit it was made from.

@pytest.fixture(scope="module")
def ink(mnist_test) -> np.ndarray:
    """A real MNIST 3 (test index 18), enlarged 6-fold to the size a phone photo gives it, as ink coverage 0..1."""
    digit = mnist_test[0][18]
    assert mnist_test[1][18] == 3
    large = Image.fromarray(digit).resize((168, 168), Image.Resampling.BILINEAR)
    return np.asarray(large, dtype=np.float32) / 255


def on_paper(ink: np.ndarray, paper: np.ndarray, top: int, left: int, darkness: float = 180) -> np.ndarray:
    """Dark ink laid on `paper` (float gray) at (top, left), as uint8."""
    photo = paper.astype(np.float32).copy()
    height, width = ink.shape
    photo[top : top + height, left : left + width] -= darkness * ink
    return np.clip(photo, 0, 255).astype(np.uint8)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two prepared digits: 1 for the same picture, near 0 for unrelated ones."""
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.fixture(scope="module")
def clean(ink) -> np.ndarray:
    """The digit prepared from an ideal photo: even white paper, nothing else on it."""
    return prepare_digit(on_paper(ink, np.full((300, 260), 235.0), 60, 50))


def test_clean_photo_prepares_to_the_mnist_digit(clean, mnist_test):
    assert similarity(clean, mnist_test[0][18]) > 0.9


def test_light_digit_inside_a_bright_frame_keeps_its_polarity(ink, clean):
    # Light ink on a dark ground, framed by a bright border line: the border is bright, so a border
    # median takes the ground for ink; the digit is the light minority that stands out locally.
    photo = np.full((300, 260), 60.0)
    photo[4:12, :] = photo[-12:-4, :] = photo[:, 4:12] = photo[:, -12:-4] = 200
    photo[60:228, 50:218] += 170 * ink
    prepared = prepare_digit(np.clip(photo, 0, 255).astype(np.uint8))
    assert similarity(prepared, clean) > 0.85


def test_uneven_light_and_a_hard_shadow_are_flattened(ink, clean):
    rows, columns = np.mgrid[0:300, 0:260]
    paper = 250 - 110 * columns / 260  # light falling off across the sheet
    paper[:, :90] -= 60  # the shadow of a phone held over the left side, with a hard edge
    prepared = prepare_digit(on_paper(ink, paper, 60, 50, darkness=120))
    assert similarity(prepared, clean) > 0.85


def test_digit_written_lightly_in_a_grainy_photo_is_found(ink, clean):
    # Grain of 10 grey levels over a stroke only 35 darker than the paper: six times the grain, the margin
    # that keeps a blank page blank, is more than the stroke stands out, pixel by pixel (it came out blank).
    photo = np.full((300, 260), 235.0)
    photo[60:228, 50:218] -= 35 * ink
    photo += np.random.default_rng(0).normal(0, 10, photo.shape)
    assert similarity(prepare_digit(np.clip(photo, 0, 255).astype(np.uint8)), clean) > 0.7


def test_specks_do_not_move_the_crop(ink, clean):
    paper = np.full((300, 260), 235.0)
    for row, column in ((10, 240), (280, 15), (285, 250), (150, 245)):
        paper[row : row + 3, column : column + 3] = 40  # dust and pen dots far from the digit
    prepared = prepare_digit(on_paper(ink, paper, 60, 50))
    assert similarity(prepared, clean) > 0.95


def test_salt_specks_on_grey_paper_leave_no_blocks_of_ink(ink, clean):
    # White specks on a grey scan are darker than the paper once the polarity is set: each is the minimum of
    # every background window over it, and sparse ones cut window-sized holes that read as blocks of ink.
    paper = np.full((300, 260), 170.0)
    rows, columns = np.random.default_rng(1).integers(0, (300, 260), size=(20, 2)).T
    paper[rows, columns] = 255
    prepared = prepare_digit(on_paper(ink, paper, 60, 50, darkness=140))
    assert similarity(prepared, clean) > 0.95


def test_a_smudge_far_from_the_digit_does_not_shrink_it(ink, clean):
    # Larger than a speck (a fifth of the digit's ink), away from the border, but short and far from the digit:
    # a pen mark or the tip of a shadow, not a part of the 3.
    paper = np.full((420, 300), 235.0)
    paper[380:396, 200:270] = 60
    prepared = prepare_digit(on_paper(ink, paper, 60, 50))
    assert similarity(prepared, clean) > 0.95


def test_a_dark_corner_of_the_photo_does_not_shrink_the_digit(ink, clean):
    # A corner in shadow (a whiteboard's edge, a vignette): it reaches the border, it is more than half as
    # tall as the digit, so it is no fragment, but it is smaller than the digit and far from it.
    paper = np.full((420, 300), 235.0)
    rows, columns = np.mgrid[0:420, 0:300]
    paper[(rows > 320) & (columns - 240 > (420 - rows) * 0.6)] = 90
    prepared = prepare_digit(on_paper(ink, paper, 60, 50))
    assert similarity(prepared, clean) > 0.95


def test_a_digits_own_broken_stroke_stays_with_it(ink):
    broken = ink.copy()
    bottom = int(np.nonzero(ink.max(axis=1) > 0.5)[0].max())
    broken[bottom - 30 : bottom - 20] = 0  # a gap across the 3's tail, as a skipping pen leaves: a short piece
    found = find_ink(on_paper(broken, np.full((300, 260), 235.0), 60, 50))
    assert ndimage.label(found.mask, structure=np.ones((3, 3)))[1] >= 2
    assert np.nonzero(found.mask)[0].max() >= 60 + bottom - 2  # the tail below the gap is kept


def test_ruled_lines_across_the_digit_are_removed(ink, clean):
    paper = np.full((300, 260), 235.0)
    for row in (40, 110, 180, 250):
        paper[row : row + 3, :] = 90  # dark ruled lines across the sheet, two through the digit
    prepared = prepare_digit(on_paper(ink, paper, 60, 50))
    assert similarity(prepared, clean) > 0.85


@pytest.mark.parametrize("across", [1.0, 0.7])
def test_grid_lines_at_a_tilt_joined_to_the_digit_are_opened_away(ink, clean, across):
    # A squared sheet photographed at a slant: lines 3 pixels wide, 4 degrees off level, which no long run of
    # pixels follows, joined to the digit written over them; the sheet may fill only part of the photo's width.
    rows, columns = np.indices((260, 260))
    slope = np.tan(np.radians(4))
    lines = ((rows - slope * columns) % 50 < 3) | ((columns + slope * rows) % 50 < 3)
    paper = np.full((260, 260), 235.0)
    paper[lines & (columns < across * 260)] = 120
    prepared = prepare_digit(on_paper(ink, paper, 40, 50))
    assert similarity(prepared, clean) > 0.85


def on_a_desk(note: np.ndarray, desk: float, angle: float) -> np.ndarray:
    """`note` (uint8) turned by `angle` degrees and laid in the middle of a 600x800 photo of a desk of grey
    `desk`, with the desk's grain, a little blur and sensor noise."""
    rng = np.random.default_rng(0)
    grain = desk + 12 * np.sin(np.linspace(0, 50, 800))[None, :] + rng.normal(0, 3, (600, 800))
    photo = Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8))
    turned = Image.fromarray(note).rotate(angle, expand=True, fillcolor=0)
    shape = Image.new("L", note.shape[::-1], 255).rotate(angle, expand=True, fillcolor=0)
    photo.paste(turned, (400 - turned.width // 2, 300 - turned.height // 2), shape)
    blurred = np.asarray(photo.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)
    return np.clip(blurred + rng.normal(0, 3, blurred.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("desk", [45, 110])
@pytest.mark.parametrize("side", [260, 440])
def test_a_note_photographed_on_a_desk_gives_the_digit_written_on_it(ink, clean, desk, side):
    # The desk is darker than the paper, as ink is: left in, it passes for ink round the note, or the small
    # light note on it for a light stroke on a dark ground. Either way the 3 came out lost or framed. The note
    # lies turned by 8 degrees; the 3 comes out upright, as written.
    note = on_paper(ink, np.full((side, side), 225.0), (side - 168) // 2, (side - 168) // 2)
    stages = preprocess_stages(on_a_desk(note, desk, angle=8))
    assert similarity(stages[-1][1], clean) > 0.9
    assert any(name == "sheet alone, upright" for name, _ in stages)


def test_a_note_running_off_the_photo_is_found(ink, clean):
    # The photo shows the note cut by its bottom edge: the part shown fills 0.84 of the smallest rectangle
    # round it, as little as a bold light 0 does, but 0.97 of that rectangle's part in the photo. Missed,
    # the desk round the note passes for ink (similarity 0.42).
    note = on_paper(ink, np.full((400, 400), 225.0), 116, 116)
    stages = preprocess_stages(on_a_desk(note, desk=70, angle=20)[:440])
    assert any(name == "sheet alone, upright" for name, _ in stages)
    assert similarity(stages[-1][1], clean) > 0.95


def test_a_note_under_a_lamp_is_found_by_its_edges(ink, clean):
    # The lamp lights the desk beside the note as brightly as the note's far corner, so no grey level parts
    # note from desk: the lit desk joins the note's light region. The note's edge still closes round it, and
    # the 3 comes out upright (found as light on dark, it came out turned as the note lies).
    note = on_paper(ink, np.full((300, 300), 225.0), 66, 66)
    photo = on_a_desk(note, desk=130, angle=8).astype(np.float32)
    rows, columns = np.mgrid[0:600, 0:800]
    lamp = 0.5 + 0.9 * np.exp(-((rows - 150) ** 2 + (columns - 620) ** 2) / (2 * 230.0**2))
    stages = preprocess_stages(np.clip(photo * lamp, 0, 255).astype(np.uint8))
    assert any(name == "sheet alone, upright" for name, _ in stages)
    assert similarity(stages[-1][1], clean) > 0.8


def test_a_note_on_a_banded_desk_is_found_as_light_paper_round_the_writing(ink, clean):
    # The desk's dark bands (wood grain) pass for writing beside the note, so the note is not sought by its
    # light; taken as light ink instead, the note is solid paper round a hole that is the 3. Read as such a
    # blob, the 3 came out framed by the note (similarity 0.46).
    small = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize((120, 120)), dtype=np.float32) / 255
    photo = on_a_desk(on_paper(small, np.full((200, 240), 225.0), 40, 60, darkness=160), desk=120, angle=0)
    rows, columns = np.mgrid[0:600, 0:800]
    bands = 35 * np.sin(2 * np.pi * (rows + 25 * np.sin(columns / 90)) / 120)
    bands[200:400, 280:520] = 0
    stages = preprocess_stages(np.clip(photo + bands, 0, 255).astype(np.uint8))
    assert [name for name, _ in stages].count("sheet alone") == 1
    assert similarity(stages[-1][1], clean) > 0.95


def test_a_tilted_note_is_read_upright_and_its_digits_boxed_where_they_lie(mnist_test):
    # Two digits side by side on a note turned 15 degrees: upright, they read in order, and each box, turned
    # back, still holds its digit's centre as the photo shows it.
    seven, four = (mnist_test[0][np.flatnonzero(mnist_test[1] == digit)[0]] for digit in (7, 4))
    note = np.full((300, 560), 225.0)
    centres = []
    for left, digit in ((40, seven), (350, four)):
        ink = np.asarray(Image.fromarray(digit).resize((168, 168)), dtype=np.float32) / 255
        note[66:234, left : left + 168] -= 190 * ink
        rows, columns = np.nonzero(ink > 0.5)
        centres.append((left + (columns.min() + columns.max() + 1) / 2, 66 + (rows.min() + rows.max() + 1) / 2))
    turn = np.radians(15)
    photo = on_a_desk(np.clip(note, 0, 255).astype(np.uint8), desk=60, angle=15)
    segments = segment_digits(photo)
    assert len(segments) == 2
    for segment, (x, y) in zip(segments, centres):
        # Where the note's turn about its centre, laid at the photo's centre (400, 300), put the digit.
        across, down = x - 280, y - 150
        x, y = 400 + across * np.cos(turn) + down * np.sin(turn), 300 - across * np.sin(turn) + down * np.cos(turn)
        left, top, right, bottom = segment.box
        assert abs((left + right) / 2 - x) < 12 and abs((top + bottom) / 2 - y) < 12


def test_a_bold_light_digit_on_a_dark_ground_is_not_taken_for_a_sheet(mnist_test):
    # Light, solid and enclosing dark counters, as a sheet with writing on it is; but no four-cornered sheet.
    eight = mnist_test[0][np.flatnonzero(mnist_test[1] == 8)[0]]
    bold = ndimage.grey_dilation(eight, size=(3, 3))
    bold = np.asarray(Image.fromarray(bold).resize((252, 252)), dtype=np.float32)
    dark_ground = np.full((600, 800), 50.0)
    dark_ground[174:426, 274:526] += 0.75 * bold
    light_on_dark = preprocess_stages(dark_ground.astype(np.uint8))
    dark_on_light = prepare_digit(255 - dark_ground.astype(np.uint8))
    assert all(not name.startswith("sheet alone") for name, _ in light_on_dark)
    assert similarity(light_on_dark[-1][1], dark_on_light) > 0.95


def test_fine_frame_joined_to_a_bold_digit_is_opened_away(mnist_test):
    # A small house-number plate (like the tutorial's 9.png): a bold light digit, and a frame of fine lines
    # round the plate with one of them running into the digit, all one piece of ink.
    bold = ndimage.grey_dilation(mnist_test[0][18], size=(2, 2)).astype(np.float32)
    plate = np.full((36, 36), 40.0)
    plate[4:32, 4:32] = np.maximum(plate[4:32, 4:32], bold)
    alone = prepare_digit(plate.astype(np.uint8))
    plate[0, :] = plate[-1, :] = plate[:, 0] = plate[:, -1] = 230
    rows, columns = np.nonzero(bold > 128)
    plate[: rows[0] + 4, columns[0] + 4] = 230
    assert similarity(prepare_digit(plate.astype(np.uint8)), alone) > 0.9


def test_digit_cut_tight_at_the_border_is_kept(ink, clean):
    rows, columns = np.nonzero(ink > 0.05)
    tight = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    prepared = prepare_digit(on_paper(tight, np.full(tight.shape, 235.0), 0, 0))
    assert similarity(prepared, clean) > 0.9


@pytest.mark.parametrize("index", [0, 2, 4, 6, 8])
def test_small_scanned_digit_filling_its_box_is_not_taken_for_a_frame(mnist_test, index):
    # A postal form's digit: cropped to its ink on both axes and stretched to fill a 16x16 box, dark on light.
    # It touches the border and spans it both ways, as a frame does, yet it is the digit, not its frame.
    digit = mnist_test[0][index]
    rows, columns = np.nonzero(digit > 30)
    crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scanned = 255 - np.asarray(Image.fromarray(crop).resize((16, 16), Image.Resampling.BOX))
    assert similarity(prepare_digit(scanned), prepare_digit(255 - scanned)) > 0.9
    stretched_back = np.asarray(Image.fromarray(crop).resize((16, 16), Image.Resampling.BOX))
    assert similarity(prepare_digit(scanned), prepare_digit(np.pad(stretched_back, 6))) > 0.8


@pytest.mark.parametrize("index", [10, 84, 110])
def test_bold_scanned_digit_cropped_tight_keeps_its_polarity_and_strokes(mnist_test, index):
    # A form's box filled by a bold 0 or 8, dark on light: the ink is near half the image, so its pixels barely
    # lean either way (taken for light ink, the 10 and the 84 came out as their paper), and its strokes are nearly as
    # wide as the background's window (the 110 lost half of its lower loop to the paper).
    bold = ndimage.grey_dilation(mnist_test[0][index], size=(3, 3))
    rows, columns = np.nonzero(bold > 30)
    crop = bold[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    ink = np.asarray(Image.fromarray(crop).resize((26, 26), Image.Resampling.BOX), dtype=np.float32)
    grain = np.random.default_rng(0).normal(0, 3, ink.shape)
    scanned = np.clip(225 - 0.7 * ink + grain, 0, 255).astype(np.uint8)
    assert similarity(prepare_digit(scanned), prepare_digit(np.pad(ink.astype(np.uint8), 4))) > 0.95


def in_a_postal_box(digit: np.ndarray, seed: int, light_ink: bool) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST digit as a postal scanner gives it: cropped to its ink, stretched to fill a 16x16 box, with
    scanner grain (seeded); and the box's ink coverage alone (0..255), to compare with."""
    rows, columns = np.nonzero(digit > 30)
    crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    ink = np.asarray(Image.fromarray(crop).resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
    grain = np.random.default_rng(seed).normal(0, 4, ink.shape)
    return np.clip((ink if light_ink else 255 - 0.8 * ink) + grain, 0, 255).astype(np.uint8), ink


@pytest.mark.parametrize("index", [28, 128, 214, 250])
@pytest.mark.parametrize("light_ink", [True, False])
def test_grainy_digit_stretched_to_fill_a_postal_box_is_read_in_either_polarity(mnist_test, index, light_ink):
    # A postal scanner's 16x16 digit: cropped to its ink and stretched to fill the box, with scanner grain. Its ink
    # is near half the pixels, so they barely lean towards it (these came out as their paper or as nothing), and
    # its edges outnumber the paper's grain (measured on the whole box, the grain set the cut above the ink).
    scanned, ink = in_a_postal_box(mnist_test[0][index], index, light_ink)
    assert similarity(prepare_digit(scanned), prepare_digit(np.pad(ink.astype(np.uint8), 6))) > 0.9


@pytest.mark.parametrize("index, light_ink", [(83, False), (90, True), (270, True), (270, False)])
def test_digit_filling_a_postal_box_touches_its_sides_only_in_places_and_is_no_frame(mnist_test, index, light_ink):
    # Stretched into a 16x16 box, these digits span it both ways and reach its border, as a frame does; taken for
    # one, they were cut stricter till only scraps were left. A frame runs along every side of the box; they don't.
    scanned, ink = in_a_postal_box(mnist_test[0][index], index, light_ink)
    assert not any(name.startswith("stricter cut") for name, _ in preprocess_stages(scanned))
    assert similarity(prepare_digit(scanned), prepare_digit(np.pad(ink.astype(np.uint8), 6))) > 0.9


def test_twelve_megapixel_photo_is_analysed_on_a_small_copy(ink, clean):
    paper = np.full((3000, 4000), 225.0)
    big = np.asarray(Image.fromarray(ink).resize((1500, 1500), Image.Resampling.BILINEAR))
    found = find_ink(on_paper(big, paper, 700, 1200))
    assert max(found.mask.shape) <= ANALYSIS_SIDE and found.scale < 0.2
    assert similarity(prepare_digit(on_paper(big, paper, 700, 1200)), clean) > 0.9


def test_blank_noisy_paper_prepares_to_black():
    noise = np.random.default_rng(0).normal(0, 4, size=(240, 320))
    paper = np.clip(200 + noise + np.linspace(0, 30, 320), 0, 255).astype(np.uint8)
    assert prepare_digit(paper).max() == 0


@pytest.mark.parametrize("name, digit", [(f"{digit}.png", digit) for digit in range(1, 10)])
def test_tutorial_examples_are_read_right_by_the_shipped_model(name, digit):
    from digitlab.predict import Predictor

    prepared = load_digit(Path(__file__).parent.parent / "examples" / "seed" / name)
    assert Predictor().predict_proba_prepared(prepared[np.newaxis])[0].argmax() == digit


def test_stages_end_with_exactly_what_prepare_digit_gives(ink):
    photo = on_paper(ink, np.full((300, 260), 235.0), 60, 50)
    stages = preprocess_stages(photo)
    assert stages[0][0] == "input" and stages[-1][0] == "MNIST-style digit"
    np.testing.assert_array_equal(stages[-1][1], prepare_digit(photo))
    strip = stages_image(stages)
    assert strip.mode == "L" and strip.width > 160 * len(stages)


def test_preprocess_command_writes_every_stage(cli, tmp_path):
    seven = Path(__file__).parent.parent / "examples" / "seed" / "7.png"
    result = cli("preprocess", seven, "--show", tmp_path / "stages.png")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) >= 28  # the 28x28 digit as text
    with Image.open(tmp_path / "stages.png") as written:
        assert written.width > 4 * written.height


def test_a_big_jpeg_is_prepared_and_shown_as_answers_read_it(cli, tmp_path, ink):
    # Answers decode a big JPEG small (`read_for_analysis`); evaluate's image folders (`load_digit`) and `digitlab
    # preprocess` decoded it whole, and every one of the benchmark's 42 big JPEGs came out a little different.
    rng = np.random.default_rng(0)
    photo = on_paper(ink, np.full((300, 260), 235.0) + rng.normal(0, 6, (300, 260)), 60, 50)
    big = Image.fromarray(photo).resize((2600, 3000), Image.Resampling.BICUBIC)
    path = tmp_path / "photo.jpg"
    big.save(path, quality=85)
    as_answered = prepare_digit(read_for_analysis(path)[0])
    assert not np.array_equal(as_answered, prepare_digit(read_image(path)))
    np.testing.assert_array_equal(load_digit(path), as_answered)
    shades = " .:-=+*#%@"
    printed = cli("preprocess", path).stdout.splitlines()[:28]
    assert printed == ["".join(shades[int(value) * len(shades) // 256] * 2 for value in row) for row in as_answered]


def test_preprocess_show_writes_a_png_whatever_the_name_and_refuses_a_folder(cli, tmp_path):
    seven = Path(__file__).parent.parent / "examples" / "seed" / "7.png"
    assert cli("preprocess", seven, "--show", tmp_path / "stages").returncode == 0
    with Image.open(tmp_path / "stages") as written:
        assert written.format == "PNG"
    for bad in (tmp_path, tmp_path / "missing" / "stages.png"):
        result = cli("preprocess", seven, "--show", bad)
        assert result.returncode != 0 and result.stderr.startswith("digitlab: --show") and "Traceback" not in result.stderr


def test_preprocess_command_reports_an_unreadable_file(cli, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    result = cli("preprocess", tmp_path / "notes.png")
    assert result.returncode != 0 and result.stderr.startswith("digitlab:") and "notes.png" in result.stderr
