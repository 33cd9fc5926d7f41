"""Build the real-world evaluation sets: digits as people print, scan, photograph and write them, and
images that are not digits at all. Seeded and deterministic: image i of a set depends only on the seed,
the set and i, so a smaller build is a prefix of a larger one.

Each set is a folder of image files in real formats with a `labels.csv` (file, label, kind); `kind`
says which source or background made the image, so a result can be broken down by it.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitlab.data import load_dataset
from digitlab.errors import DataError

from . import render

DATA_DIR = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
FONT_ROOT = Path("/usr/share/fonts")
NOT_A_DIGIT = "not-a-digit"
# Sizes chosen so all the sets build in about two minutes on one core, with 100 images per digit (30 on a desk).
COUNTS = {"printed": 1000, "handwriting-fonts": 1000, "photographed": 1000, "multi-digit": 500, "not-digits": 700,
          "scanned": 1000, "on-a-desk": 300, "postal-box": 500}
SETS = tuple(COUNTS)


@dataclass(frozen=True)
class FontPackage:
    """A Debian package and the font files of it we render digits with (globs under /usr/share/fonts)."""

    package: str
    files: tuple[str, ...]


# Hairline and Thin weights are left out: at scanner resolution they vanish, for people too.
PRINTED_FONTS = (
    FontPackage("fonts-dejavu-core", ("truetype/dejavu/DejaVuSans*.ttf", "truetype/dejavu/DejaVuSerif*.ttf")),
    FontPackage("fonts-liberation2", ("truetype/liberation2/*.ttf",)),
    FontPackage("fonts-freefont-ttf", ("truetype/freefont/*.ttf",)),
    FontPackage("fonts-urw-base35", ("opentype/urw-base35/[CNPU]*.otf",)),
    FontPackage("fonts-crosextra-carlito", ("truetype/crosextra/Carlito-*.ttf",)),
    FontPackage("fonts-crosextra-caladea", ("truetype/crosextra/Caladea-*.ttf",)),
    FontPackage("fonts-open-sans", ("truetype/open-sans/*.ttf",)),
    FontPackage("fonts-lato", ("truetype/lato/Lato-[BLMRS]*.ttf",)),
    FontPackage("fonts-cantarell", ("opentype/cantarell/Cantarell-[BELR]*.otf",)),
    FontPackage("fonts-ebgaramond", ("opentype/ebgaramond/*.otf",)),
    FontPackage("fonts-inconsolata", ("truetype/inconsolata/*.otf",)),
    FontPackage("fonts-roboto-unhinted", ("truetype/roboto/unhinted/RobotoTTF/Roboto-*.ttf",)),
    FontPackage("fonts-noto-mono", ("truetype/noto/NotoMono-Regular.ttf",)),
    FontPackage("fonts-league-spartan", ("opentype/league-spartan/*.otf",)),
    FontPackage("fonts-quicksand", ("truetype/quicksand/*.ttf",)),
    FontPackage("fonts-cabin", ("opentype/cabin/*.otf",)),
    FontPackage("fonts-sil-andika", ("truetype/andika/*.ttf",)),
    FontPackage("fonts-sil-charis", ("truetype/charis/*.ttf",)),
    FontPackage("fonts-tuffy", ("truetype/tuffy/Tuffy*.ttf",)),
    FontPackage("fonts-opendin", ("truetype/opendin/*.ttf",)),
    FontPackage("fonts-jura", ("opentype/jura/*.otf",)),
    FontPackage("fonts-goudybookletter", ("opentype/sortsmill/*.otf",)),
    FontPackage("fonts-bebas-neue", ("opentype/bebas-neue/BebasNeue-[BLR]*.otf",)),
    FontPackage("fonts-3270", ("truetype/3270/*.ttf",)),
)
HANDWRITING_FONTS = (
    FontPackage("fonts-comic-neue", ("opentype/comic-neue/*.otf",)),
    FontPackage("fonts-humor-sans", ("truetype/humor-sans/*.ttf",)),
    FontPackage("fonts-breip", ("truetype/breip/Breip.ttf",)),
    FontPackage("fonts-bwht", ("opentype/bwht/*.otf",)),
    FontPackage("fonts-dkg-handwriting", ("truetype/fifthhorseman/*.ttf",)),
    FontPackage("fonts-dancingscript", ("opentype/dancingscript/*.otf",)),
    FontPackage("fonts-kaushanscript", ("opentype/kaushanscript/*.otf",)),
    FontPackage("fonts-kristi", ("truetype/kristi/*.ttf",)),
    FontPackage("fonts-sjfonts", ("truetype/sjfonts/*.ttf",)),
    FontPackage("fonts-rufscript", ("truetype/rufscript/*.ttf",)),
    FontPackage("fonts-tomsontalks", ("truetype/tomsontalks/*.ttf",)),
    FontPackage("fonts-ecolier-court", ("truetype/ecolier-court/*.ttf",)),
    FontPackage("fonts-havana", ("opentype/havana/*.otf",)),
    FontPackage("fonts-leckerli-one", ("truetype/leckerli-one/*.ttf",)),
    FontPackage("fonts-tlwg-purisa-ttf", ("truetype/tlwg/Purisa*.ttf",)),
    FontPackage("fonts-lobster", ("opentype/lobster/*.otf",)),
    FontPackage("fonts-yusei-magic", ("truetype/yusei-magic/*.ttf",)),
    FontPackage("fonts-klee", ("truetype/klee/*.ttf",)),
    FontPackage("fonts-urw-base35", ("opentype/urw-base35/Z003-*.otf",)),  # Zapf Chancery, a calligraphic hand
)
# Real photographs: scikit-image's sample images as Debian's python3-skimage installs them (read as
# plain files, skimage itself is never imported) and matplotlib's portrait of Grace Hopper. Named one
# by one: the folder also holds test fixtures, charts, a clock face and pages of text (digits!).
PHOTO_DIR = Path("/usr/lib/python3/dist-packages/skimage/data")
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "moon.png", "grass.png",
               "gravel.png", "brick.png", "cell.png")
PHOTO_PACKAGE = "python3-skimage"
# Letters that people do not take for digits. Left out as look-alikes: O o Q D (0), I l i j J L T t (1),
# Z z (2), B (3, 8), A y (4), S s G (5), b (6), g q a e (9, 6). Rings and vertical bars are likewise
# left out of the shapes.
LETTERS = "CEFHKMNPRUVWXYcdfhkmnpruvwx"
# File formats per kind of source, with weights: scanners write PNG/TIFF/BMP, phones JPEG and WebP.
SCAN_FORMATS = (("png", 3), ("gray-png", 1), ("jpeg", 4), ("tiff", 1), ("bmp", 1), ("webp", 1))
PHOTO_FORMATS = (("jpeg", 8), ("png", 1), ("webp", 1))


@dataclass(frozen=True)
class Sources:
    """Everything the sets are drawn from that lies outside this folder."""

    printed_fonts: tuple[Path, ...]
    handwriting_fonts: tuple[Path, ...]
    photos: tuple[Path, ...]


def install_line(packages: Iterable[str]) -> str:
    return "apt-get install -y " + " ".join(sorted(set(packages)))


def find_sources(font_root: Path = FONT_ROOT) -> Sources:
    """The installed fonts and photographs, or a DataError naming the apt-get line that installs them."""
    missing: list[str] = []
    found: dict[str, list[Path]] = {"printed": [], "handwriting": []}
    for style, packages in (("printed", PRINTED_FONTS), ("handwriting", HANDWRITING_FONTS)):
        for package in packages:
            files = sorted(path for pattern in package.files for path in font_root.glob(pattern)
                           if not any(weight in path.stem for weight in ("Thin", "Hairline")))
            if not files:
                missing.append(package.package)
            found[style] += [path for path in files if has_digits(path)]
    photos = tuple(PHOTO_DIR / name for name in PHOTO_FILES if (PHOTO_DIR / name).is_file())
    if len(photos) < len(PHOTO_FILES):
        missing.append(PHOTO_PACKAGE)
    if missing:
        raise DataError(
            f"{font_root}: the real-world sets need fonts and photographs that are not installed "
            f"({', '.join(missing)}); install them with: {install_line(missing)}"
        )
    return Sources(tuple(found["printed"]), tuple(found["handwriting"]), photos + matplotlib_photos())


def matplotlib_photos() -> tuple[Path, ...]:
    """The photograph matplotlib ships (always installed with digitlab)."""
    return (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",)


@lru_cache(maxsize=None)
def has_digits(path: Path) -> bool:
    """Whether a font draws ten different digit glyphs, none of them the missing-glyph box."""
    font = ImageFont.truetype(str(path), 48)
    glyphs = [render.glyph_mask(font, character) for character in "0123456789\u0378"]
    shapes = {(glyph.shape, glyph.round(1).tobytes()) for glyph in glyphs}
    return len(shapes) == len(glyphs)


@lru_cache(maxsize=256)
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=None)
def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A test split, loaded once: only test digits, since digitlab's models train on the train split."""
    return load_dataset(name, "test")


def pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


# ---------------------------------------------------------------- backgrounds and camera


def frame_size(rng: np.random.Generator, photo: bool, full_size: bool = False) -> tuple[int, int]:
    """(height, width) of an image: scans are small crops, photos mostly phone previews and crops; with
    `full_size`, 3% are 1-2 megapixels and 0.5% a phone camera's full 4-8 megapixels (few, since they
    dominate the build time)."""
    if not photo:
        side = int(rng.integers(40, 360))
        return side, int(side * rng.uniform(0.7, 1.5))
    draw = rng.random()
    if full_size and draw < 0.005:
        long_side = int(rng.integers(2400, 3300))
    elif full_size and draw < 0.035:
        long_side = int(rng.integers(1000, 2000))
    else:
        long_side = int(rng.integers(160, 800))
    aspect = pick(rng, (4 / 3, 3 / 2, 16 / 9, 1.0))
    short_side = int(long_side / aspect)
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def background(rng: np.random.Generator, height: int, width: int, kind: str) -> np.ndarray:
    """A ground of the named kind: paper (plain, ruled, squared), sticky note, whiteboard, or a dark sign."""
    if kind == "dark":
        colour = pick(rng, ((25, 25, 28), (20, 45, 90), (25, 70, 45), (60, 20, 20), (50, 50, 55)))
        return render.paper(rng, height, width, colour)
    colour = {
        "paper": pick(rng, ("white", "white", "cream", "recycled")),
        "ruled": pick(rng, ("white", "cream")),
        "grid": pick(rng, ("white", "cream")),
        "sticky-note": pick(rng, ("sticky-yellow", "sticky-yellow", "sticky-pink")),
        "whiteboard": "whiteboard",
        "kraft": "kraft",
    }[kind]
    sheet = render.paper(rng, height, width, render.PAPERS[colour])
    if kind in ("ruled", "grid"):
        sheet = render.rule_lines(rng, sheet, kind, spacing=min(height, width) * rng.uniform(0.12, 0.3))
    return sheet


