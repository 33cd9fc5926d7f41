"""The service: API tests through the real app and shipped model, then the real `digitlab serve` process over HTTP."""

from __future__ import annotations

import base64
import http.client
import io
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.decode import MAX_PIXELS, decode_image
from digitlab.errors import UsageError
from digitlab.modelfile import load_model
from digitlab.predict import Predictor
from digitlab.vision import prepare_digit

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from digitlab.serve import ServeSettings, create_app  # noqa: E402

from conftest import CLI  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "seed"
SEVEN = (EXAMPLES / "7.png").read_bytes()
# A hang guard for the server process on a shared machine, not a speed requirement.
SERVER_START_S = 120


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_model())


@pytest.fixture(scope="module")
def client(predictor):
    """The real app with the shipped model, its batching thread running (lifespan), and small limits."""
    settings = ServeSettings(max_upload_bytes=2**20, max_images=10)
    with TestClient(create_app(settings, predictor)) as client:
        yield client


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(*images: tuple[str, bytes]) -> dict:
    return {"files": [("image", (name, data, "image/png")) for name, data in images]}


def assert_still_answers(client) -> None:
    response = client.post("/v1/predict", **upload(("7.png", SEVEN)))
    assert response.status_code == 200 and response.json()["results"][0]["digit"] == 7


# ---- the API ----

def test_health_ready_and_model(client):
    assert client.get("/v1/health").json() == {"status": "alive"}
    assert client.get("/v1/ready").json() == {"status": "ready"}
    card = client.get("/v1/model").json()
    shipped = load_model()
    assert card["spec"] == json.loads(json.dumps(shipped.spec.to_dict()))
    assert card["metrics"] == shipped.metrics and card["preprocessing"] == shipped.preprocessing
    assert card["version"] == shipped.version


def test_openapi_documents_the_predict_body_and_query(client):
    assert client.get("/docs").status_code == 200
    operation = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(operation["requestBody"]["content"])
    assert [parameter["name"] for parameter in operation["parameters"]] == ["include"]


def test_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for asset in ("/static/page.js", "/static/page.css"):
        assert client.get(asset).status_code == 200
    assert "//cdn" not in page.text and "https://" not in page.text  # works offline


