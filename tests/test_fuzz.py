"""Property-based fuzzing of the two readers of untrusted bytes: read_idx and decode_image (and prepare_digit after it).

The contract: fed random or mutated bytes, each returns valid data or raises digitlab's own error type
(DataError for IDX, ImageError for images), never another exception, and never allocates what a header
claims before the file shows it holds that much.
"""

from __future__ import annotations

import gzip
import io
import math
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from digitlab.data import MAX_IDX_BYTES, read_idx
from digitlab.decode import MAX_PIXELS, decode_image
from digitlab.errors import DataError, ImageError
from digitlab.vision import load_digit, prepare_digit
from test_data import IDX_CODES, idx_bytes
from test_decode import png_header_only

# Pillow warns about every corrupt tag it skips; here corrupt files are the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

# No example database: a fuzz run leaves nothing behind in the checkout; a failure prints its own reproducer.
FUZZ = settings(deadline=None, database=None, max_examples=200)

# The IDX format's type codes, big-endian as the format stores them; the oracle reads files with these.
IDX_TYPES = {code: dtype.newbyteorder(">") for dtype, code in IDX_CODES.items()}
# A 40 kB file is read in 1 MiB chunks; a reader that sized anything from a forged header would need GiBs.
IDX_READ_PEAK_BYTES = 8 << 20


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example's file (hypothesis re-runs a test body, so function-scoped tmp_path won't do)."""
    return tmp_path_factory.mktemp("fuzz")


# ---- read_idx: an oracle written from the IDX format ----

def idx_layout(content: bytes) -> tuple[np.dtype, tuple[int, ...]] | None:
    """The (big-endian dtype, shape) of well-formed IDX content of 1 to 4 dimensions whose data fills it exactly."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in IDX_TYPES:
        return None
    dtype, ndim = IDX_TYPES[content[2]], content[3]
    if not 1 <= ndim <= 4 or len(content) < 4 + 4 * ndim:
        return None
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if math.prod(shape) * dtype.itemsize != len(content) - 4 - 4 * ndim:
        return None
    return dtype, shape


