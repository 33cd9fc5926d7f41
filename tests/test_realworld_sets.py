"""The real-world set generator (bench/realworld): valid, labelled, deterministic image files.

Fonts come from matplotlib's bundled DejaVu and photographs from matplotlib's sample data, so the test
runs without the Debian font packages the full sets use."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from digitlab import Predictor
from digitlab.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from realworld import build_sets  # noqa: E402
from realworld.build_sets import NOT_A_DIGIT, SETS, Sources, build_set, read_labels  # noqa: E402

MATPLOTLIB_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
PER_SET = 12


@pytest.fixture(scope="module")
def sources() -> Sources:
    printed = tuple(sorted(MATPLOTLIB_FONTS.glob("DejaVuSans*.ttf")))
    slanted = tuple(sorted(MATPLOTLIB_FONTS.glob("DejaVu*Oblique.ttf")))
    return Sources(printed_fonts=printed, handwriting_fonts=slanted, photos=build_sets.matplotlib_photos())


@pytest.fixture(scope="module")
def built(sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realworld")
    for name in SETS:
        build_set(name, out, sources, count=PER_SET, seed=3)
    return out


@pytest.mark.parametrize("name", SETS)
def test_every_image_opens_with_a_valid_label(built: Path, name: str) -> None:
    rows = read_labels(built / name)
    assert len(rows) == PER_SET + (1 if name == "not-digits" else 0)  # the tutorial's dog joins the not-digits
    for path, label, kind in rows:
        with Image.open(path) as image:
            image.load()
            assert min(image.size) >= 16
        assert kind
        if name == "not-digits":
            assert label == NOT_A_DIGIT
        elif name == "multi-digit":
            assert label.isdigit() and 2 <= len(label) <= 6
        else:
            assert label in "0123456789" and len(label) == 1


def test_single_digit_sets_cycle_through_all_ten_digits(built: Path) -> None:
    labels = [label for _, label, _ in read_labels(built / "printed")]
    assert labels[:10] == [str(digit) for digit in range(10)]


def test_sets_use_several_file_formats(built: Path) -> None:
    suffixes = {path.suffix for name in SETS for path, _, _ in read_labels(built / name)}
    assert {".png", ".jpg"} <= suffixes and len(suffixes) >= 3


def test_the_same_seed_builds_the_same_bytes_and_a_prefix_of_a_larger_build(
    built: Path, sources: Sources, tmp_path: Path
) -> None:
    again = build_set("photographed", tmp_path, sources, count=PER_SET // 2, seed=3)
    first = read_labels(built / "photographed")[: PER_SET // 2]
    for (path, label, kind), (other, other_label, other_kind) in zip(first, read_labels(again)):
        assert (path.name, label, kind) == (other.name, other_label, other_kind)
        assert path.read_bytes() == other.read_bytes()


def test_another_seed_builds_other_images(built: Path, sources: Sources, tmp_path: Path) -> None:
    other = build_set("printed", tmp_path, sources, count=3, seed=4)
    assert [path.read_bytes() for path, _, _ in read_labels(other)] != [
        path.read_bytes() for path, _, _ in read_labels(built / "printed")[:3]
    ]


def test_digits_are_dark_ink_on_a_lighter_ground_or_the_reverse(built: Path) -> None:
    """The ink must be visible: every photographed digit differs clearly from its paper."""
    for path, _, _ in read_labels(built / "photographed"):
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        assert np.percentile(gray, 99.5) - np.percentile(gray, 0.5) > 40


def read_generated(name: str, index: int) -> tuple[int | None, str, str]:
    """Image `index` of the set `name` (seed 0, as the benchmark builds it) sent to the shipped model as a PNG: the
    digit it answers, the label and the kind."""
    make = {"on-a-desk": build_sets.make_on_a_desk, "photographed": build_sets.make_photographed}[name]
    image, label, kind, _ = make(np.random.default_rng([0, SETS.index(name), index]), index, Sources((), (), ()))
    png = io.BytesIO()
    Image.fromarray(image).save(png, "PNG")
    return Predictor().answer([("photo.png", png.getvalue())])[0]["digit"], label, kind


@pytest.mark.parametrize("index", [7, 52, 91, 174, 225])
def test_notes_photographed_on_a_desk_are_read_within_the_sheet(index: int) -> None:
    # Photos of the on-a-desk set (squared, plain and ruled notes; seed 0) that were rejected or misread while the
    # ink was sought over the whole photo, the desk painted over in streaks of the paper's grey: the sheet's
    # statistics were swamped and its grid or its shadow passed for ink. Sought within the sheet, each reads right.
    # The 91st's squared note, cut speckled by the grain, passed for a bold light digit, not paper, till the
    # pinholes were closed.
    digit, label, _ = read_generated("on-a-desk", index)
    assert digit == int(label)


def test_a_bold_digit_on_a_squared_sheet_is_freed_from_its_grid() -> None:
    # A marker 3 over a squared sheet's grid lines, tilted in the photo and joined to it: the long runs miss lines at
    # a tilt, and an opening by 2 pixels leaves lines 3 pixels wide, so the grid was read with the digit and the
    # photo rejected. An opening wider than the lines, narrower than the marker's strokes, frees it.
    digit, label, kind = read_generated("photographed", 303)
    assert kind.startswith("grid")
    assert digit == int(label)


@pytest.mark.parametrize("index", [23, 671])
def test_a_stub_of_a_line_or_a_shadow_at_the_border_is_not_read_with_the_digit(index: int) -> None:
    # The 23rd photo has a shadow's edge running down from its top beside the 3, the 671st the stubs of two ruled
    # lines running in from its left side beside the 1: each was kept with the digit, which it shrank in the crop.
    digit, label, _ = read_generated("photographed", index)
    assert digit == int(label)


def test_a_shadow_running_along_the_border_is_not_read_with_the_digit() -> None:
    # The 722nd photo: a sticky note's 2 beside a shadow's corner that runs along the photo's edge, fainter than the
    # ink. Kept with the digit, it shrank the 2 in the crop and the photo was rejected.
    digit, label, _ = read_generated("photographed", 722)
    assert digit == int(label)


def test_a_missing_font_package_names_the_apt_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install -y .*fonts-comic-neue"):
        build_sets.find_sources(font_root=tmp_path)


def test_unknown_set_is_an_error(sources: Sources, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown real-world set"):
        build_set("cursive", tmp_path, sources, count=1)
