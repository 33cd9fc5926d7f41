"""Images that are not digits, prepared exactly as digits are, for outlier exposure: a model trained to be
unsure on them says "not a digit" to clothes, letters, shapes, noise and photographs it has never seen."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from . import data
from .printed import training_fonts
from .vision import prepare_digit

# Letters and signs that no careful reader would take for a digit. Left out because they can be one:
# O o D Q (0), I l i j J T (1), Z z (2), B E (3, 8), A (4), S s (5), b G (6), Y (7), g q a P (9), e.
LETTERS = "CFHKMNRUVWXcdfhkmnrtuvwxy#%@*+=~<>"
CANVAS = 64


def outlier_images(count: int, seed: int = 0, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """`count` prepared 28x28 outliers: half Fashion-MNIST training items, half rendered letters, shapes,
    textures and noise (seeded, so a run is reproducible)."""
    rng = np.random.default_rng(seed)
    fashion, _ = data.load_dataset("fashion-mnist", "train", data_dir)
    chosen = fashion[rng.choice(len(fashion), size=count // 2, replace=False)]
    # Letters in the same faces the printed training digits use, so "printed" never means "digit".
    letter = functools.partial(_letter, fonts=training_fonts())
    makers = (letter, letter, _shape, _texture, _noise)
    drawn = [makers[index % len(makers)](rng) for index in range(count - len(chosen))]
    return np.stack([prepare_digit(image) for image in [*chosen, *drawn]])


def _paper(rng: np.random.Generator) -> tuple[Image.Image, int]:
    """A blank canvas, dark ink on light paper or the other way round, and the ink's gray level."""
    light = rng.random() < 0.7
    paper, ink = (int(rng.integers(180, 256)), int(rng.integers(0, 90))) if light else (
        int(rng.integers(0, 60)), int(rng.integers(170, 256)))
    return Image.new("L", (CANVAS, CANVAS), paper), ink


def _letter(rng: np.random.Generator, fonts: list[Path]) -> np.ndarray:
    image, ink = _paper(rng)
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(30, 56)))
    ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), LETTERS[rng.integers(len(LETTERS))], fill=ink,
                               font=font, anchor="mm")
    return np.asarray(image.rotate(float(rng.uniform(-20, 20)), fillcolor=image.getpixel((0, 0))))


def _shape(rng: np.random.Generator) -> np.ndarray:
    """Filled discs, ellipses, polygons and stars, and signs drawn with a pen (crosses, arrows, ticks), kept
    clear of digit shapes: a thin sliver is a fair 1, a ring a fair 0, so neither is drawn. Filled shapes stay
    under 40% of the canvas across, else removing the background (vision.BACKGROUND_FRACTION) hollows them
    into rings."""
    image, ink = _paper(rng)
    draw = ImageDraw.Draw(image)
    centre = rng.uniform(24, 40, 2)
    kind = rng.integers(4)
    if kind == 0:  # a filled disc or ellipse: a 0 has a hole, this has none
        radii = rng.uniform(6, 12, 2)
        draw.ellipse([*(centre - radii), *(centre + radii)], fill=ink)
    elif kind == 1:  # a fat polygon or a star, filled, or outlined when it is a triangle or a star
        corners = int(rng.integers(3, 9))
        star = rng.random() < 0.4
        angles = np.linspace(0, 2 * np.pi, corners * (2 if star else 1), endpoint=False) + rng.uniform(0, np.pi)
        radii = rng.uniform(7, 13, len(angles))
        if star:
            radii[1::2] *= rng.uniform(0.35, 0.6)
        points = [tuple(point) for point in centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]]
        # Other polygons' outlines are left out: a square's or a hexagon's is a fair 0.
        if (star or corners == 3) and rng.random() < 0.5:
            draw.polygon(points, outline=ink, width=int(rng.integers(2, 5)))
        else:
            draw.polygon(points, fill=ink)
    else:  # pen strokes: a cross (+ or x), an arrow, or a tick
        width = int(rng.integers(3, 8))
        size = rng.uniform(10, 22)
        turn = rng.uniform(0, np.pi) if kind == 2 else rng.uniform(-0.3, 0.3)
        ends = [(-1, 0, 1, 0), (0, -1, 0, 1)] if kind == 2 else [(-1, 0, 1, 0), (0.5, -0.5, 1, 0), (0.5, 0.5, 1, 0)]
        if kind == 3 and rng.random() < 0.5:
            ends = [(-0.8, 0, -0.3, 0.6), (-0.3, 0.6, 0.9, -0.8)]  # a tick
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        for x0, y0, x1, y1 in ends:
            start, end = centre + rotation @ (size * np.array([x0, y0])), centre + rotation @ (size * np.array([x1, y1]))
            draw.line([tuple(start), tuple(end)], fill=ink, width=width)
    return np.asarray(image)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Smooth random fields, stripes and checks: what a crop of a photograph or fabric looks like."""
    small = rng.random((int(rng.integers(3, 9)),) * 2) * 255
    field = Image.fromarray(small.astype(np.uint8)).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)
    if rng.random() < 0.4:
        period = int(rng.integers(4, 16))
        stripes = ((np.indices((CANVAS, CANVAS)).sum(axis=0) // period) % 2) * 120
        field = Image.fromarray(np.clip(np.asarray(field) * 0.5 + stripes, 0, 255).astype(np.uint8))
    return np.asarray(field.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)))))


def _noise(rng: np.random.Generator) -> np.ndarray:
    """Sensor noise and salt-and-pepper: images with no shape at all."""
    if rng.random() < 0.5:
        return rng.integers(0, 256, size=(CANVAS, CANVAS), dtype=np.uint8)
    base = np.full((CANVAS, CANVAS), rng.integers(150, 256), dtype=np.float64)
    base += rng.normal(0, rng.uniform(10, 60), size=base.shape)
    specks = rng.random(base.shape) < rng.uniform(0.02, 0.2)
    base[specks] = rng.integers(0, 80)
    return np.clip(base, 0, 255).astype(np.uint8)