def empty_but_vast(dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """Whether shape holds no values yet its other sizes exceed the byte cap: a reader may take or refuse it."""
    return math.prod(n for n in shape if n) * dtype.itemsize > MAX_IDX_BYTES


def uncompressed(data: bytes) -> bytes | None:
    """What a file holding data contains once gzip is undone (by its magic bytes); None when gzip cannot undo it."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


def check_read_idx(path: Path, data: bytes) -> str:
    """read_idx(path) on a file holding data returns exactly the array its content declares, or raises
    a one-line DataError naming the path when the content is not well-formed IDX; nothing else."""
    path.write_bytes(data)
    content = uncompressed(data)
    layout = idx_layout(content) if content is not None else None
    try:
        array = read_idx(path)
    except DataError as error:
        assert layout is None or empty_but_vast(*layout), f"well-formed IDX {layout} refused: {error}"
        assert str(path) in str(error) and "\n" not in str(error)
        return "DataError"
    assert layout is not None, f"malformed IDX accepted as {array.dtype} {array.shape}"
    dtype, shape = layout
    assert array.shape == shape and array.size == math.prod(shape)
    assert array.dtype == dtype.newbyteorder("=") and array.dtype.isnative
    values = np.frombuffer(content, dtype, offset=4 + 4 * len(shape))
    assert array.tobytes() == values.astype(array.dtype).tobytes()
    return f"array {array.dtype} of {array.ndim} dimensions"


def idx_header(code: int, ndim: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)


@st.composite
def idx_like(draw) -> bytes:
    """Bytes laid out like IDX, each part valid or not: magic, type code, rank, sizes, data of about the declared length."""
    magic = draw(st.sampled_from([b"\0\0", b"\0\0", b"\0\0", b"\0\x01", b"\x1f\x8b", b"\xff\xff"]))
    code = draw(st.one_of(st.sampled_from(sorted(IDX_TYPES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(0, 5), st.integers(0, 255)))
    sizes = st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
    dims = draw(st.lists(sizes, min_size=ndim, max_size=ndim))
    itemsize = IDX_TYPES[code].itemsize if code in IDX_TYPES else 1
    declared = math.prod(dims) * itemsize if ndim <= 4 else 0
    length = max(0, min(declared, 4096) + draw(st.integers(-3, 3)))
    body = draw(st.binary(min_size=length, max_size=length))
    header = magic + idx_header(code, ndim, dims)[2:]
    return header[: draw(st.integers(0, len(header)))] if draw(st.booleans()) else header + body


@pytest.mark.fault("IDX reader")
@settings(FUZZ, max_examples=300)
@given(data=st.binary(max_size=512), compress=st.booleans())
def test_read_idx_on_arbitrary_bytes(scratch, data, compress):
    event(check_read_idx(scratch / "arbitrary.idx", gzip.compress(data) if compress else data))


# A size of 0 beside sizes whose product passes numpy's limit: 0 bytes declared, but numpy cannot shape them.
ZERO_BESIDE_HUGE = idx_header(0x08, 3, [0, 2**32 - 1, 2**32 - 1])


@pytest.mark.fault("IDX reader")
@settings(FUZZ, max_examples=300)
@example(content=ZERO_BESIDE_HUGE, compress=False)
@given(content=idx_like(), compress=st.booleans())
def test_read_idx_on_bytes_shaped_like_idx(scratch, content, compress):
    event(check_read_idx(scratch / "shaped.idx", gzip.compress(content) if compress else content))


@pytest.mark.fault("IDX reader")
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_zero_size_beside_huge_sizes_is_a_data_error(scratch, compress):
    path = scratch / "zero-beside-huge.idx"
    path.write_bytes(gzip.compress(ZERO_BESIDE_HUGE) if compress else ZERO_BESIDE_HUGE)
    with pytest.raises(DataError) as raised:
        read_idx(path)
    assert str(path) in str(raised.value)


@pytest.fixture(scope="module")
def real_idx(mnist_test) -> bytes:
    """The first 50 real MNIST test images as an IDX file: 16 bytes of header, 39,200 of pixels."""
    return idx_bytes(mnist_test[0][:50])


# Headers that reinterpret the 39,200 pixel bytes as other valid arrays, so mutants also hit wider types.
REHEADERS = [
    (0x08, (39200,)), (0x08, (50, 784)), (0x08, (100, 14, 28)), (0x08, (25, 2, 28, 28)), (0x09, (50, 28, 28)),
    (0x0B, (19600,)), (0x0B, (50, 14, 28)), (0x0C, (9800,)), (0x0C, (25, 28, 14)), (0x0D, (50, 196)),
    (0x0D, (2, 25, 14, 14)), (0x0E, (4900,)), (0x0E, (50, 98)),
]
positions = st.one_of(st.integers(0, 15), st.integers(0, 1 << 17))
idx_mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), positions, st.integers(1, 255)),
        st.tuples(st.just("truncate"), positions),
        st.tuples(st.just("dim"), st.integers(0, 3),
                  st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1), st.sampled_from([2**31, 2**32 - 1]))),
        st.tuples(st.just("dtype"), st.integers(0, 255)),
        st.tuples(st.just("ndim"), st.integers(0, 255)),
        st.tuples(st.just("reheader"), st.sampled_from(REHEADERS)),
    ),
    min_size=1,
    max_size=4,
)


def mutate_idx(content: bytes, mutations: list[tuple]) -> bytes:
    data = bytearray(content)
    for kind, *args in mutations:
        if kind == "flip" and data:
            data[args[0] % len(data)] ^= args[1]
        elif kind == "truncate":
            del data[args[0] % (len(data) + 1) :]
        elif kind == "dim":
            start = 4 + 4 * args[0]
            data[start : start + 4] = args[1].to_bytes(4, "big")
        elif kind in ("dtype", "ndim"):
            at = 2 if kind == "dtype" else 3
            if at < len(data):
                data[at] = args[0]
        elif kind == "reheader":
            code, shape = args[0]
            data[:16] = idx_header(code, len(shape), list(shape))
    return bytes(data)


@pytest.mark.fault("IDX reader")
@settings(FUZZ, max_examples=250)
@given(mutations=idx_mutations, compress=st.booleans())
def test_read_idx_on_mutated_mnist(scratch, real_idx, mutations, compress):
    content = mutate_idx(real_idx, mutations)
    event(check_read_idx(scratch / "mutant.idx", gzip.compress(content) if compress else content))


@pytest.mark.fault("IDX reader")
@FUZZ
@given(
    huge=st.dictionaries(st.integers(0, 2), st.integers(2**16, 2**32 - 1), min_size=1),
    code=st.sampled_from(sorted(IDX_TYPES)),
    compress=st.booleans(),
)
def test_huge_declared_sizes_are_refused_without_allocating_them(scratch, real_idx, huge, code, compress):
    dims = [huge.get(i, n) for i, n in enumerate((50, 28, 28))]
    content = idx_header(code, 3, dims) + real_idx[16:]
    path = scratch / "huge.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as raised:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(raised.value)
    declared = math.prod(dims) * IDX_TYPES[code].itemsize
    assert peak < IDX_READ_PEAK_BYTES, f"{peak} bytes allocated for a header declaring {declared}"


@pytest.mark.fault("IDX reader")
@FUZZ
@given(
    array=st.sampled_from(["f4", "f8"]).flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
            elements=st.floats(allow_nan=True, allow_infinity=True, width=8 * np.dtype(dtype).itemsize),
        )
    ),
    compress=st.booleans(),
)
def test_float_idx_keeps_nan_and_infinity(scratch, array, compress):
    # The reader checks structure, not values: NaN and inf pixels come back bit for bit.
    path = scratch / "float.idx"
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if compress else content)
    result = read_idx(path)
    assert result.dtype == array.dtype and result.dtype.isnative and result.shape == array.shape
    assert result.tobytes() == array.tobytes()


# ---- decode_image, read_image and load_digit ----

def check_decode(data: bytes, path: Path) -> str:
    """decode_image(data) gives a 2-D uint8 array within the pixel limit or raises ImageError, and the
    file path (read_image, load_digit) gives the same digit or the same refusal; nothing else."""
    path.write_bytes(data)
    try:
        gray = decode_image(data, path.name)
    except ImageError:
        with pytest.raises(ImageError):
            load_digit(path)
        return "ImageError"
    assert isinstance(gray, np.ndarray) and gray.ndim == 2 and gray.dtype == np.uint8
    assert gray.size <= MAX_PIXELS
    try:
        expected = prepare_digit(gray)
    except ImageError:
        assert gray.size == 0, f"prepare_digit refused a decoded {gray.shape} image"
        with pytest.raises(ImageError):
            load_digit(path)
        return "empty image"
    digit = load_digit(path)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    np.testing.assert_array_equal(digit, expected)
    return "decoded"


# Magic numbers of formats Pillow reads, so random tails reach the parsers behind them.
MAGICS = [
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"GIF89a", b"GIF87a", b"BM", b"II*\0",
    b"MM\0*", b"RIFF\0\0\0\0WEBPVP8L", b"RIFF\0\0\0\0WEBPVP8 ", b"P5\n", b"P6\n", b"Pf\n", b"PF\n", b"\0\0\1\0",
    b"8BPS", b"\0\0\0\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"\0\0\0\x1cftypavif", b"icns", b"DDS ",
    b"SIMPLE  =                    T", b"\x59\xa6\x6a\x95", b"\x01\xda", b"qoif", b"\x0a\x05\x01\x08",
]


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=300)
@given(data=st.binary(max_size=1024))
def test_decode_image_on_arbitrary_bytes(scratch, data):
    event(check_decode(data, scratch / "arbitrary.img"))


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=300)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=512))
def test_decode_image_on_bytes_behind_a_format_magic(scratch, magic, tail):
    event(check_decode(magic + tail, scratch / "magic.img"))


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


ENCODINGS = (
    "png", "png-16-bit", "png-palette-transparent", "png-rgba", "jpeg-exif-rotated", "gif-animated", "bmp",
    "tiff", "tiff-lzw", "tiff-float", "webp-lossless", "webp-lossy", "ico", "ppm", "jpeg2000",
)


@pytest.fixture(scope="module")
def encoded_digits(mnist_test) -> dict[str, bytes]:
    """A real MNIST digit, as dark ink on paper, encoded in each of ENCODINGS by Pillow."""
    paper = Image.fromarray(255 - mnist_test[0][0])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display: mutants reach exif_transpose
    palette = paper.convert("P")
    alpha = Image.fromarray(np.asarray(paper) // 2)
    encoded = {
        "png": encode(paper, "PNG"),
        "png-16-bit": encode(Image.fromarray(np.asarray(paper).astype(np.uint16) * 257), "PNG"),
        "png-palette-transparent": encode(palette, "PNG", transparency=0),
        "png-rgba": encode(Image.merge("RGBA", (paper, paper, paper, alpha)), "PNG"),
        "jpeg-exif-rotated": encode(paper, "JPEG", quality=90, exif=exif.tobytes()),
        "gif-animated": encode(paper, "GIF", save_all=True, append_images=[Image.new("L", (28, 28), 128)]),
        "bmp": encode(paper, "BMP"),
        "tiff": encode(paper, "TIFF"),
        "tiff-lzw": encode(paper, "TIFF", compression="tiff_lzw"),
        "tiff-float": encode(Image.fromarray(np.asarray(paper, dtype=np.float32) / 255), "TIFF"),
        "webp-lossless": encode(paper, "WEBP", lossless=True),
        "webp-lossy": encode(paper, "WEBP", quality=80),
        "ico": encode(paper, "ICO", sizes=[(28, 28)]),
        "ppm": encode(paper, "PPM"),
        "jpeg2000": encode(paper, "JPEG2000"),
    }
    assert tuple(encoded) == ENCODINGS
    return encoded


image_positions = st.one_of(st.integers(0, 64), st.integers(0, 1 << 16))
image_mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), image_positions, st.integers(1, 255)),
        st.tuples(st.just("truncate"), image_positions),
        # Overwrite 2 or 4 bytes with a chosen number, either byte order: how size fields get forged.
        st.tuples(st.just("number"), image_positions, st.sampled_from([2, 4]), st.sampled_from(["big", "little"]),
                  st.one_of(st.integers(0, 8), st.sampled_from([0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))),
        st.tuples(st.just("delete"), image_positions, st.integers(1, 16)),
        st.tuples(st.just("insert"), image_positions, st.binary(min_size=1, max_size=16)),
    ),
    min_size=1,
    max_size=4,
)


def mutate_image(content: bytes, mutations: list[tuple]) -> bytes:
    data = bytearray(content)
    for kind, position, *args in mutations:
        at = position % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= args[0]
        elif kind == "truncate":
            del data[at:]
        elif kind == "number":
            width, order, value = args
            data[at : at + width] = (value % (1 << 8 * width)).to_bytes(width, order)
        elif kind == "delete":
            del data[at : at + args[0]]
        elif kind == "insert":
            data[at:at] = args[0]
    return bytes(data)


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=400)
@given(encoding=st.sampled_from(ENCODINGS), mutations=image_mutations)
def test_decode_image_on_mutated_real_images(scratch, encoded_digits, encoding, mutations):
    outcome = check_decode(mutate_image(encoded_digits[encoding], mutations), scratch / f"mutant-{encoding}")
    event(f"{encoding}: {outcome}")


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=150)
@given(
    pixels=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16),
                      elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
    file_format=st.sampled_from(["TIFF", "PPM"]),  # Pillow writes a float image as PPM's float variant, PFM
)
def test_float_images_with_nan_and_infinity_decode_to_8_bit(scratch, pixels, file_format):
    data = encode(Image.fromarray(pixels), file_format)
    assert check_decode(data, scratch / f"float.{file_format.lower()}") == "decoded"
    gray = decode_image(data)
    assert gray.shape == pixels.shape
    # Whatever the rescaling, it must not swap the order of two finite pixels.
    finite = np.isfinite(pixels)
    order = np.argsort(pixels[finite], kind="stable")
    assert (np.diff(gray[finite][order].astype(int)) >= 0).all()


@pytest.mark.fault("image decoding")
@FUZZ
@given(width=st.integers(1, 2**32 - 1), height=st.integers(1, 2**32 - 1))
def test_png_header_without_pixels_is_refused(width, height):
    # A valid IHDR (with its CRC) and no image data: nothing to decode, whatever size it declares.
    with pytest.raises(ImageError) as raised:
        decode_image(png_header_only(width, height), "header.png")
    if width * height > MAX_PIXELS:
        assert "pixels" in str(raised.value)


# ---- prepare_digit ----

gray_shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=64)


def check_prepared(gray: np.ndarray) -> np.ndarray:
    """prepare_digit(gray) is a (28, 28) uint8 digit and leaves its input as it was."""
    before = gray.copy()
    digit = prepare_digit(gray)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    np.testing.assert_array_equal(gray, before)
    return digit


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=300)
@given(gray=hnp.arrays(np.uint8, gray_shapes), view=st.sampled_from(["as is", "transposed", "every other row"]))
def test_prepare_digit_on_any_grayscale_image(gray, view):
    gray = {"as is": gray, "transposed": gray.T, "every other row": gray[::2]}[view]
    check_prepared(gray)


@pytest.mark.fault("image decoding")
@FUZZ
@given(shape=gray_shapes, level=st.integers(0, 255))
def test_uniform_image_prepares_to_black(shape, level):
    assert check_prepared(np.full(shape, level, dtype=np.uint8)).max() == 0


@pytest.mark.fault("image decoding")
@settings(FUZZ, max_examples=250)
@given(
    ground=st.sampled_from([0, 255]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=3, max_side=64),
    contrast=st.integers(1, 255),
    ink=st.data(),
)
def test_ink_on_a_plain_border_is_never_lost(ground, shape, contrast, ink):
    # A border of pure black (or white) leaves no doubt about the background, so any other pixel is ink,
    # however faint: preparation stretches the ink to full range before it thresholds.
    gray = np.full(shape, ground, dtype=np.uint8)
    levels = st.integers(0, contrast) if ground == 0 else st.integers(255 - contrast, 255)
    inside = ink.draw(hnp.arrays(np.uint8, (shape[0] - 2, shape[1] - 2), elements=levels))
    gray[1:-1, 1:-1] = inside
    digit = check_prepared(gray)
    assert digit.any() == (inside != ground).any()
