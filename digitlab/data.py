"""Data sets as tables of files and checksums, one verified downloader, and an IDX reader."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import os
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import numpy as np
import platformdirs
import pooch
import requests  # pooch downloads with requests, so its errors are the ones a mirror raises

from .errors import DataError, ImageError

log = logging.getLogger(__name__)

# MNIST-sized files are under 50 MB; a GiB cap stops a corrupt header or a gzip bomb from
# exhausting memory long before any real digit data set comes near it.
MAX_IDX_BYTES = 1 << 30
CHUNK_BYTES = 1 << 20
# Seconds without a byte before a mirror counts as down; the slowest public mirrors answer in a few.
DOWNLOAD_TIMEOUT_S = 30
GZIP_MAGIC = b"\x1f\x8b"
# gzip adds a header and a few bytes per 64 kB block, so no honest mirror sends more than this much over
# a file's size; past it a mirror is streaming junk (or a Content-Encoding bomb that requests undoes).
DOWNLOAD_SLACK_BYTES = 4096

# IDX type codes (third magic byte); multi-byte values are big-endian in the format.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class DataFile:
    """One file of a data set: its name on the mirrors and the sha256 and size of its content."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DataSource:
    """A data set: its (images, labels) files per split, where to find them, and what labels mean."""

    name: str
    train: tuple[DataFile, DataFile]
    test: tuple[DataFile, DataFile]
    mirrors: tuple[str, ...]
    local_dirs: tuple[str, ...]
    class_names: tuple[str, ...]


# Beside a checkout of this repository lies shared/data, which holds MNIST for offline runs.
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

