"""Pure image effects that turn clean ink into what scanners and phone cameras deliver.

Every function takes a numpy Generator and arrays (float32 RGB in 0..255, masks in 0..1) and returns
arrays, so one seed gives the same image on every machine. None of them knows about digitlab's
preprocessing: they imitate paper, light, lenses and codecs, not any trick a reader might use.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Colours of real writing and printing (RGB): black toner, blue and black ballpoint, markers, pencil.
INKS = {
    "toner": (22, 22, 26),
    "black-ballpoint": (35, 35, 45),
    "blue-ballpoint": (25, 45, 140),
    "black-marker": (15, 15, 15),
    "blue-marker": (20, 60, 170),
    "red-marker": (170, 30, 35),
    "green-marker": (20, 110, 50),
    "pencil": (95, 95, 100),
}
# Grounds people write on; the sticky note's yellow and the whiteboard's cool white are what phones see.
PAPERS = {
    "white": (246, 245, 240),
    "cream": (238, 230, 208),
    "recycled": (214, 210, 198),
    "sticky-yellow": (250, 232, 110),
    "sticky-pink": (248, 178, 196),
    "whiteboard": (236, 240, 242),
    "kraft": (190, 160, 120),
}


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in -1..1: random values on a coarse grid, enlarged bicubically."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    enlarged = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(enlarged), -1, 1)


def paper(rng: np.random.Generator, height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A sheet of the given colour with blotchy texture and fine grain, as float32 RGB."""
    sheet = np.empty((height, width, 3), dtype=np.float32)
    sheet[:] = colour
    blotches = smooth_noise(rng, height, width, int(rng.integers(3, 9))) * rng.uniform(2, 9)
    grain = rng.standard_normal((height, width), dtype=np.float32) * rng.uniform(1, 4)
    sheet += (blotches + grain)[..., None]
    return sheet


def rule_lines(rng: np.random.Generator, sheet: np.ndarray, kind: str, spacing: float) -> np.ndarray:
    """Draw the printed lines of ruled or squared paper (faint blue or grey), `spacing` pixels apart."""
    height, width = sheet.shape[:2]
    colour = np.array(rng.choice([(120, 160, 210), (150, 150, 160), (200, 130, 130)]), dtype=np.float32)
    thickness = max(1, round(spacing / rng.uniform(14, 30)))
    strength = rng.uniform(0.35, 0.8)
    mask = np.zeros((height, width), dtype=np.float32)
    offset = rng.uniform(0, spacing)
    for y in np.arange(offset, height, spacing).astype(int):
        mask[y : y + thickness] = 1
    if kind == "grid":
        for x in np.arange(rng.uniform(0, spacing), width, spacing).astype(int):
            mask[:, x : x + thickness] = 1
    return composite(sheet, mask * strength, colour)


def composite(sheet: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """Lay ink of `colour` over the sheet with coverage `mask` (0..1); ink darkens like real pigment."""
    coverage = np.clip(mask, 0, 1)[..., None]
    return sheet * (1 - coverage) + np.asarray(colour, dtype=np.float32) * coverage


def glyph_mask(font: ImageFont.FreeTypeFont, text: str, embolden: int = 0) -> np.ndarray:
    """The text's coverage (0..1) cropped to its ink, optionally thickened by `embolden` pixels of outline."""
    left, top, right, bottom = font.getbbox(text, stroke_width=embolden)
    pad = 4 + embolden
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, fill=255, font=font, stroke_width=embolden,
                                stroke_fill=255)
    return crop_to_ink(np.asarray(canvas, dtype=np.float32) / 255)


def crop_to_ink(mask: np.ndarray) -> np.ndarray:
    """The smallest box holding every pixel with any ink."""
    rows, columns = np.nonzero(mask > 0.02)
    if rows.size == 0:
        return mask
    return mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]