def scan(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """What a flatbed or document camera adds: slight blur, scanner marks, sometimes a little skew."""
    if rng.random() < 0.4:
        image = render.perspective(rng, image, rng.uniform(0, 0.04))
    image = render.blur(rng, image, rng.uniform(0, 1.2) * max(image.shape[:2]) / 150)
    return render.scanner_noise(rng, image)


def photograph(rng: np.random.Generator, image: np.ndarray, kind: str) -> np.ndarray:
    """What a phone adds: a tilted view, uneven light and shadow, glare on whiteboards, blur and noise."""
    image = render.perspective(rng, image, rng.uniform(0, 0.12))
    image = render.lighting(rng, image, rng.uniform(0.3, 1.0))
    if kind == "whiteboard" or rng.random() < 0.05:
        image = render.glare(rng, image)
    image = render.blur(rng, image, rng.uniform(0, 2.0) * max(image.shape[:2]) / 400)
    return render.sensor_noise(rng, image, rng.uniform(1, 10))


def ink_for(rng: np.random.Generator, ground: str, printed: bool) -> tuple[float, float, float]:
    """Ink a writer would use on this ground: toner for print, markers on whiteboards, pens on paper."""
    if ground == "dark":
        return pick(rng, ((245, 245, 240), (250, 220, 90), (235, 235, 235)))
    if printed:
        return render.INKS[pick(rng, ("toner", "toner", "toner", "black-marker", "blue-marker", "red-marker"))]
    if ground == "whiteboard":
        return render.INKS[pick(rng, ("black-marker", "blue-marker", "red-marker", "green-marker"))]
    return render.INKS[pick(rng, ("black-ballpoint", "blue-ballpoint", "black-marker", "blue-marker", "pencil"))]


def draw_ink(rng: np.random.Generator, mask: np.ndarray, ground: str, printed: bool, photo: bool,
             height_fraction: tuple[float, float], size: tuple[int, int] | None = None) -> np.ndarray:
    """Place an ink mask on a ground at a random size and position, then scan or photograph it."""
    height, width = size or frame_size(rng, photo)
    # A tilted camera crops up to 12% of the frame at each side (a scanner's skew 4%): ink stays inside that.
    margin = 0.13 if photo else 0.05
    target = rng.uniform(*height_fraction) * height
    scale = min(target / mask.shape[0], (1 - 2 * margin) * width / mask.shape[1])
    glyph = render.resize_mask(mask, max(2, round(mask.shape[0] * scale)), max(2, round(mask.shape[1] * scale)))
    # Mostly near the centre, sometimes well off it.
    spread = 0.15 if rng.random() < 0.75 else 0.5
    top = _position(height, glyph.shape[0], margin, 0.5 + rng.uniform(-spread, spread))
    left = _position(width, glyph.shape[1], margin, 0.5 + rng.uniform(-spread, spread))
    sheet = background(rng, height, width, ground)
    opacity = rng.uniform(0.75, 1.0)
    sheet = render.composite(sheet, render.place((height, width), glyph, top, left) * opacity,
                             ink_for(rng, ground, printed))
    return render.to_uint8(photograph(rng, sheet, ground) if photo else scan(rng, sheet))


def _position(frame: int, extent: int, margin: float, where: float) -> int:
    """Offset of an `extent`-long glyph along a `frame`-long side, `where` (0..1) between the margins."""
    low = frame * margin
    high = max(low, frame * (1 - margin) - extent)
    return int(low + (high - low) * np.clip(where, 0, 1))


# ---------------------------------------------------------------- the sets


def font_digit(rng: np.random.Generator, font_path: Path, text: str, handwriting: bool) -> np.ndarray:
    """A digit string from a font as a coverage mask, with weight, slant and rotation varied."""
    font = load_font(font_path, 96)
    if handwriting and rng.random() < 0.6:
        # Pens differ: a felt tip thickens a font's stroke, a fine ballpoint thins it.
        embolden = int(rng.integers(0, 6))
        mask = render.glyph_mask(font, text, embolden=embolden)
        # Thinning takes back at most what was added: below a font's own stroke its hairlines break apart.
        mask = render.thin(mask, int(rng.integers(0, min(embolden, 2) + 1)))
    else:
        mask = render.glyph_mask(font, text, embolden=int(rng.integers(0, 3)) if rng.random() < 0.3 else 0)
    if handwriting:
        mask = render.shear_mask(mask, rng.uniform(-0.25, 0.25))
    return render.rotate_mask(mask, rng.uniform(-8, 8) if handwriting else rng.uniform(-5, 5))


def make_font_digit(rng: np.random.Generator, index: int, sources: Sources, handwriting: bool):
    digit = index % 10
    fonts = sources.handwriting_fonts if handwriting else sources.printed_fonts
    font_path = pick(rng, fonts)
    mask = font_digit(rng, font_path, str(digit), handwriting)
    photo = rng.random() < 0.3
    if handwriting:
        ground = pick(rng, ("paper", "paper", "ruled", "grid", "sticky-note", "whiteboard", "dark"))
    else:
        ground = "dark" if rng.random() < 0.15 else pick(rng, ("paper", "paper", "paper", "kraft"))
    image = draw_ink(rng, mask, ground, printed=not handwriting, photo=photo,
                     height_fraction=(0.25, 0.6) if photo else (0.3, 0.85))
    return image, str(digit), font_path.stem, PHOTO_FORMATS if photo else SCAN_FORMATS


def mnist_mask(rng: np.random.Generator, digit_image: np.ndarray, height: int) -> np.ndarray:
    """An MNIST test digit enlarged to `height` pixels and inked like a pen (varied boldness)."""
    crop = render.crop_to_ink(digit_image.astype(np.float32) / 255)
    width = max(2, round(crop.shape[1] * height / crop.shape[0]))
    mask = render.pen_stroke(render.resize_mask(crop, height, width), rng, rng.uniform(0, 1))
    return render.rotate_mask(mask, rng.uniform(-6, 6))


def make_photographed(rng: np.random.Generator, index: int, sources: Sources):
    images, labels = dataset("mnist")
    digit = index % 10
    candidates = np.flatnonzero(labels == digit)
    item = int(pick(rng, candidates))
    ground = pick(rng, ("paper", "paper", "ruled", "grid", "sticky-note", "whiteboard"))
    size = frame_size(rng, photo=True, full_size=True)
    # The digit fills 10% to 60% of the frame's height; its mask is drawn at that height, so the pen's
    # stroke is rendered at the final resolution rather than enlarged afterwards.
    fraction = rng.uniform(0.1, 0.6)
    mask = mnist_mask(rng, images[item], height=max(16, round(size[0] * fraction)))
    image = draw_ink(rng, mask, ground, printed=False, photo=True, height_fraction=(fraction, fraction), size=size)
    return image, str(digit), f"{ground}:mnist-{item}", PHOTO_FORMATS


# What a sheet lies on when it is photographed (RGB): wood, a grey or black desk, a cutting mat, a table top.
DESKS = {
    "dark-wood": (80, 52, 34),
    "light-wood": (165, 122, 80),
    "grey-desk": (105, 105, 110),
    "black-desk": (28, 28, 30),
    "cutting-mat": (35, 85, 60),
    "table": (150, 150, 145),
}


def desk_surface(rng: np.random.Generator, height: int, width: int, desk: str) -> np.ndarray:
    """A desk's surface, with the grain of wood running along it where it is wood."""
    surface = render.paper(rng, height, width, DESKS[desk])
    if desk.endswith("wood"):
        waves = rng.uniform(20, 60)
        wobble = render.smooth_noise(rng, height, width, 4) * rng.uniform(2, 6)
        grain = np.sin(np.linspace(0, waves, height)[:, None] + wobble) * rng.uniform(6, 16)
        surface += grain[..., None].astype(np.float32)
    return surface


def lay_on(surface: np.ndarray, sheet: np.ndarray, degrees: float, centre: tuple[int, int]) -> np.ndarray:
    """The sheet turned by `degrees` and laid on the surface with its centre at `centre` (row, column)."""
    def turned(channel: np.ndarray) -> np.ndarray:
        image = Image.fromarray(channel.astype(np.float32), mode="F")
        return np.asarray(image.rotate(degrees, Image.Resampling.BICUBIC, expand=True))

    cover = turned(np.ones(sheet.shape[:2]))
    top, left = centre[0] - cover.shape[0] // 2, centre[1] - cover.shape[1] // 2
    paper = np.stack([render.place(surface.shape[:2], turned(sheet[..., channel]), top, left)
                      for channel in range(3)], axis=-1)
    return render.composite(surface, render.place(surface.shape[:2], cover, top, left), paper)


def make_on_a_desk(rng: np.random.Generator, index: int, sources: Sources):
    """An MNIST test digit written on a sheet, an index card or a sticky note lying on a desk, photographed
    with the desk round it: the sheet 35-90% of the frame's shorter side, turned up to 25 degrees, a fifth of
    the time running off the frame."""
    images, labels = dataset("mnist")
    digit = index % 10
    item = int(pick(rng, np.flatnonzero(labels == digit)))
    ground = pick(rng, ("paper", "ruled", "grid", "sticky-note", "sticky-note"))
    desk = pick(rng, tuple(DESKS))
    height, width = frame_size(rng, photo=True, full_size=True)
    side = max(24, int(min(height, width) * rng.uniform(0.35, 0.9)))
    sheet_size = (side, side) if ground == "sticky-note" else (int(side * pick(rng, (0.7, 1.4))), side)
    sheet = background(rng, *sheet_size, ground)
    fraction = rng.uniform(0.3, 0.7)
    mask = mnist_mask(rng, images[item], height=max(12, round(min(sheet_size) * fraction)))
    top = (sheet_size[0] - mask.shape[0]) // 2 + int(rng.integers(-1, 2) * sheet_size[0] * 0.08)
    left = (sheet_size[1] - mask.shape[1]) // 2 + int(rng.integers(-1, 2) * sheet_size[1] * 0.08)
    sheet = render.composite(sheet, render.place(sheet_size, mask, top, left) * rng.uniform(0.75, 1.0),
                             ink_for(rng, ground, printed=False))
    centre = [height * rng.uniform(0.35, 0.65), width * rng.uniform(0.35, 0.65)]
    if rng.random() < 0.2:  # running off the top or the bottom of the frame
        centre[0] = height * pick(rng, (0.15, 0.85))
    # The digit itself stays in the frame, clear of what a tilted camera crops (see draw_ink).
    reach = 0.75 * max(mask.shape)
    centre = [int(np.clip(at, reach + 0.13 * frame, max(reach + 0.13 * frame, 0.87 * frame - reach)))
              for at, frame in zip(centre, (height, width))]
    photo = lay_on(desk_surface(rng, height, width, desk), sheet, rng.uniform(-25, 25), tuple(centre))
    kind = f"{ground}-on-{desk}:mnist-{item}"
    return render.to_uint8(photograph(rng, photo, ground)), str(digit), kind, PHOTO_FORMATS


def make_scanned(rng: np.random.Generator, index: int, sources: Sources):
    """An MNIST test digit as a postal sorter's scanner crops it from a form: a square box tight round the
    digit (0-3 pixels of paper above and below), 16-40 pixels tall, pen on form paper, scanned."""
    images, labels = dataset("mnist")
    digit = index % 10
    item = int(pick(rng, np.flatnonzero(labels == digit)))
    height = int(rng.integers(16, 41))
    crop = render.crop_to_ink(images[item].astype(np.float32) / 255)
    width = max(2, round(crop.shape[1] * height / crop.shape[0]))
    mask = render.pen_stroke(render.resize_mask(crop, height, width), rng, rng.uniform(0, 1))
    margin = int(rng.integers(0, 4))
    side = max(height, width) + 2 * margin
    sheet = render.paper(rng, side, side, render.PAPERS[pick(rng, ("white", "white", "cream", "recycled"))])
    coverage = render.place((side, side), mask, margin, (side - width) // 2) * rng.uniform(0.75, 1.0)
    sheet = render.composite(sheet, coverage, ink_for(rng, "paper", printed=False))
    return render.to_uint8(scan(rng, sheet)), str(digit), f"form:mnist-{item}", SCAN_FORMATS


def make_postal_box(rng: np.random.Generator, index: int, sources: Sources):
    """An MNIST test digit normalised as the US Postal Service's zip-code digits were: cropped to its ink and
    scaled to fill a 16x16 box (height only, or stretched both ways), its grey levels kept, either polarity,
    with a scanner's grain; lossless, as such sets are kept."""
    images, labels = dataset("mnist")
    digit = index % 10
    item = int(pick(rng, np.flatnonzero(labels == digit)))
    crop = render.crop_to_ink(images[item].astype(np.float32) / 255)
    stretched = rng.random() < 0.5
    width = 16 if stretched else min(16, max(2, round(crop.shape[1] * 16 / crop.shape[0])))
    box = render.place((16, 16), render.resize_mask(crop, 16, width), 0, (16 - width) // 2)
    ground, ink = rng.uniform(0, 60), rng.uniform(180, 255)
    light_ink = rng.random() < 0.5
    image = ground + (ink - ground) * box if light_ink else 255 - ground - (ink - ground) * box
    image = image + rng.normal(0, rng.uniform(1, 6), image.shape)
    kind = f"{'stretched' if stretched else 'height'}-{'light' if light_ink else 'dark'}:mnist-{item}"
    return render.to_uint8(image), str(digit), kind, (("png", 1),)


def number_text(rng: np.random.Generator) -> tuple[str, str]:
    """A digit string people write or print: a house number, a year, a postal code or any code."""
    kind = pick(rng, ("house-number", "year", "postal-code", "code"))
    if kind == "house-number":
        return kind, str(int(rng.integers(10, 10_000)))
    if kind == "year":
        return kind, str(int(rng.integers(1900, 2040)))
    if kind == "postal-code":
        return kind, "".join(str(d) for d in rng.integers(0, 10, size=int(pick(rng, (4, 5, 5, 6)))))
    return kind, "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(2, 7))))


def break_strokes(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A pen skipping: one thin band across the glyph gets no ink."""
    height, width = mask.shape
    band = max(1, round(min(height, width) * rng.uniform(0.02, 0.05)))
    if rng.random() < 0.5:
        row = int(rng.integers(height // 4, max(height // 4 + 1, 3 * height // 4)))
        mask[row : row + band] = 0
    else:
        column = int(rng.integers(width // 4, max(width // 4 + 1, 3 * width // 4)))
        mask[:, column : column + band] = 0
    return mask


def row_of_digits(rng: np.random.Generator, glyphs: list[np.ndarray], height: int) -> np.ndarray:
    """Glyphs scaled to about `height`, set side by side with gaps from touching (negative) to wide."""
    gap_fraction = rng.uniform(-0.08, 0.1) if rng.random() < 0.25 else rng.uniform(0.1, 0.5)
    scaled = []
    for glyph in glyphs:
        glyph_height = max(4, round(height * rng.uniform(0.9, 1.1)))
        glyph_width = max(2, round(glyph.shape[1] * glyph_height / glyph.shape[0]))
        scaled.append(render.resize_mask(glyph, glyph_height, glyph_width))
    gaps = [round(height * (gap_fraction + rng.uniform(-0.04, 0.04))) for _ in scaled]
    total_width = sum(glyph.shape[1] for glyph in scaled) + sum(gaps[:-1]) + 2
    row = np.zeros((round(height * 1.3) + 2, max(total_width, 2)), dtype=np.float32)
    left = 0
    for glyph, gap in zip(scaled, gaps):
        top = int(rng.integers(0, row.shape[0] - glyph.shape[0] + 1))
        row = np.maximum(row, render.place(row.shape, glyph, top, left))
        left += glyph.shape[1] + gap
    return render.crop_to_ink(row)


def make_multi_digit(rng: np.random.Generator, index: int, sources: Sources):
    kind, text = number_text(rng)
    source = pick(rng, ("printed", "handwriting", "mnist", "mnist"))
    if source == "mnist":
        images, labels = dataset("mnist")
        glyphs = []
        for character in text:
            glyph = mnist_mask(rng, images[int(pick(rng, np.flatnonzero(labels == int(character))))], 96)
            glyphs.append(break_strokes(rng, glyph) if rng.random() < 0.05 else glyph)
        mask = row_of_digits(rng, glyphs, 96)
    else:
        fonts = sources.printed_fonts if source == "printed" else sources.handwriting_fonts
        font_path = pick(rng, fonts)
        if rng.random() < 0.5:
            mask = font_digit(rng, font_path, text, handwriting=source == "handwriting")
        else:
            glyphs = [font_digit(rng, font_path, character, source == "handwriting") for character in text]
            mask = row_of_digits(rng, glyphs, 96)
    photo = rng.random() < 0.6
    ground = pick(rng, ("paper", "ruled", "grid", "sticky-note", "whiteboard", "dark", "kraft"))
    height = frame_size(rng, photo)[0] // 2 if photo else int(rng.integers(60, 240))
    # A row of digits needs a wide frame: the row is `fraction` of the height and 50-90% of the width.
    fraction = rng.uniform(0.25, 0.7)
    width = round(height * fraction * mask.shape[1] / mask.shape[0] / rng.uniform(0.5, 0.9))
    image = draw_ink(rng, mask, ground, printed=source == "printed", photo=photo,
                     height_fraction=(fraction, fraction), size=(max(height, 24), max(width, 24)))
    return image, text, f"{kind}:{source}", PHOTO_FORMATS if photo else SCAN_FORMATS


def make_not_digit(rng: np.random.Generator, index: int, sources: Sources):
    kind = pick(rng, NOT_DIGIT_KINDS)
    return NOT_DIGIT_MAKERS[kind](rng, sources), NOT_A_DIGIT, kind, PHOTO_FORMATS if kind == "photo" else SCAN_FORMATS


def fashion_item(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """A Fashion-MNIST test item: as the data set has it (light on black, 28x28), or printed and photographed."""
    images, _ = dataset("fashion-mnist")
    item = images[int(rng.integers(len(images)))]
    if rng.random() < 0.5:
        return np.repeat(item[..., None], 3, axis=2)
    mask = render.crop_to_ink(item.astype(np.float32) / 255)
    return draw_ink(rng, mask, "paper", printed=True, photo=True, height_fraction=(0.2, 0.7))


def letters(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """One letter or a short word of letters no reader takes for digits, printed or handwritten."""
    count = 1 if rng.random() < 0.7 else int(rng.integers(2, 5))
    text = "".join(pick(rng, LETTERS) for _ in range(count))
    handwriting = rng.random() < 0.5
    font_path = pick(rng, sources.handwriting_fonts if handwriting else sources.printed_fonts)
    mask = font_digit(rng, font_path, text, handwriting)
    ground = pick(rng, ("paper", "ruled", "sticky-note", "whiteboard", "dark"))
    return draw_ink(rng, mask, ground, printed=not handwriting, photo=rng.random() < 0.5,
                    height_fraction=(0.2, 0.7))


def shapes(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """A filled geometric shape or a symbol: disc, square, triangle, star, cross, arrow or tick."""
    side = 200
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    shape = pick(rng, ("disc", "square", "triangle", "star", "cross", "arrow", "tick"))
    if shape == "disc":
        draw.ellipse((20, 40, 180, 160) if rng.random() < 0.5 else (20, 20, 180, 180), fill=255)
    elif shape == "square":
        draw.rectangle((30, 30, 170, 170), fill=255)
    elif shape == "triangle":
        draw.polygon([(100, 15), (185, 180), (15, 180)], fill=255 if rng.random() < 0.6 else None,
                     outline=255, width=14)
    elif shape == "star":
        angles = np.linspace(-np.pi / 2, 3.5 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, 90, 38)
        draw.polygon([(100 + r * np.cos(a), 100 + r * np.sin(a)) for r, a in zip(radii, angles)], fill=255)
    elif shape == "cross":
        width = int(rng.integers(14, 40))
        draw.line((20, 100, 180, 100), fill=255, width=width)
        draw.line((100, 20, 100, 180) if rng.random() < 0.5 else (30, 30, 170, 170), fill=255, width=width)
    elif shape == "arrow":
        draw.line((20, 100, 150, 100), fill=255, width=18)
        draw.polygon([(185, 100), (130, 55), (130, 145)], fill=255)
    else:
        draw.line([(25, 100), (80, 160), (180, 30)], fill=255, width=int(rng.integers(12, 30)), joint="curve")
    # A tick turned far enough reads as a 7 or an L, so it stays nearly upright; the others turn freely.
    turn = rng.uniform(-20, 20) if shape == "tick" else rng.uniform(0, 360)
    mask = render.rotate_mask(render.crop_to_ink(np.asarray(canvas, dtype=np.float32) / 255), turn)
    ground = pick(rng, ("paper", "grid", "sticky-note", "whiteboard", "dark"))
    return draw_ink(rng, mask, ground, printed=rng.random() < 0.5, photo=rng.random() < 0.5,
                    height_fraction=(0.2, 0.7))


def noise(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """Pure noise: Gaussian or uniform, gray or coloured, from one pixel's grain to coarse blobs."""
    height, width = frame_size(rng, photo=rng.random() < 0.3)
    cells = int(rng.integers(2, 40))
    coarse = render.smooth_noise(rng, height, width, cells)[..., None] * rng.uniform(20, 120)
    fine = rng.standard_normal((height, width, 3 if rng.random() < 0.5 else 1), dtype=np.float32) * rng.uniform(5, 80)
    return render.to_uint8(np.broadcast_to(rng.uniform(60, 200) + coarse + fine, (height, width, 3)))


def blank(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """Empty or nearly empty ground: bare paper, a speck of dust, a faint smudge, lines and nothing else."""
    ground = pick(rng, ("paper", "paper", "ruled", "grid", "sticky-note", "whiteboard", "dark", "kraft"))
    photo = rng.random() < 0.5
    height, width = frame_size(rng, photo)
    sheet = background(rng, height, width, ground)
    extra = rng.random()
    if extra < 0.3:  # a speck or two
        for _ in range(int(rng.integers(1, 3))):
            radius = max(1, round(min(height, width) * rng.uniform(0.003, 0.012)))
            y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
            sheet[max(0, y - radius) : y + radius, max(0, x - radius) : x + radius] *= rng.uniform(0.3, 0.7)
    elif extra < 0.5:  # a faint smudge of rubbed-out pencil
        smudge = np.clip(render.smooth_noise(rng, height, width, 5), 0, 1) * rng.uniform(0.08, 0.2)
        sheet = render.composite(sheet, smudge, render.INKS["pencil"])
    return render.to_uint8(photograph(rng, sheet, ground) if photo else scan(rng, sheet))


def texture(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """Man-made and natural patterns: stripes, checks, wood grain, fabric weave."""
    height, width = frame_size(rng, photo=rng.random() < 0.4)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(4, 40)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * x + np.sin(angle) * y
    v = -np.sin(angle) * x + np.cos(angle) * y
    pattern = pick(rng, ("stripes", "checks", "wood", "weave"))
    if pattern == "stripes":
        value = np.sin(2 * np.pi * u / period)
    elif pattern == "checks":
        value = np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
    elif pattern == "wood":
        value = np.sin(2 * np.pi * (u + 25 * render.smooth_noise(rng, height, width, 6)) / period)
    else:
        value = np.sin(2 * np.pi * u / period) * 0.5 + np.sin(2 * np.pi * v / period) * 0.5
    base = np.array(pick(rng, ((140, 90, 50), (120, 120, 130), (60, 80, 140), (180, 170, 150))), dtype=np.float32)
    image = base + value[..., None] * rng.uniform(15, 70)
    return render.to_uint8(render.sensor_noise(rng, image, rng.uniform(1, 6)))


def photo_crop(rng: np.random.Generator, sources: Sources) -> np.ndarray:
    """A crop of a real photograph at a random place and scale, resized to a random size."""
    with Image.open(pick(rng, sources.photos)) as picture:
        picture = picture.convert("RGB")
        width, height = picture.size
        crop_w = int(width * rng.uniform(0.2, 1.0))
        crop_h = int(min(height, crop_w * rng.uniform(0.6, 1.4)))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        crop = picture.crop((left, top, left + crop_w, top + crop_h))
        scale = rng.uniform(0.15, 1.5)
        crop = crop.resize((max(16, round(crop_w * scale)), max(16, round(crop_h * scale))), Image.Resampling.BILINEAR)
        return np.asarray(crop)


NOT_DIGIT_MAKERS: dict[str, Callable[[np.random.Generator, Sources], np.ndarray]] = {
    "fashion": fashion_item, "letters": letters, "shapes": shapes, "noise": noise,
    "blank": blank, "texture": texture, "photo": photo_crop,
}
# Weights as repeated entries: a quarter clothing, a fifth letters, the rest spread over the others.
NOT_DIGIT_KINDS = ("fashion",) * 5 + ("letters",) * 4 + ("shapes",) * 2 + ("noise",) * 1 + ("blank",) * 2 \
    + ("texture",) * 2 + ("photo",) * 4

MAKERS = {
    "printed": lambda rng, i, s: make_font_digit(rng, i, s, handwriting=False),
    "handwriting-fonts": lambda rng, i, s: make_font_digit(rng, i, s, handwriting=True),
    "photographed": make_photographed,
    "multi-digit": make_multi_digit,
    "not-digits": make_not_digit,
    "scanned": make_scanned,
    "on-a-desk": make_on_a_desk,
    "postal-box": make_postal_box,
}


def build_set(name: str, out: Path, sources: Sources, count: int | None = None, seed: int = 0) -> Path:
    """Write set `name` into out/name with its labels.csv and return the folder. It is built in a
    side folder and moved into place at the end, so an interrupted build never passes for a set."""
    if name not in MAKERS:
        raise DataError(f"unknown real-world set {name!r}; known: {', '.join(SETS)}")
    count = COUNTS[name] if count is None else count
    final = out / name
    partial = out / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rows = []
    for index in range(count):
        # One generator per image, keyed by (seed, set, index): image i never depends on the others.
        rng = np.random.default_rng([seed, SETS.index(name), index])
        image, label, kind, formats = MAKERS[name](rng, index, sources)
        data, suffix = render.encode(rng, image, formats)
        file = f"{index:05d}{suffix}"
        (partial / file).write_bytes(data)
        rows.append((file, label, kind))
    if name == "not-digits":
        shutil.copyfile(ROOT / "examples" / "seed" / "dog.png", partial / "tutorial-dog.png")
        rows.append(("tutorial-dog.png", NOT_A_DIGIT, "tutorial-dog"))
    with open(partial / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("file", "label", "kind"))
        writer.writerows(rows)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def read_labels(folder: Path) -> list[tuple[Path, str, str]]:
    """(image path, label, kind) for each row of a set's labels.csv."""
    with open(folder / "labels.csv", newline="") as file:
        return [(folder / row["file"], row["label"], row["kind"]) for row in csv.DictReader(file)]
