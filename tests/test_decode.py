"""Tests for digitlab.decode: real files in many formats written by Pillow, broken files and decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from digitlab.decode import ANALYSIS_SIDE, MAX_PIXELS, decode_for_analysis, decode_image, read_image
from digitlab.errors import ImageError


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def encoded(gray: np.ndarray, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, image_format, **options)
    return buffer.getvalue()




# ---- decoding formats ----

@pytest.mark.parametrize(
    "suffix, options",
    [
        ("png", {}),
        ("bmp", {}),
        ("tiff", {}),
        ("webp", {"lossless": True}),
        ("gif", {}),
    ],
)
def test_lossless_formats_decode_exactly(tmp_path, paper, suffix, options):
    path = save(Image.fromarray(paper), tmp_path / f"digit.{suffix}", **options)
    gray = read_image(path)
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, paper)


def test_jpeg_decodes_close_to_the_original(tmp_path, paper):
    path = save(Image.fromarray(paper), tmp_path / "digit.jpg", quality=95)
    gray = read_image(path)
    assert gray.shape == paper.shape and gray.dtype == np.uint8
    assert np.abs(gray.astype(int) - paper).mean() < 6


def test_colour_image_becomes_luminance(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma 0.299 * 255
    gray = read_image(save(Image.fromarray(rgb), tmp_path / "red.png"))
    np.testing.assert_array_equal(gray, np.full((8, 8), 76, dtype=np.uint8))


def test_animated_gif_gives_its_first_frame(tmp_path, paper):
    frames = [Image.fromarray(paper), Image.new("L", (28, 28), 0), Image.new("L", (28, 28), 128)]
    path = save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as written:
        assert written.n_frames == 3
    np.testing.assert_array_equal(read_image(path), paper)


def test_palette_image_maps_through_its_palette(tmp_path):
    indices = np.zeros((6, 6), dtype=np.uint8)
    indices[2:4, 2:4] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 255, 255, 0, 0, 0] + [0, 0, 0] * 254)
    gray = read_image(save(image, tmp_path / "palette.png"))
    expected = np.where(indices == 1, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(gray, expected)


def test_palette_transparency_is_white_paper(tmp_path):
    indices = np.zeros((6, 6), dtype=np.uint8)
    indices[1:3, 1:3] = 1
    image = Image.fromarray(indices, mode="P")
    # Index 0 is black but fully transparent: it must read as paper, not ink.
    image.putpalette([0, 0, 0, 40, 40, 40] + [0, 0, 0] * 254)
    path = save(image, tmp_path / "palette-alpha.png", transparency=0)
    gray = read_image(path)
    np.testing.assert_array_equal(gray, np.where(indices == 1, 40, 255).astype(np.uint8))


def test_rgba_transparent_pixels_become_white_paper(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # black everywhere
    rgba[0, :, 3] = 255  # row 0: opaque black ink
    rgba[1, :, 3] = 128  # row 1: half-transparent black
    # rows 2 and 3 stay alpha 0: transparent, whatever their colour
    gray = read_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png"))
    assert (gray[0] == 0).all()
    assert (np.abs(gray[1].astype(int) - 127) <= 1).all()
    assert (gray[2:] == 255).all()


def test_la_transparent_pixels_become_white_paper(tmp_path):
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[:2, :, 1] = 255  # top half opaque black, bottom half transparent black
    gray = read_image(save(Image.fromarray(la, mode="LA"), tmp_path / "la.png"))
    assert (gray[:2] == 0).all() and (gray[2:] == 255).all()


def test_16_bit_image_is_rescaled_to_8_bit(tmp_path, paper):
    wide = paper.astype(np.uint16) * 257  # 0..255 -> 0..65535
    path = save(Image.fromarray(wide), tmp_path / "deep.png")
    with Image.open(path) as written:
        assert written.mode.startswith("I")
    gray = read_image(path)
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, paper)


def test_float_image_is_rescaled_to_8_bit(tmp_path, paper):
    path = save(Image.fromarray(paper.astype(np.float32) / 255), tmp_path / "float.tiff")
    with Image.open(path) as written:
        assert written.mode == "F"
    gray = read_image(path)
    assert gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, paper)


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    # Stored 40 wide x 20 high: left half dark, right half light. Orientation 6 means
    # "rotate 90 degrees clockwise to display", which puts the left half on top.
    stored = np.full((20, 40), 255, dtype=np.uint8)
    stored[:, :20] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(Image.fromarray(stored), tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    gray = read_image(path)
    assert gray.shape == (40, 20)
    assert gray[:15].mean() < 40 and gray[25:].mean() > 215


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_big_jpeg_is_decoded_small_for_analysis_and_knows_its_full_size(orientation):
    # A 4000x1200 photo, dark on its left quarter: libjpeg decodes it at a quarter, still over the analysis side.
    stored = np.full((1200, 4000), 230, dtype=np.uint8)
    stored[:, :1000] = 20
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, "JPEG", exif=exif.tobytes(), quality=90)
    full = decode_image(data)
    small, full_shape = decode_for_analysis(data)
    assert full_shape == full.shape == ((1200, 4000) if orientation == 1 else (4000, 1200))
    assert max(small.shape) == 1000 and small.shape[0] * 4 == full.shape[0] and small.shape[1] * 4 == full.shape[1]
    # The same picture: the dark quarter on the left, or on top once turned upright.
    dark = small[:, :240] if orientation == 1 else small[:240]
    assert dark.mean() < 40 and abs(float(small.mean()) - float(full.mean())) < 2
    # Other formats at any size, and JPEGs under twice the analysis side, are decoded whole.
    for whole in (encoded(stored, "PNG"), encoded(stored[: 2 * ANALYSIS_SIDE - 1, : 2 * ANALYSIS_SIDE - 1], "JPEG")):
        again, again_shape = decode_for_analysis(whole)
        np.testing.assert_array_equal(again, decode_image(whole))
        assert again_shape == again.shape


@pytest.mark.parametrize("carrier", ["eXIf chunk", "raw profile", "XMP"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_png_orientation_is_honoured_wherever_it_is_stored(tmp_path, carrier, orientation):
    # PNG carries orientation in an eXIf chunk, in ImageMagick's and GIMP's hexadecimal "Raw profile type
    # exif" text, or in XMP; the cheap check that skips Pillow's EXIF parse must not miss any of them.
    stored = np.full((20, 40), 255, dtype=np.uint8)
    stored[:, :20] = 0
    exif = Image.Exif()
    exif[0x0131] = "GIMP 2.10.2"
    exif[0x0112] = orientation
    data = exif.tobytes()
    info = PngImagePlugin.PngInfo()
    options = {}
    if carrier == "eXIf chunk":
        options["exif"] = data
    elif carrier == "raw profile":
        info.add_text("Raw profile type exif", f"\nexif\n{len(data):8}\n{data.hex()}\n", zip=True)
    else:
        info.add_itxt("XML:com.adobe.xmp", f'<x:xmpmeta><rdf:Description tiff:Orientation="{orientation}"/></x:xmpmeta>')
    path = save(Image.fromarray(stored), tmp_path / "turned.png", pnginfo=info, **options)
    gray = read_image(path)
    if orientation == 1:
        np.testing.assert_array_equal(gray, stored)
    else:
        assert gray.shape == (40, 20)
        assert gray[:15].mean() < 40 and gray[25:].mean() > 215


def test_decode_image_reads_bytes(paper):
    buffer = io.BytesIO()
    Image.fromarray(paper).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode_image(buffer.getvalue(), "upload.png"), paper)


# ---- refusals ----

def png_header_only(width: int, height: int) -> bytes:
    """A real PNG signature and IHDR declaring width x height 8-bit gray, with no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def real_png(tmp_path, paper) -> Path:
    return save(Image.fromarray(paper), tmp_path / "real.png")


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.png", lambda real: b""),
        ("truncated.png", lambda real: real[: len(real) // 2]),
        ("noise.png", lambda real: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("notes.png", lambda real: b"these are my notes, not a picture\n" * 20),
    ],
)
def test_unreadable_files_raise_image_error_naming_the_path(tmp_path, real_png, name, content):
    path = tmp_path / name
    path.write_bytes(content(real_png.read_bytes()))
    with pytest.raises(ImageError) as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_missing_file_raises_image_error(tmp_path):
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageError, match="nowhere.png"):
        read_image(path)


@pytest.mark.parametrize("side", [7000, 20000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    # The file holds no pixel data: only a refusal from the declared size can explain the message.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    assert path.stat().st_size < 100 and side * side > MAX_PIXELS
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert str(path) in message and "pixels" in message


def test_own_pixel_limit_names_the_limit(tmp_path):
    with pytest.raises(ImageError, match="40,000,000"):
        decode_image(png_header_only(7000, 7000), "big.png")