def test_predict_answers_like_the_cli(client, predictor):
    """The same objects `digitlab predict --json` prints, for every example, in upload order."""
    files = [(path.name, path.read_bytes()) for path in sorted(EXAMPLES.glob("[0-9].png"))]
    response = client.post("/v1/predict", **upload(*files))
    assert response.status_code == 200
    results = response.json()["results"]
    expected = predictor.predict_files(sorted(EXAMPLES.glob("[0-9].png")))
    assert [result["path"] for result in results] == [name for name, _ in files]
    for result, want in zip(results, expected):
        assert set(result) == set(want)
        for key in set(want) - {"path", "probabilities", "digits"}:
            assert result[key] == pytest.approx(want[key]), key
        for piece, wanted in zip(result.get("digits", []), want.get("digits", []), strict=True):  # multi-digit images
            assert piece == wanted | {"confidence": pytest.approx(wanted["confidence"])}
        # Batched with other requests, a digit can meet different float rounding: equal, not identical.
        assert result["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


@pytest.mark.fault("service")
def test_one_bad_image_among_several_gets_its_own_error(client):
    response = client.post("/v1/predict", **upload(("7.png", SEVEN), ("notes.png", b"not an image")))
    assert response.status_code == 200
    good, bad = response.json()["results"]
    assert good["digit"] == 7 and good["error"] is None
    assert bad["digit"] is None and "notes.png" in bad["error"]


def test_json_base64_and_pixels(client, mnist_test):
    digits, labels = mnist_test
    images = [{"name": "seven", "base64": base64.b64encode(SEVEN).decode()}]
    images += [{"name": f"mnist-{i}", "pixels": digits[i].tolist()} for i in range(3)]
    response = client.post("/v1/predict", json={"images": images})
    assert response.status_code == 200
    assert [result["digit"] for result in response.json()["results"]] == [7, *labels[:3].tolist()]


def test_include_prepared_is_the_digit_the_model_saw(client):
    response = client.post("/v1/predict?include=prepared", **upload(("7.png", SEVEN)))
    prepared = response.json()["results"][0]["prepared"]
    assert np.array_equal(np.array(prepared), prepare_digit(decode_image(SEVEN)))
    assert "prepared" not in client.post("/v1/predict", **upload(("7.png", SEVEN))).json()["results"][0]


# ---- hostile and broken requests: each gets its 4xx with a message, and the service keeps answering ----

def bomb_png() -> bytes:
    """A small file that would decode to more pixels than decode.MAX_PIXELS."""
    side = int(MAX_PIXELS**0.5) + 100
    return png_bytes(Image.new("1", (side, side)))


def chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b"\0" * size


HOSTILE = {
    "declared too large": (dict(content=b"\0" * (2**20 + 1), headers={"content-type": "application/json"}), 413),
    "chunked too large": (dict(content=chunks(4 * 2**20), headers={"content-type": "application/json"}), 413),
    "decompression bomb": (upload(("bomb.png", bomb_png())), 413),
    "wrong content type": (dict(content=b"7", headers={"content-type": "text/plain"}), 415),
    "not an image": (upload(("notes.png", b"plain text, not pixels")), 415),
    "truncated png": (upload(("cut.png", SEVEN[: len(SEVEN) // 2])), 422),
    "empty file": (upload(("empty.png", b"")), 422),
    "malformed json": (dict(content=b'{"images": [', headers={"content-type": "application/json"}), 422),
    "json without images": (dict(json={"images": []}), 422),
    "both base64 and pixels": (dict(json={"images": [{"base64": "AA==", "pixels": [[0]]}]}), 422),
    "bad base64": (dict(json={"images": [{"base64": "%%%"}]}), 422),
    "pixels out of range": (dict(json={"images": [{"pixels": [[0, 256], [0, 0]]}]}), 422),
    "ragged pixels": (dict(json={"images": [{"pixels": [[0, 0], [0]]}]}), 422),
    "too many images": (upload(*[("7.png", SEVEN)] * 11), 422),
    "malformed multipart": (
        dict(content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}), 422
    ),
    "multipart without files": (
        dict(
            content=b'--x\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--x--\r\n',
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        422,
    ),
}


@pytest.mark.fault("service")
@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_requests_get_their_4xx(client, case):
    request, status = HOSTILE[case]
    response = client.post("/v1/predict", **request)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert_still_answers(client)


def edit_bytes(data: bytes, edits: list[tuple[int, int]]) -> bytearray:
    edited = bytearray(data)
    for index, value in edits:
        edited[index] = value
    return edited


@pytest.mark.fault("service")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=2048),
        st.integers(0, len(SEVEN)).map(lambda length: SEVEN[:length]),  # truncated at any byte
        st.lists(st.tuples(st.integers(0, len(SEVEN) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda edits: bytes(edit_bytes(SEVEN, edits))  # a real PNG with a few bytes changed
        ),
    ),
    as_json=st.booleans(),
)
def test_arbitrary_bytes_never_make_a_500(client, data, as_json):
    if as_json:
        response = client.post("/v1/predict", content=data, headers={"content-type": "application/json"})
    else:
        response = client.post("/v1/predict", **upload(("fuzz.png", data)))
    assert response.status_code < 500, response.text


def test_unknown_include_is_refused(client):
    assert client.post("/v1/predict?include=everything", **upload(("7.png", SEVEN))).status_code == 422


@pytest.mark.fault("service")
def test_full_queue_is_503_and_a_stuck_model_504(predictor):
    """Without the lifespan the batching thread never starts, so the one queue slot stays taken."""
    app = create_app(ServeSettings(queue_size=1, timeout_s=0.2), predictor)
    client = TestClient(app)  # not entered: no lifespan, no batching thread
    assert client.get("/v1/ready").status_code == 503
    first = client.post("/v1/predict", **upload(("7.png", SEVEN)))
    assert first.status_code == 504 and "0.2 s" in first.json()["detail"]
    second = client.post("/v1/predict", **upload(("7.png", SEVEN)))
    assert second.status_code == 503 and second.headers["retry-after"] == "1"


# ---- the real server process over loopback HTTP ----

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`digitlab serve` on a free loopback port, waited for by polling /v1/ready."""
    port = free_port()
    server = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read().decode()
        try:
            with urllib.request.urlopen(f"{url}/v1/ready", timeout=5) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.05)  # polling interval while the process starts, not a wait for correctness
    server.kill()
    raise AssertionError("the server did not become ready")


@pytest.fixture(scope="module")
def server():
    process, url = start_server("--timeout", "2", "--max-upload-bytes", str(2**20))
    yield url
    process.terminate()
    process.wait(timeout=60)


def post_png(url: str, name: str, data: bytes) -> tuple[int, dict]:
    boundary = "test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/v1/predict", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_request(url: str, head: str, body: bytes = b"") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=60)
    connection.sendall(head.encode() + body)
    return connection


def read_status(connection: socket.socket) -> int:
    with connection:
        return int(connection.recv(4096)[9:12])


def test_server_process_batches_concurrent_requests(server, predictor):
    examples = sorted(EXAMPLES.glob("[0-9].png")) * 4
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda path: post_png(server, path.name, path.read_bytes()), examples))
    assert [status for status, _ in answers] == [200] * len(examples)
    expected = [answer["digit"] for answer in predictor.predict_files(examples)]
    assert [body["results"][0]["digit"] for _, body in answers] == expected


def test_a_connection_is_closed_politely_after_its_share_of_requests(server):
    """So that connections a burst of clients left on one worker move to the others as they reconnect."""
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=60)
    limit = ServeSettings().requests_per_connection
    for _ in range(limit - 1):
        connection.request("GET", "/v1/health")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("connection") != "close"
        response.read()
    connection.request("GET", "/v1/health")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("connection") == "close"
    response.read()
    assert connection.sock is None  # http.client closes a connection the server said it closes


@pytest.mark.fault("service")
def test_a_websocket_upgrade_is_not_counted_as_a_request():
    """The service has no WebSocket routes: an upgrade is refused as such (403), not as a broken request."""
    process, url = start_server("--requests-per-connection", "1")
    try:
        upgrade = (
            "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert read_status(raw_request(url, upgrade)) == 403
        with urllib.request.urlopen(f"{url}/v1/health", timeout=60) as response:
            assert response.status == 200 and response.headers["connection"] == "close"
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.fault("service")
def test_server_survives_slow_and_oversized_uploads(server):
    """Slowloris bodies get 408 after the timeout, slowloris headers a closed connection, and parallel
    oversized uploads 413 before their bodies are read, while well-formed requests are answered meanwhile."""
    head = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    slow = [raw_request(server, head.format(1000), b'{"images"') for _ in range(8)]
    slow_headers = [raw_request(server, "POST /v1/predict HTTP/1.1\r\nHost: x\r\n") for _ in range(8)]
    oversized = [raw_request(server, head.format(50 * 2**20)) for _ in range(32)]
    with ThreadPoolExecutor(8) as pool:
        good = list(pool.map(lambda _: post_png(server, "7.png", SEVEN), range(16)))
    assert all(status == 200 and body["results"][0]["digit"] == 7 for status, body in good)
    assert [read_status(connection) for connection in oversized] == [413] * 32
    assert [read_status(connection) for connection in slow] == [408] * 8
    for connection in slow_headers:  # closed without an answer once the timeout passes
        with connection:
            assert connection.recv(4096) == b""
    assert post_png(server, "7.png", SEVEN)[0] == 200


@pytest.mark.fault("service")
def test_server_refuses_bad_input_over_http(server):
    assert post_png(server, "bomb.png", bomb_png())[0] == 413
    assert post_png(server, "notes.png", b"hello")[0] == 415
    assert post_png(server, "cut.png", SEVEN[:100])[0] == 422


@pytest.mark.fault("service")
def test_sigterm_lets_the_request_in_flight_finish():
    process, url = start_server("--timeout", "30")
    body = (
        '--b\r\nContent-Disposition: form-data; name="image"; filename="7.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode() + SEVEN + b"\r\n--b--\r\n"
    head = f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n" \
           f"Content-Length: {len(body)}\r\n\r\n"
    in_flight = raw_request(url, head, body[:50])  # the server is now reading this request's body
    assert urllib.request.urlopen(f"{url}/v1/health", timeout=30).status == 200  # and has accepted it
    process.send_signal(signal.SIGTERM)
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:  # shutting down: the listening socket closes first
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break
    in_flight.sendall(body[50:])
    with in_flight:
        response = in_flight.makefile("rb").read()
    assert response.startswith(b"HTTP/1.1 200")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["results"][0]["digit"] == 7
    # uvicorn re-raises the signal once it has shut down, so the process ends as killed by SIGTERM.
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)


def test_serve_reports_a_bad_model_in_one_line(cli, tmp_path):
    result = cli("serve", "--port", str(free_port()), "--model", tmp_path / "missing.safetensors")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("digitlab: ") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("setting", [{"workers": 0}, {"max_upload_bytes": 0}, {"timeout_s": 0}, {"port": 70000}])
def test_bad_settings_are_usage_errors(setting):
    with pytest.raises(UsageError, match="serve"):
        ServeSettings(**setting)
