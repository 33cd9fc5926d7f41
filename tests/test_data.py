"""Tests for digitlab.data on real MNIST files, a slice of them, and a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import logging
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab import data
from digitlab.data import (
    DATASETS,
    DataFile,
    DataSource,
    data_dir,
    fetch,
    load_dataset,
    load_image_folder,
    read_idx,
    split_validation,
)
from digitlab.errors import DataError, ImageError

MNIST_DIR = Path(DATASETS["mnist"].local_dirs[0])
IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode array as IDX: zero, zero, type code, rank, big-endian sizes, big-endian values."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    sizes = b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.fixture(scope="module")
def mnist_slice() -> tuple[np.ndarray, np.ndarray]:
    """The first 500 real MNIST test images and labels."""
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:500]
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:500]
    return images, labels


# ---- read_idx ----

def test_reads_real_mnist():
    test_labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    train_labels = read_idx(MNIST_DIR / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_images.shape == (10000, 28, 28) and test_images.dtype == np.uint8
    assert train_labels.shape == (60000,) and train_labels.dtype == np.uint8


def test_gzip_and_raw_give_the_same_array(tmp_path, mnist_slice):
    images, _ = mnist_slice
    # Names that lie about compression: the reader must go by the magic bytes.
    raw = read_idx(write_idx(tmp_path / "images.gz", images, compress=False))
    packed = read_idx(write_idx(tmp_path / "images.idx", images, compress=True))
    np.testing.assert_array_equal(raw, images)
    np.testing.assert_array_equal(packed, images)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_wider_types_come_back_native_endian(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    result = read_idx(write_idx(tmp_path / "a.idx", array, compress=True))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def flip_middle_bytes(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:]


def broken_files(images: np.ndarray) -> dict[str, bytes]:
    content = idx_bytes(images)
    huge_header = bytes([0, 0, 0x08, 3]) + b"".join((10_000).to_bytes(4, "big") for _ in range(3))
    return {
        "empty": b"",
        "truncated header": content[:6],
        "truncated payload": content[: len(content) // 2],
        "trailing data": content + b"\0",
        "wrong magic": b"\x12\x34" + content[2:],
        "unknown type code": content[:2] + b"\x07" + content[3:],
        "zero dimensions": content[:3] + b"\x00" + content[4:],
        "text": b"this is not an IDX file at all\n",
        "huge declared size": huge_header + b"\0" * 16,
        "wrong declared size": content[:4] + (1000).to_bytes(4, "big") + content[8:100],
        "corrupt gzip": flip_middle_bytes(gzip.compress(content)),
        "truncated gzip": gzip.compress(content)[:200],
        "gzip of garbage": gzip.compress(b"garbage" * 10),
    }


@pytest.mark.fault("IDX reader")
@pytest.mark.parametrize("kind", list(broken_files(np.zeros((2, 28, 28), np.uint8))))
def test_broken_files_raise_data_error_naming_the_path(tmp_path, mnist_slice, kind):
    path = tmp_path / f"{kind.replace(' ', '-')}.gz"
    path.write_bytes(broken_files(mnist_slice[0])[kind])
    with pytest.raises(DataError) as raised:
        read_idx(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file") as raised:
        read_idx(tmp_path / "absent.gz")
    assert str(tmp_path / "absent.gz") in str(raised.value)


# ---- fetch from a local HTTP server ----

class Mirrors(http.server.BaseHTTPRequestHandler):
    """Serves /good/<name>, /wrong/<name> (same size, other content), /cut/<name> (hangs up halfway),
    /error/<name> (500), /endless/<name> (zeros until the client hangs up), /bomb/<name> (a small gzip
    Content-Encoding that inflates to 100 MB) and /to-http/<name>, /to-https/<name> (redirects to
    /good/<name> on the plain or the TLS server)."""

    files: dict[str, bytes] = {}
    wrong_files: dict[str, bytes] = {}
    requests: list[str] = []
    bases = {"to-http": "", "to-https": ""}

    def do_GET(self):
        self.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        if kind in self.bases and self.bases[kind]:
            self.send_response(302)
            self.send_header("Location", f"{self.bases[kind]}/good/{name}")
            self.end_headers()
            return
        if kind == "error":
            self.send_error(500)
            return
        if kind == "endless":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(bytes(1 << 16))
            except OSError:  # the client hung up, as it should
                return
        if kind == "bomb":
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(BOMB)
            return
        if kind not in ("good", "wrong", "cut") or name not in self.files:
            self.send_error(404)
            return
        body = (self.wrong_files if kind == "wrong" else self.files)[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "cut" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(mnist_slice):
    images, labels = mnist_slice
    Mirrors.files = {"images.gz": gzip.compress(idx_bytes(images)),
                     "labels.gz": gzip.compress(idx_bytes(labels))}
    Mirrors.wrong_files = {"images.gz": gzip.compress(idx_bytes(images[::-1])),
                           "labels.gz": gzip.compress(idx_bytes(labels[::-1]))}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirrors)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# 100 MB of zeros squeezed into about 100 kB: what a mirror could send with "Content-Encoding: gzip".
BOMB = gzip.compress(bytes(100 << 20), compresslevel=9)


@pytest.fixture(scope="module")
def tls_server(server, tmp_path_factory):
    """The same mirrors over HTTPS on loopback, with a throwaway certificate that requests is told to trust."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirrors)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"https://127.0.0.1:{httpd.server_address[1]}"
    Mirrors.bases.update({"to-http": server, "to-https": base})
    yield base, cert
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_mirror():
    """A loopback port that accepts connections (the kernel's backlog does) and never answers a byte."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"


def slice_source(mnist_slice, mirrors, local_dirs=()) -> DataSource:
    """A data set made of the MNIST slice, with checksums of its uncompressed content."""
    images, labels = mnist_slice
    files = tuple(DataFile(name, hashlib.sha256(idx_bytes(a)).hexdigest(), len(idx_bytes(a)))
                  for name, a in (("images.gz", images), ("labels.gz", labels)))
    return DataSource("slice", files, files, tuple(mirrors), tuple(local_dirs), tuple("0123456789"))


@pytest.mark.fault("downloads")
def test_fetch_fails_over_to_the_good_mirror(tmp_path, server, mnist_slice):
    source = slice_source(mnist_slice, [f"{server}/missing/", f"{server}/wrong/", f"{server}/good/"])
    path = fetch(source, source.test[0], tmp_path)
    assert path == tmp_path / "slice" / "images.gz"
    np.testing.assert_array_equal(read_idx(path), mnist_slice[0])
    assert [p.name for p in (tmp_path / "slice").iterdir()] == ["images.gz"]

    Mirrors.requests.clear()
    assert fetch(source, source.test[0], tmp_path) == path
    assert Mirrors.requests == [], "a verified cached file must not be downloaded again"


@pytest.mark.fault("downloads")
def test_fetch_names_every_failed_url_and_the_folder(tmp_path, server, mnist_slice):
    mirrors = [f"{server}/missing/", f"{server}/wrong/", f"{server}/cut/"]
    source = slice_source(mnist_slice, mirrors)
    with pytest.raises(DataError) as raised:
        fetch(source, source.test[0], tmp_path)
    message = str(raised.value)
    for mirror in mirrors:
        assert f"{mirror}images.gz" in message
    assert "404" in message and "sha256" in message
    assert str(tmp_path / "slice") in message and "\n" not in message
    assert list((tmp_path / "slice").iterdir()) == []


@pytest.mark.fault("downloads")
def test_connection_cut_mid_file_leaves_nothing(tmp_path, server, mnist_slice):
    source = slice_source(mnist_slice, [f"{server}/cut/"])
    with pytest.raises(DataError):
        fetch(source, source.test[1], tmp_path)
    assert list((tmp_path / "slice").iterdir()) == []


@pytest.mark.fault("downloads")
@pytest.mark.parametrize("kind", ["missing", "error", "wrong", "cut", "endless", "bomb"])
def test_each_mirror_fault_fails_over_and_caches_only_the_good_file(tmp_path, server, mnist_slice, kind):
    source = slice_source(mnist_slice, [f"{server}/{kind}/", f"{server}/good/"])
    path = fetch(source, source.test[0], tmp_path)
    np.testing.assert_array_equal(read_idx(path), mnist_slice[0])
    assert [p.name for p in (tmp_path / "slice").iterdir()] == ["images.gz"]


@pytest.mark.fault("downloads")
@pytest.mark.parametrize(("kind", "reason"), [("error", "500"), ("endless", "sent more than"),
                                              ("bomb", "sent more than")])
def test_a_failing_mirror_is_named_with_its_reason_and_leaves_nothing(tmp_path, server, mnist_slice, kind, reason):
    source = slice_source(mnist_slice, [f"{server}/{kind}/"])
    with pytest.raises(DataError) as raised:
        fetch(source, source.test[0], tmp_path)
    message = str(raised.value)
    assert f"{server}/{kind}/images.gz (" in message and reason in message and "\n" not in message
    assert list((tmp_path / "slice").iterdir()) == []


@pytest.mark.fault("downloads")
def test_a_mirror_that_never_answers_times_out_and_the_next_is_tried(tmp_path, server, silent_mirror, mnist_slice,
                                                                     monkeypatch):
    # The real limit is 30 s; the test shortens it so it waits half a second, not to change what is tested.
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.5)
    source = slice_source(mnist_slice, [silent_mirror, f"{server}/good/"])
    np.testing.assert_array_equal(read_idx(fetch(source, source.test[1], tmp_path)), mnist_slice[1])
    with pytest.raises(DataError) as raised:
        fetch(slice_source(mnist_slice, [silent_mirror]), source.test[0], tmp_path / "alone")
    assert f"{silent_mirror}images.gz" in str(raised.value) and "timed out" in str(raised.value)
    assert list((tmp_path / "alone" / "slice").iterdir()) == []


@pytest.mark.fault("downloads")
def test_a_redirect_from_https_to_http_is_refused(tmp_path, server, tls_server, mnist_slice, monkeypatch):
    base, cert = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    # Following a redirect from https to https is fine: this proves the TLS mirror itself works.
    source = slice_source(mnist_slice, [f"{base}/to-https/"])
    np.testing.assert_array_equal(read_idx(fetch(source, source.test[1], tmp_path / "https")), mnist_slice[1])

    Mirrors.requests.clear()
    source = slice_source(mnist_slice, [f"{base}/to-http/"])
    with pytest.raises(DataError) as raised:
        fetch(source, source.test[1], tmp_path / "downgraded")
    assert f"{base}/to-http/labels.gz (redirected from https to {server}/good/labels.gz" in str(raised.value)
    assert Mirrors.requests == ["/to-http/labels.gz"], "the plain-http target must never be asked"
    assert list((tmp_path / "downgraded" / "slice").iterdir()) == []


@pytest.mark.fault("downloads")
def test_corrupt_cached_file_is_fetched_again(tmp_path, server, mnist_slice, caplog):
    source = slice_source(mnist_slice, [f"{server}/good/"])
    cached = tmp_path / "slice" / "labels.gz"
    cached.parent.mkdir()
    cached.write_bytes(Mirrors.files["labels.gz"][:-10])
    with caplog.at_level(logging.WARNING, logger="digitlab.data"):
        path = fetch(source, source.test[1], tmp_path)
    assert path == cached
    np.testing.assert_array_equal(read_idx(path), mnist_slice[1])
    assert str(cached) in caplog.text


def test_local_dir_is_used_and_never_changed(tmp_path, server, mnist_slice):
    local = tmp_path / "local"
    local.mkdir()
    write_idx(local / "labels", mnist_slice[1], compress=False)  # the name without .gz, uncompressed
    bad = local / "images.gz"
    bad.write_bytes(b"not the images")
    source = slice_source(mnist_slice, [f"{server}/good/"], [str(local)])

    assert fetch(source, source.test[1], tmp_path / "cache") == local / "labels"
    assert fetch(source, source.test[0], tmp_path / "cache") == tmp_path / "cache" / "slice" / "images.gz"
    assert bad.read_bytes() == b"not the images"


def test_data_dir_prefers_override_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(tmp_path / "env"))
    assert data_dir(tmp_path / "given") == tmp_path / "given"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("DIGITLAB_DATA_DIR")
    assert data_dir().name == "data" and "digitlab" in str(data_dir())


# ---- load_dataset ----

def test_load_mnist_test_from_the_shared_folder(tmp_path):
    images, labels = load_dataset("mnist", "test", tmp_path)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(tmp_path.iterdir()) == [], "a local copy must not be copied into the cache"


@pytest.mark.parametrize(("name", "split", "known"), [("emnist", "test", "fashion-mnist"),
                                                      ("mnist", "valid", "train, test")])
def test_load_dataset_rejects_unknown_names(tmp_path, name, split, known):
    with pytest.raises(DataError, match=known):
        load_dataset(name, split, tmp_path)


def test_table_matches_the_shared_checksums():
    sums = (MNIST_DIR / "SHA256SUMS").read_text()
    mnist = DATASETS["mnist"]
    for file in (*mnist.train, *mnist.test):
        # SHA256SUMS lists the local .gz wrappers, whose sums must differ from the content's.
        assert file.name in sums and file.sha256 not in sums
        assert len(file.sha256) == 64
    assert all(len(s.class_names) == 10 for s in DATASETS.values())


# ---- load_image_folder ----

def load_28(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L").resize((28, 28)), dtype=np.uint8)
    except OSError as error:
        raise ImageError(f"{path}: {error}") from None


def test_image_folder_reads_labels_from_subfolders(tmp_path, mnist_slice):
    images, labels = mnist_slice
    for i in range(12):
        folder = tmp_path / f"digit-{labels[i]}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i}.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()

    loaded, loaded_labels, class_names = load_image_folder(tmp_path, load_28)
    assert class_names == tuple(sorted(f"digit-{d}" for d in set(labels[:12].tolist())))
    assert loaded.shape == (12, 28, 28) and loaded.dtype == np.uint8
    assert loaded_labels.dtype == np.int64
    got = sorted((class_names[l], img.tobytes()) for img, l in zip(loaded, loaded_labels))
    want = sorted((f"digit-{l}", img.tobytes()) for img, l in zip(images[:12], labels[:12]))
    assert got == want


def test_image_folder_reports_unreadable_files(tmp_path, mnist_slice):
    (tmp_path / "7").mkdir()
    Image.fromarray(mnist_slice[0][0]).save(tmp_path / "7" / "ok.png")
    (tmp_path / "7" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="1 files cannot be used.*notes.txt"):
        load_image_folder(tmp_path, load_28)


def test_image_folder_without_images_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no subfolders"):
        load_image_folder(tmp_path, load_28)
    (tmp_path / "3").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_image_folder(tmp_path, load_28)
    with pytest.raises(DataError, match="no such folder"):
        load_image_folder(tmp_path / "absent", load_28)


# ---- split_validation ----

def test_split_validation_is_seeded_and_disjoint(mnist_slice):
    images, labels = mnist_slice
    ids = np.arange(len(images))
    (train_ids, _), (val_ids, _) = split_validation(ids, labels, 100, seed=1)
    (again_ids, _), (again_val, _) = split_validation(ids, labels, 100, seed=1)
    (_, _), (other_val, _) = split_validation(ids, labels, 100, seed=2)
    assert len(train_ids) == 400 and len(val_ids) == 100
    assert set(train_ids).isdisjoint(val_ids) and set(train_ids) | set(val_ids) == set(ids)
    np.testing.assert_array_equal(val_ids, again_val)
    np.testing.assert_array_equal(train_ids, again_ids)
    assert not np.array_equal(val_ids, other_val)

    (train_images, train_labels), (val_images, val_labels) = split_validation(images, labels, 100, seed=1)
    np.testing.assert_array_equal(train_images, images[train_ids])
    np.testing.assert_array_equal(val_labels, labels[val_ids])


@pytest.mark.parametrize("size", [0, -1, 500, 501])
def test_split_validation_rejects_impossible_sizes(mnist_slice, size):
    with pytest.raises(DataError):
        split_validation(*mnist_slice, size, seed=0)
