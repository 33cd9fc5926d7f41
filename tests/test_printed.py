"""Digits rendered from fonts for training: prepared like any image, labelled right, disjoint from the benchmark's faces."""

import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab import printed
from digitlab.printed import FONT_PACKAGES, printed_digits, training_fonts
from digitlab.vision import MNIST_SIDE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from realworld.build_sets import HANDWRITING_FONTS, PRINTED_FONTS  # noqa: E402


def test_training_fonts_never_include_a_benchmark_face():
    benchmark = {font.package for font in (*PRINTED_FONTS, *HANDWRITING_FONTS)}
    assert not benchmark & set(FONT_PACKAGES)
    assert all("DejaVu" not in path.name for path in training_fonts())


def test_training_fonts_always_include_matplotlibs_bundled_faces():
    names = {path.name for path in training_fonts()}
    assert {"STIXGeneral.ttf", "cmr10.ttf"} <= names


def test_printed_digits_are_seeded_prepared_digits_with_every_label():
    digits, labels = printed_digits(200, seed=5)
    again, again_labels = printed_digits(200, seed=5)
    assert digits.shape == (200, MNIST_SIDE, MNIST_SIDE) and digits.dtype == np.uint8
    assert np.array_equal(digits, again) and np.array_equal(labels, again_labels)
    assert set(labels.tolist()) == set(range(10))
    # Prepared the MNIST way: light ink on black, strongest ink near full, the longer side fitted to 20 pixels.
    assert (digits.reshape(200, -1).max(axis=1) > 200).all()
    for digit in digits:
        rows, columns = np.nonzero(digit)
        assert max(np.ptp(rows), np.ptp(columns)) + 1 <= 21


@pytest.mark.parametrize("height", [10.0, 17.0, 24.0])
def test_a_shrunk_digit_stands_as_tall_as_asked_and_a_large_one_is_left_alone(height):
    font = printed.ImageFont.truetype(str(training_fonts()[0]), 60)
    glyph = printed._render(font, "8", 0.0, 0)
    top, bottom = printed._shrunk(glyph, height).getbbox()[1::2]
    assert abs((bottom - top) - height) <= 2  # area averaging spreads the edges by up to a pixel each way
    assert printed._shrunk(glyph, 500.0).size == glyph.size


def test_drawing_printed_digits_without_the_font_packages_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(printed, "DPKG_INFO", tmp_path)  # a dpkg that has installed none of them
    assert printed.missing_font_packages() == list(FONT_PACKAGES)
    with pytest.warns(UserWarning, match=f"{len(FONT_PACKAGES)} of the {len(FONT_PACKAGES)} training font packages"):
        printed_digits(10)
