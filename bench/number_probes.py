"""How numbers made of real MNIST test digits are read when one digit is hard to segment: widened (a 2 with a
long foot, a 5 with a long bar), broken in two along a slanted line (a pen skipping), or touching its neighbour.
Each probe writes the digits in dark ink on paper beside a 0 and a 4 and counts the numbers read exactly; run it
before and after a change to segmenting or to how the ways of cutting are weighed.

    .venv/bin/python bench/number_probes.py [--model PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from digitlab import Predictor
from digitlab.data import load_dataset
from digitlab.errors import DigitlabError

ENLARGE = 4
PAPER, INK = 232, 42


def on_paper(digits: list[np.ndarray], gaps: list[int]) -> np.ndarray:
    """MNIST digits cropped to their columns, `gaps` pixels apart (negative: overlapping), enlarged and
    written dark on light paper."""
    tiles = [digit[:, np.flatnonzero(digit.max(axis=0))] for digit in digits]
    canvas = np.zeros((40, 12 + sum(tile.shape[1] for tile in tiles) + sum(gaps)), dtype=np.uint8)
    left = 6
    for tile, gap in zip(tiles, [*gaps, 0]):
        region = canvas[6:34, left : left + tile.shape[1]]
        np.maximum(region, tile, out=region)
        left += tile.shape[1] + gap
    large = Image.fromarray(canvas).resize((canvas.shape[1] * ENLARGE, 40 * ENLARGE), Image.Resampling.BILINEAR)
    return (PAPER - np.asarray(large).astype(np.int32) * (PAPER - INK) // 255).astype(np.uint8)


def widened(digit: np.ndarray, factor: float) -> np.ndarray:
    """An MNIST digit cropped to its columns and stretched `factor` times as wide."""
    columns = np.flatnonzero(digit.max(axis=0))
    crop = Image.fromarray(digit[:, columns[0] : columns[-1] + 1])
    return np.asarray(crop.resize((round(crop.width * factor), 28), Image.Resampling.BILINEAR))


def broken(digit: np.ndarray, slope: float) -> np.ndarray:
    """An MNIST digit with no ink along a line of `slope` (columns per row) through its middle: a pen skipping."""
    rows, columns = np.mgrid[:28, :28]
    return (digit * (np.abs((columns - 14) - slope * (rows - 14)) >= 1.2)).astype(np.uint8)


def faded(digit: np.ndarray, upper: bool, share: float) -> np.ndarray:
    """An MNIST digit with its upper (or lower) half drawn at `share` of its ink: a pen pressed lightly on a 9's loop
    or a 6's."""
    half = (np.arange(28) < 14)[:, None] == upper
    return np.where(half, digit * share, digit).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    args = parser.parse_args()
    try:
        images, labels = load_dataset("mnist", "test")
        predictor = Predictor(args.model)
    except DigitlabError as error:
        parser.error(str(error))
    zero, four = images[3], images[4]
    first = {digit: np.flatnonzero(labels[:300] == digit) for digit in range(10)}
    rng = np.random.default_rng(1)
    pairs = rng.integers(20, 2000, size=(150, 2))
    probes = {
        "widened 1.6-2.2x (0, 2, 3, 5, 7)": [
            ([widened(images[index], factor), zero, four], [10, 10], f"{labels[index]}04")
            for digit in (2, 5, 7, 0, 3) for index in first[digit][:6] for factor in (1.6, 1.9, 2.2)
        ],
        "broken along a slanted line (0, 4, 6, 8)": [
            ([images[0], broken(images[index], slope), four], [10, 10], f"{labels[0]}{labels[index]}{labels[4]}")
            for index in np.flatnonzero(np.isin(labels[:300], (0, 4, 6, 8)))[:30] for slope in (0.5, 1.0, 2.0)
        ],
        "half drawn faintly (5, 7, 9 upper; 2, 6 lower)": [
            ([faded(images[index], labels[index] in (5, 7, 9), share), zero, four], [10, 10], f"{labels[index]}04")
            for digit in (5, 7, 9, 2, 6) for index in first[digit][:6] for share in (0.2, 0.3, 0.4)
        ],
        "touching pair, then 0 and 4": [
            ([images[a], images[b], zero, four], [overlap, 10, 10], f"{labels[a]}{labels[b]}04")
            for a, b in pairs for overlap in (-1, -3)
        ],
    }
    for name, cases in probes.items():
        answers = predictor.answer([(str(index), on_paper(digits, gaps)) for index, (digits, gaps, _) in enumerate(cases)])
        right = sum(answer.get("number") == number for answer, (_, _, number) in zip(answers, cases))
        print(f"{name}: {right}/{len(cases)} read right")


if __name__ == "__main__":
    main()