DATASETS: dict[str, DataSource] = {
    "mnist": DataSource(
        name="mnist",
        train=(
            DataFile("train-images-idx3-ubyte.gz",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
            DataFile("train-labels-idx1-ubyte.gz",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
        ),
        test=(
            DataFile("t10k-images-idx3-ubyte.gz",
                     "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
            DataFile("t10k-labels-idx1-ubyte.gz",
                     "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
        ),
        # The mirrors torchvision and Keras use; LeCun's own site is last because it often refuses.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        local_dirs=(str(SHARED_DATA_DIR / "mnist"),),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DataSource(
        name="fashion-mnist",
        train=(
            DataFile("train-images-idx3-ubyte.gz",
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
            DataFile("train-labels-idx1-ubyte.gz",
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
        ),
        test=(
            DataFile("t10k-images-idx3-ubyte.gz",
                     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
            DataFile("t10k-labels-idx1-ubyte.gz",
                     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        # Where Debian's dataset-fashion-mnist package installs it.
        local_dirs=("/usr/share/datasets/fashion-mnist",),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


def _open_content(path: Path) -> BinaryIO:
    """Open path for reading its content, unwrapping gzip when the magic bytes say so (not the name)."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _read_at_most(stream: BinaryIO, limit: int) -> bytearray:
    """Read up to limit bytes in chunks, so memory grows with what the file holds, not what it claims."""
    data = bytearray()
    while len(data) < limit and (chunk := stream.read(min(CHUNK_BYTES, limit - len(data)))):
        data += chunk
    return data


def _bad_idx(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}; fetch the file again or point to a valid IDX file")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array, checking its header against its size."""
    path = Path(path)
    try:
        with _open_content(path) as stream:
            return _parse_idx(stream, path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (OSError, EOFError, zlib.error) as error:
        raise _bad_idx(path, f"cannot read it ({error})") from None


def _parse_idx(stream: BinaryIO, path: Path) -> np.ndarray:
    """The array an IDX stream holds; path only names the file in errors."""
    header = stream.read(4)
    if len(header) < 4:
        raise _bad_idx(path, f"file ends after {len(header)} bytes, inside the IDX header")
    if header[:2] != b"\0\0" or header[2] not in IDX_DTYPES:
        raise _bad_idx(path, f"not an IDX file (magic bytes {header.hex()})")
    dtype, ndim = IDX_DTYPES[header[2]], header[3]
    if not 1 <= ndim <= 4:
        raise _bad_idx(path, f"IDX header declares {ndim} dimensions, expected 1 to 4")
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise _bad_idx(path, "file ends inside the IDX header's dimension sizes")
    shape = tuple(int.from_bytes(dims_bytes[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    expected = math.prod(shape) * dtype.itemsize
    # Zero-sized axes count as one here, so (0, 2**32, 2**32) cannot slip past the cap as "0 bytes".
    if math.prod(max(size, 1) for size in shape) * dtype.itemsize > MAX_IDX_BYTES:
        raise _bad_idx(path, f"IDX header declares shape {shape} ({expected} bytes), "
                             f"more than the {MAX_IDX_BYTES} bytes digitlab reads")
    # One byte past the declared size tells a file with trailing data from an exact one.
    payload = _read_at_most(stream, expected + 1)
    if len(payload) != expected:
        held = "more" if len(payload) > expected else f"{len(payload)} bytes"
        raise _bad_idx(path, f"IDX header declares shape {shape} ({expected} bytes of data) "
                             f"but the file holds {held}")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _default_data_dir() -> Path:
    # The one environment variable digitlab reads, so a shared machine can point every run at one cache.
    from_env = os.environ.get("DIGITLAB_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_cache_dir("digitlab")) / "data"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder for downloaded data: override, else $DIGITLAB_DATA_DIR, else the user's cache."""
    return Path(override).expanduser() if override is not None else _default_data_dir()


def _verified_content(path: Path, file: DataFile) -> tuple[bytearray | None, str | None]:
    """path's uncompressed content when it is file's, else None and why not. Read once, so a
    verified file is parsed from memory instead of being decompressed a second time."""
    try:
        with _open_content(path) as stream:
            content = _read_at_most(stream, file.size + 1)
    except (OSError, EOFError, zlib.error) as error:
        return None, f"unreadable ({error})"
    if len(content) > file.size:
        return None, f"content is larger than the expected {file.size} bytes"
    if len(content) != file.size:
        return None, f"content is {len(content)} bytes, expected {file.size}"
    digest = hashlib.sha256(content).hexdigest()
    if digest != file.sha256:
        return None, f"content sha256 {digest} is not the expected {file.sha256}"
    return content, None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _refuse_downgrade(response: requests.Response, *args, **kwargs) -> None:
    """A requests response hook: never follow a redirect from https to plain http. The checksum would catch
    altered content, but a downgraded connection lets anyone on the path stall or flood the download."""
    if not response.is_redirect:
        return
    target = urljoin(response.url, response.headers["Location"])
    if urlsplit(response.url).scheme == "https" and urlsplit(target).scheme != "https":
        raise DataError(f"redirected from https to {target}, which digitlab refuses to follow")


class _CappedFile:
    """The download's file, refusing to grow past limit bytes, so a mirror that never stops sending fills no disk."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit, self.written = out, limit, 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        if self.written > self.limit:
            raise DataError(f"sent more than {self.limit} bytes, more than the file can take")
        return self.out.write(chunk)

    def flush(self) -> None:
        self.out.flush()


def _download(url: str, file: DataFile, folder: Path) -> tuple[Path, bytearray]:
    """Download url into folder and move it into place only once its content verifies."""
    handle, partial_name = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.", suffix=".part")
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out:
            download = pooch.HTTPDownloader(
                progressbar=False, timeout=DOWNLOAD_TIMEOUT_S, hooks={"response": _refuse_downgrade}
            )
            download(url, _CappedFile(out, file.size + file.size // 100 + DOWNLOAD_SLACK_BYTES), None)
        content, problem = _verified_content(partial, file)
        if problem:
            raise DataError(problem)
        with open(partial, "rb") as probe:
            # Some servers undo the gzip in transit; name the file for what it holds.
            name = file.name if probe.read(2) == GZIP_MAGIC else file.name.removesuffix(".gz")
        final = folder / name
        os.replace(partial, final)
        return final, content
    finally:
        partial.unlink(missing_ok=True)


def fetch(source: DataSource, file: DataFile, data_dir: Path | None = None) -> Path:
    """A path to file with verified content: from a local folder, the cache, or the first good mirror."""
    return _fetch_content(source, file, data_dir)[0]


def _fetch_content(source: DataSource, file: DataFile, data_dir: Path | None) -> tuple[Path, bytearray]:
    """fetch's path with the verified (uncompressed) content it read there."""
    cache = (Path(data_dir) if data_dir is not None else _default_data_dir()) / source.name
    for folder in [*map(Path, source.local_dirs), cache]:
        for candidate in (folder / file.name, folder / file.name.removesuffix(".gz")):
            if not candidate.is_file():
                continue
            content, problem = _verified_content(candidate, file)
            if problem is None:
                return candidate, content
            if folder == cache:
                log.warning("%s: %s; deleting it and downloading again", candidate, problem)
                candidate.unlink(missing_ok=True)
            else:
                log.warning("%s: %s; ignoring it", candidate, problem)

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{cache}: cannot create the data folder ({_one_line(error)}); "
                        f"choose another with DIGITLAB_DATA_DIR") from None
    failures = []
    for mirror in source.mirrors:
        url = mirror + file.name
        log.info("downloading %s", url)
        try:
            return _download(url, file, cache)
        except (requests.RequestException, OSError, DataError) as error:
            log.warning("%s failed: %s", url, _one_line(error))
            failures.append(f"{url} ({_one_line(error)})")
    raise DataError(f"cannot get {file.name} of {source.name}: tried "
                    + "; ".join(failures)
                    + f"; download it by hand and put it in {cache}")


def load_dataset(name: str, split: str, data_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of a split of a known data set."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} of {name}; known: train, test")
    source = DATASETS[name]
    images_file, labels_file = getattr(source, split)
    images_path, images_content = _fetch_content(source, images_file, data_dir)
    labels_path, labels_content = _fetch_content(source, labels_file, data_dir)
    images = _parse_idx(io.BytesIO(images_content), images_path)
    labels = _parse_idx(io.BytesIO(labels_content), labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise _bad_idx(images_path, f"holds {images.dtype} {images.shape}, expected uint8 (N, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise _bad_idx(labels_path, f"holds labels of shape {labels.shape} for {len(images)} images")
    if labels.size and not 0 <= labels.min() <= labels.max() < len(source.class_names):
        raise _bad_idx(labels_path, f"holds labels outside 0..{len(source.class_names) - 1}")
    return images, labels.astype(np.int64)


def load_image_folder(
    root: str | os.PathLike, prepare: Callable[[Path], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A user's data set laid out as root/<label>/<image>; prepare turns one image into (28, 28) uint8."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; give a folder with one subfolder of images per label")
    # Hidden entries are tool litter (.ipynb_checkpoints, .DS_Store), never labels or images.
    class_names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not class_names:
        raise DataError(f"{root}: no subfolders; put each label's images in root/<label>/")
    images, labels, failures = [], [], []
    for label, class_name in enumerate(class_names):
        for path in sorted((root / class_name).iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                images.append(prepare(path))
                labels.append(label)
            except ImageError as error:
                failures.append(_one_line(error))
    if failures:
        # Skipping bad files silently would train on less data than the user thinks.
        raise DataError(f"{root}: {len(failures)} files cannot be used, e.g. {'; '.join(failures[:3])}; "
                        f"fix or remove them")
    if not images:
        raise DataError(f"{root}: no image files in {', '.join(class_names)}; add images to them")
    return np.stack(images), np.array(labels, dtype=np.int64), class_names


def split_validation(
    images: np.ndarray, labels: np.ndarray, size: int, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Carve a seeded, reproducible validation set of size examples out of the training arrays."""
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels; they must pair up")
    if not 0 < size < len(images):
        raise DataError(f"validation size {size} must be between 1 and {len(images) - 1} "
                        f"for {len(images)} training examples")
    order = np.random.default_rng(seed).permutation(len(images))
    held_out, kept = order[:size], order[size:]
    return (images[kept], labels[kept]), (images[held_out], labels[held_out])
