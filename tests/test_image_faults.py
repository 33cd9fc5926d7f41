"""Hostile and odd image files in one batch, end to end: `digitlab predict --json` answers every file, refuses
only the broken ones with a one-line reason, and reads the odd-but-valid ones (16-bit, palette, CMYK, animated,
EXIF-rotated, extreme shapes) as the digit they show."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.predict import Predictor

# MNIST test digits 0 and 1 (a 7 and a 2): the animated GIF's frames, so its answer shows which frame was read.
FIRST, SECOND = 0, 1


def encode(image: Image.Image, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG declaring width x height 8-bit gray pixels, with 1 MB of real compressed zero rows behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(1 << 20), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def exif_rotated(paper: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation that turns them upright again."""
    stored = paper.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def batch(mnist_test) -> dict[str, tuple[bytes, int | str | None]]:
    """Each case: its file's bytes and what must come back: the digit it shows, "answered" (a readable
    image, whatever it shows), or "error" (refused with a reason)."""
    images, labels = mnist_test
    paper = Image.fromarray(255 - images[FIRST])  # dark ink on white paper, as people scan digits
    label = int(labels[FIRST])
    png = encode(paper, "PNG")
    jpeg = encode(paper, "JPEG", quality=95)
    second = Image.fromarray(255 - images[SECOND])
    return {
        "plain.png": (png, label),
        "16-bit.png": (encode(Image.fromarray(np.asarray(paper).astype(np.uint16) * 257), "PNG"), label),
        "palette-transparent.png": (encode(paper.convert("P"), "PNG", transparency=0), label),
        "cmyk.jpg": (encode(paper.convert("CMYK"), "JPEG", quality=95), label),
        "animated.gif": (encode(paper, "GIF", save_all=True, append_images=[second], duration=100, loop=0), label),
        "exif-6.jpg": (exif_rotated(paper, 6), label),
        "exif-8.jpg": (exif_rotated(paper, 8), label),
        "1x1.png": (encode(Image.new("L", (1, 1), 0), "PNG"), "answered"),
        "10000x10.png": (encode(Image.new("L", (10000, 10), 255), "PNG"), "answered"),
        "10x10000.png": (encode(Image.new("L", (10, 10000), 255), "PNG"), "answered"),
        "bomb.png": (png_bomb(50000, 50000), "error"),
        "empty.png": (b"", "error"),
        "truncated.png": (png[: len(png) // 2], "error"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "error"),
        "text.png": (b"this is a note, not a picture of a digit\n", "error"),
    }


def check_answer(answer: dict, expected: int | str | None) -> None:
    assert "Traceback" not in json.dumps(answer)
    if expected == "error":
        assert answer["digit"] is None and answer["probabilities"] is None
        assert isinstance(answer["error"], str) and "\n" not in answer["error"] and answer["path"] in answer["error"]
        return
    assert answer["error"] is None, answer["error"]
    if expected != "answered":
        assert answer["digit"] == expected, f"{answer['path']}: read as {answer['digit']}, shows {expected}"


@pytest.mark.fault("images")
def test_one_predict_answers_every_file_of_a_hostile_batch(tmp_path, cli, batch, record_property):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, (content, _) in batch.items():
        (folder / name).write_bytes(content)
    (folder / "x.png").mkdir()  # a folder with an image's name is not a file to answer

    result = cli("predict", "--json", folder)
    answers = {Path(answer["path"]).name: answer for answer in json.loads(result.stdout)}
    assert sorted(answers) == sorted(batch), "every file answered once, the folder named x.png skipped"
    for name, (_, expected) in batch.items():
        check_answer(answers[name], expected)
    refused = sum(expected == "error" for _, expected in batch.values())
    assert result.returncode == 1, "exit status 1 because some files failed, and only then"
    assert result.stderr == f"digitlab: {refused} of {len(batch)} files could not be read\n"
    assert "pixels" in answers["bomb.png"]["error"] and "empty" in answers["empty.png"]["error"]
    record_property("fault_cases", len(batch) + 1)


@pytest.mark.fault("images")
def test_the_same_batch_as_bytes_through_predictor_answer(batch):
    # The service's path: encoded bytes, no files; the answers must match the CLI's promises.
    answers = Predictor().answer([(name, content) for name, (content, _) in batch.items()])
    assert [answer["path"] for answer in answers] == list(batch)
    for answer, (_, expected) in zip(answers, batch.values()):
        check_answer(answer, expected)


@pytest.mark.fault("images")
@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_is_prepared_upright(batch, orientation):
    upright, turned = Predictor().answer(
        [("upright.jpg", batch["plain.png"][0]), (f"exif-{orientation}.jpg", batch[f"exif-{orientation}.jpg"][0])],
        include_prepared=True,
    )
    as_stored = Image.open(io.BytesIO(batch[f"exif-{orientation}.jpg"][0]))  # its pixels without the EXIF turn
    stored, = Predictor().answer([("stored.png", encode(as_stored, "PNG"))], include_prepared=True)
    want = np.array(upright["prepared"], dtype=float)
    got = np.array(turned["prepared"], dtype=float)
    ignored = np.array(stored["prepared"], dtype=float)
    # JPEG blurs a few grey levels; reading the file sideways would move the ink itself.
    assert np.abs(got - want).mean() < 0.1 * np.abs(ignored - want).mean()


@pytest.mark.fault("images")
def test_animated_gif_is_read_from_its_first_frame(batch, mnist_test):
    answer, = Predictor().answer([("animated.gif", batch["animated.gif"][0])], include_prepared=True)
    first, = Predictor().answer([("first", 255 - mnist_test[0][FIRST])], include_prepared=True)
    second, = Predictor().answer([("second", 255 - mnist_test[0][SECOND])], include_prepared=True)
    assert answer["prepared"] == first["prepared"] and answer["prepared"] != second["prepared"]