def thin(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Thinner strokes: a minimum filter erodes `pixels` from each edge (a fine pen instead of a bold one)."""
    if pixels <= 0:
        return mask
    image = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(2 * pixels + 1))
    return np.asarray(image, dtype=np.float32) / 255


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale a coverage mask to (height, width) with bicubic interpolation, clipped to 0..1."""
    image = Image.fromarray(mask.astype(np.float32), mode="F").resize(
        (max(1, width), max(1, height)), Image.Resampling.BICUBIC
    )
    return np.clip(np.asarray(image), 0, 1)


def pen_stroke(mask: np.ndarray, rng: np.random.Generator, boldness: float) -> np.ndarray:
    """Turn a soft, enlarged scan (an MNIST digit) into crisp pen ink. The scan is first blurred by a
    24th of its height, which rounds off the 28-pixel grid's staircase, then cut by a steep curve that
    `boldness` (0..1) lowers a little for fatter strokes (not so far that an 8's loops fill up); the ink
    varies like a ballpoint's pressure."""
    radius = max(1.0, mask.shape[0] / 24)
    gray = Image.fromarray(np.clip(mask * 255, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    soft = np.asarray(gray, dtype=np.float32) / 255
    cut = 0.62 - 0.12 * boldness
    ink = np.clip((soft - cut) * rng.uniform(6, 12) + 0.5, 0, 1)
    pressure = 1 - 0.25 * np.abs(smooth_noise(rng, *mask.shape, 4))
    return ink * pressure


def rotate_mask(mask: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate a coverage mask about its centre, growing the canvas so nothing is cut off."""
    image = Image.fromarray(mask.astype(np.float32), mode="F")
    return crop_to_ink(np.asarray(image.rotate(degrees, Image.Resampling.BICUBIC, expand=True)).clip(0, 1))


def shear_mask(mask: np.ndarray, slant: float) -> np.ndarray:
    """Slant a mask sideways by `slant` (x shift per unit height), as hurried writing leans."""
    height, width = mask.shape
    extra = int(abs(slant) * height) + 1
    image = Image.fromarray(mask.astype(np.float32), mode="F")
    shift = -slant * height if slant > 0 else 0
    sheared = image.transform((width + extra, height), Image.Transform.AFFINE,
                              (1, slant, shift, 0, 1, 0), Image.Resampling.BICUBIC)
    return crop_to_ink(np.asarray(sheared).clip(0, 1))


def place(canvas_shape: tuple[int, int], mask: np.ndarray, top: int, left: int) -> np.ndarray:
    """A full-size mask with `mask` pasted at (top, left), clipped at the canvas edges."""
    height, width = canvas_shape
    full = np.zeros((height, width), dtype=np.float32)
    mask_h, mask_w = mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + mask_h, height), min(left + mask_w, width)
    if y1 > y0 and x1 > x0:
        full[y0:y1, x0:x1] = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    return full


def perspective(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """View the sheet from a tilted camera: each corner moves up to `strength` of the side inwards.
    The sheet is warped from a slightly larger view, so the frame stays filled with paper."""
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    jitter = rng.uniform(0, strength, size=(4, 2)) * [width, height]
    inwards = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    source = corners + jitter * inwards
    coefficients = _perspective_coefficients(corners, source)
    rgb = Image.fromarray(to_uint8(image))
    warped = rgb.transform((width, height), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.float32)


def _perspective_coefficients(target: np.ndarray, source: np.ndarray) -> tuple[float, ...]:
    """Pillow's eight coefficients mapping each output corner (target) to the input point (source)."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return tuple(np.linalg.solve(np.array(rows), source.reshape(8)).tolist())


def lighting(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Uneven light: a linear falloff across the sheet, lens vignetting and sometimes a hard-edged shadow
    (a hand or a phone between the lamp and the paper)."""
    height, width = image.shape[:2]
    # Open grids: every term below broadcasts a column against a row instead of filling two full planes.
    y = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    x = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 - strength * rng.uniform(0.2, 0.6) * (np.cos(angle) * x + np.sin(angle) * y + 0.5)
    light = light * (1 - strength * rng.uniform(0, 0.5) * (x**2 + y**2) * 2)
    if rng.random() < 0.3 * strength:
        edge_angle = rng.uniform(0, 2 * np.pi)
        distance = np.cos(edge_angle) * x + np.sin(edge_angle) * y - rng.uniform(-0.3, 0.3)
        softness = rng.uniform(0.01, 0.08)
        light = light * (1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-distance / softness)))
    return image * light[..., None]


def glare(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A whiteboard's specular highlight: a bright soft ellipse that washes out whatever lies under it."""
    height, width = image.shape[:2]
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    ry, rx = rng.uniform(0.1, 0.35) * height, rng.uniform(0.15, 0.5) * width
    spot = np.exp(-(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2))
    amount = rng.uniform(0.3, 0.75) * spot[..., None]
    return image * (1 - amount) + 255 * amount


def blur(rng: np.random.Generator, image: np.ndarray, radius: float) -> np.ndarray:
    """Defocus (a Gaussian of `radius`) or, one time in four, hand shake: the mean of copies shifted along a line."""
    if radius <= 0.05:
        return image
    if rng.random() < 0.25:
        length = max(2, round(radius * 3))
        angle = rng.uniform(0, np.pi)
        shaken = np.zeros_like(image)
        for step in range(length):
            shaken += np.roll(image, (round(step * np.sin(angle)), round(step * np.cos(angle))), axis=(0, 1))
        return shaken / length
    rgb = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return np.asarray(rgb.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)


def sensor_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Camera noise: signal-dependent shot noise plus read noise, in brightness only (a phone's JPEG
    smooths away most colour noise, and one plane costs a third of three)."""
    height, width = image.shape[:2]
    brightness = np.sqrt(np.clip(image.mean(axis=2, keepdims=True), 1, 255))
    noise = rng.standard_normal((height, width, 1), dtype=np.float32) * (brightness * (sigma / 8) + sigma / 2)
    return image + noise


def scanner_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A flatbed's marks: faint streaks along the scan direction, salt-and-pepper dust and mild grain."""
    height, width = image.shape[:2]
    streaks = rng.normal(0, rng.uniform(0.5, 3), size=(1, width, 1)).astype(np.float32)
    image = image + streaks + rng.standard_normal((height, width, 1), dtype=np.float32) * rng.uniform(1, 5)
    dust = rng.random((height, width)) < rng.uniform(0, 0.002)
    image[dust] = rng.choice([30.0, 250.0])
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode(rng: np.random.Generator, image: np.ndarray, formats: tuple[tuple[str, float], ...]) -> tuple[bytes, str]:
    """Encode RGB uint8 in a format drawn from `formats` (name, weight): PNG, JPEG or WebP at a random
    quality, BMP, TIFF, or grayscale PNG; returns the bytes and the file suffix."""
    names = [name for name, _ in formats]
    weights = np.array([weight for _, weight in formats], dtype=np.float64)
    name = names[rng.choice(len(names), p=weights / weights.sum())]
    picture = Image.fromarray(image)
    buffer = io.BytesIO()
    if name == "jpeg":
        picture.save(buffer, "JPEG", quality=int(rng.integers(35, 96)), subsampling=int(rng.choice([0, 2])))
        return buffer.getvalue(), ".jpg"
    if name == "webp":
        picture.save(buffer, "WEBP", quality=int(rng.integers(40, 95)), method=2)
        return buffer.getvalue(), ".webp"
    # Fast zlib settings: camera noise does not compress, and level 6 would triple the build time.
    if name == "gray-png":
        picture.convert("L").save(buffer, "PNG", compress_level=1)
        return buffer.getvalue(), ".png"
    if name == "bmp":
        picture.save(buffer, "BMP")
        return buffer.getvalue(), ".bmp"
    if name == "tiff":
        picture.save(buffer, "TIFF", compression="tiff_lzw")
        return buffer.getvalue(), ".tif"
    picture.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), ".png"
