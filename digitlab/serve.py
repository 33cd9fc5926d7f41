"""`digitlab serve`: a FastAPI service and a drawing page, answering with `Predictor.answer` like the CLI."""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import io
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from . import __version__
from .batching import Batcher, QueueFull
from .decode import MAX_PIXELS
from .errors import UsageError
from .model import count_parameters
from .modelfile import load_model
from .predict import Predictor

STATIC = Path(str(resources.files("digitlab") / "static"))


@dataclass(frozen=True)
class ServeSettings:
    """Everything `digitlab serve` can be told; the CLI flags override these defaults."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: Optional[Path] = None  # None: the shipped default model
    # A 12 MP phone JPEG is 3 to 5 MB; a digit is a few KB. 8 MiB per request bounds memory per connection.
    max_upload_bytes: int = 8 * 2**20
    max_images: int = 64  # per request
    # Waiting 2 ms costs a lone request little; under load, requests queue while the model runs and the
    # next call takes them all anyway, so a longer window would only add latency.
    batch_window_ms: float = 2.0
    max_batch: int = 128  # images per model call
    queue_size: int = 512  # requests waiting for the model; one more is a 503
    timeout_s: float = 10.0  # to receive the headers, the body, and again to wait for the answer
    max_connections: int = 1024  # beyond this uvicorn answers 503 at once
    # A keep-alive connection is closed (politely, with "Connection: close") after this many requests, as
    # nginx's keepalive_requests does. With several workers a connection stays with the worker that accepted
    # it, and a burst of clients can land two to one; reconnecting lets the less busy worker, which accepts
    # first, even the load out. Medians of interleaved 15 s rounds, 32 clients, 2 workers: 1,037 requests/s
    # and p99 61 ms at 100 requests a connection against 723 and 88 ms without a limit (4 rounds); 25 gave
    # 1,133 and 58 ms beside 100's 1,009 and 66 ms (3 rounds).
    requests_per_connection: int = 25
    workers: int = 1  # processes; each loads its own model
    torch_threads: int = 1  # per worker: the other core parses HTTP

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_images", "max_batch", "queue_size", "max_connections", "workers",
                     "torch_threads", "requests_per_connection"):
            if getattr(self, name) < 1:
                raise UsageError(f"serve setting {name} must be at least 1, got {getattr(self, name)}")
        if self.batch_window_ms < 0 or self.timeout_s <= 0:
            raise UsageError("serve: --batch-window-ms must be >= 0 and --timeout > 0")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"serve: port {self.port} is not in 0..65535")


class JsonImage(BaseModel):
    """One image in a JSON request: encoded file bytes in base64, or grayscale pixel rows (e.g. 28x28)."""

    name: str = "image"
    base64: Optional[str] = Field(None, description="The image file (PNG, JPEG, ...) in base64.")
    pixels: Optional[list[list[int]]] = Field(None, description="Rows of 0..255 gray values, e.g. 28x28.")

    @model_validator(mode="after")
    def one_source(self) -> JsonImage:
        if (self.base64 is None) == (self.pixels is None):
            raise ValueError("give exactly one of base64 or pixels")
        return self


class JsonPredictRequest(BaseModel):
    images: list[JsonImage] = Field(min_length=1)


PREDICT_BODY = {
    "parameters": [
        {
            "name": "include", "in": "query", "required": False,
            "schema": {"type": "string", "enum": ["prepared"]},
            "description": "`prepared` adds the 28x28 digit the model saw to each answer.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "description": "One or more image files, any field name, answered in upload order.",
                }
            },
            "application/json": {"schema": JsonPredictRequest.model_json_schema()},
        },
    }
}


def create_app(settings: ServeSettings = ServeSettings(), predictor: Predictor | None = None) -> FastAPI:
    """The service: loads the model now, starts the batching thread with the server, stops it after the last request."""
    predictor = predictor or Predictor(settings.model)
    # The model's first calls allocate its working memory: made now, before /v1/ready, so the first requests
    # do not pay for them (3 interleaved 15 s rounds: p99 48.0 against 52.2 ms, 1,275 against 1,189 requests/s).
    predictor.answer([("warm-up", np.zeros((28, 28), dtype=np.uint8))])
    predictor.predict_proba_prepared(np.zeros((settings.max_batch, 28, 28), dtype=np.uint8))
    batcher = Batcher(
        predictor, max_batch=settings.max_batch, window_s=settings.batch_window_ms / 1000,
        queue_size=settings.queue_size,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        # uvicorn runs this after in-flight requests have finished, so none loses its answer.
        await asyncio.to_thread(batcher.stop)

    app = FastAPI(
        title="digitlab", version=__version__, lifespan=lifespan, redoc_url=None,
        description="Reads handwritten digits. The draw-a-digit page is at `/`.",
    )
    app.add_middleware(UploadGuard, max_bytes=settings.max_upload_bytes, timeout_s=settings.timeout_s)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    model = predictor.model_
    model_card = {
        "version": model.version,
        "served_by": __version__,
        "spec": model.spec.to_dict(),
        "parameters": count_parameters(model.network),
        "class_names": list(model.class_names),
        "dataset": model.dataset,
        "preprocessing": model.preprocessing,
        "metrics": model.metrics,
    }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "alive"}

    @app.get("/v1/ready", summary="The model is loaded and the batching thread runs")
    async def ready() -> JSONResponse:
        if not batcher.running:
            return JSONResponse({"status": "not ready"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready"})

    @app.get("/v1/model", summary="The model: spec, metrics, version and preprocessing")
    async def model_info() -> dict:
        return model_card

    @app.post(
        "/v1/predict",
        summary="Read the digits in one or several images",
        description="Multipart uploads, or JSON `{\"images\": [{\"base64\": ...} | {\"pixels\": [[...]]}]}`. "
        "The answer is `{\"results\": [...]}`, one object per image in order, as `digitlab predict --json` "
        "prints them; `?include=prepared` adds the 28x28 digit the model saw.",
        openapi_extra=PREDICT_BODY,
        responses={
            413: {"description": "Body, image count or pixel count over the limit"},
            415: {"description": "Not multipart or JSON, or the only image is not an image"},
            422: {"description": "Malformed body, or the only image cannot be decoded"},
            503: {"description": "Too many requests waiting; see Retry-After"},
            504: {"description": "No answer within the timeout"},
        },
    )
    async def predict(request: Request) -> JSONResponse:
        # The query is read by hand (and documented in PREDICT_BODY): FastAPI's parameter machinery costs
        # about a tenth of a request's time in the event loop.
        include = request.query_params.get("include")
        if include not in (None, "prepared"):
            raise HTTPException(422, f"include={include!r} is not known; the only value is 'prepared'")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type == "multipart/form-data":
            images = await _multipart_images(request, settings.max_images)
        elif media_type == "application/json":
            # Validating megabytes of pixel rows takes a while: off the event loop, like decoding.
            images = await asyncio.to_thread(_json_images, await request.body(), settings.max_images)
        else:
            raise HTTPException(415, f"send images as multipart/form-data or application/json, not {media_type!r}")
        try:
            future = batcher.submit(images, include_prepared=include == "prepared")
        except QueueFull:
            raise HTTPException(
                503, f"busy: {settings.queue_size} requests are waiting; retry shortly", headers={"Retry-After": "1"}
            ) from None
        try:
            answers = await asyncio.wait_for(future, settings.timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"no answer within {settings.timeout_s:g} s; the server is overloaded") from None
        if len(answers) == 1 and answers[0]["error"]:
            raise HTTPException(_refusal_status(images[0][1]), answers[0]["error"])
        return JSONResponse({"results": answers})

    return app


async def _multipart_images(request: Request, max_images: int) -> list[tuple[str, bytes]]:
    """Every uploaded file, in order, whatever its field name; text fields are ignored."""
    try:
        async with request.form(max_files=max_images, max_fields=max_images) as form:
            images = [
                (value.filename or key, await value.read())
                for key, value in form.multi_items() if not isinstance(value, str)
            ]
    except StarletteHTTPException as error:  # Starlette's 400 for a malformed body or too many parts
        raise HTTPException(422, f"malformed multipart body: {error.detail}") from None
    if not images:
        raise HTTPException(422, "the multipart body holds no files; upload images as file fields")
    return images


def _json_images(body: bytes, max_images: int) -> list[tuple[str, bytes | np.ndarray]]:
    """Decode the JSON request: base64 file bytes, or pixel rows checked to be a 2-D array of 0..255."""
    try:
        request = JsonPredictRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        message = f"bad JSON request at {where}: {first['msg']} ({error.error_count()} errors)"
        raise HTTPException(422, message) from None
    if len(request.images) > max_images:
        raise HTTPException(422, f"{len(request.images)} images in one request; the limit is {max_images}")
    images: list[tuple[str, bytes | np.ndarray]] = []
    for index, image in enumerate(request.images):
        if image.base64 is not None:
            try:
                images.append((image.name, base64.b64decode(image.base64, validate=True)))
            except binascii.Error as error:
                raise HTTPException(422, f"images.{index}.base64 is not valid base64 ({error})") from None
            continue
        rows = image.pixels
        if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
            raise HTTPException(422, f"images.{index}.pixels must be rows of equal, non-zero length")
        pixels = np.array(rows, dtype=np.int64)
        if pixels.min() < 0 or pixels.max() > 255:
            raise HTTPException(422, f"images.{index}.pixels must lie in 0..255, found {pixels.min()}..{pixels.max()}")
        images.append((image.name, pixels.astype(np.uint8)))
    return images


def _refusal_status(source: bytes | np.ndarray) -> int:
    """Why the only image failed, as a status: 413 over the pixel limit, 415 not an image, 422 corrupt.
    Reads only the header, and only on this error path."""
    if isinstance(source, np.ndarray) or not source:
        return 422
    try:
        with Image.open(io.BytesIO(source)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        return 415
    except Image.DecompressionBombError:
        return 413
    except Exception:  # anything else Pillow raises on a broken header is a corrupt image
        return 422
    return 413 if width * height > MAX_PIXELS else 422


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class UploadGuard:
    """Refuses a body over the limit before reading it (by Content-Length) or as soon as the streamed bytes
    pass it (chunked uploads), and a body that takes longer than the timeout to arrive (slowloris)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.max_bytes:  # the HTTP parser has checked it is a number
            await self._refuse(send, 413, f"the body is {int(declared):,} bytes; the limit is {self.max_bytes:,}")
            return
        received, body_done, started = 0, False, False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive waits for a disconnect: no deadline then
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send, 413, f"the body passed the {self.max_bytes:,}-byte limit")
        except _BodyTooSlow:
            if not started:
                await self._refuse(send, 408, f"the body did not arrive within {self.timeout_s:g} s")
        except ClientDisconnect:
            pass  # nobody is left to answer

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        await JSONResponse({"detail": message}, status_code=status, headers={"Connection": "close"})(
            {"type": "http"}, _no_body, send
        )


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class ServeConfig(uvicorn.Config):
    """uvicorn's settings plus how long a request's headers may take and how many requests a connection
    carries (it has neither limit)."""

    def __init__(self, *args, header_timeout_s: float, requests_per_connection: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.requests_per_connection = requests_per_connection


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers are not complete within the
    timeout: a real client sends them in one packet, a slowloris client trickles them to hold the
    connection forever. The body has its own deadline in UploadGuard, idle keep-alive uvicorn's.
    It also ends a connection after `requests_per_connection` requests (see ServeSettings)."""

    _header_deadline: asyncio.TimerHandle | None = None
    _requests = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is previous:  # an upgrade (a WebSocket) hands the connection on: no request to count
            return
        self._requests += 1
        if self._requests >= self.config.requests_per_connection:
            self.cycle.keep_alive = False  # uvicorn then answers with "Connection: close" and closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.config.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def _worker_app(settings: ServeSettings) -> FastAPI:
    """What each server process runs: its own torch threads and model."""
    torch.set_num_threads(settings.torch_threads)
    app = create_app(settings)
    # Torch, FastAPI and the model live as long as the process (~250,000 objects): frozen out of the garbage
    # collector, a full collection scans only what requests left behind instead of pausing every request in
    # flight for over 100 ms.
    gc.freeze()
    return app


def serve(settings: ServeSettings) -> None:
    """Run the service until SIGINT or SIGTERM; in-flight requests finish first (within the timeout)."""
    config = ServeConfig(
        partial(_worker_app, settings), factory=True, host=settings.host, port=settings.port,
        header_timeout_s=settings.timeout_s, requests_per_connection=settings.requests_per_connection,
        loop="uvloop", http=HeaderDeadlineProtocol, lifespan="on", access_log=False, workers=settings.workers,
        limit_concurrency=settings.max_connections, timeout_graceful_shutdown=int(settings.timeout_s) + 1,
        # A new worker imports torch and loads the model before it answers the supervisor's pings:
        # seconds on a busy 2-core machine, past uvicorn's 5 s default, which would kill and restart it.
        timeout_worker_healthcheck=60,
    )
    if settings.workers == 1:
        config.app = _worker_app(settings)  # load the model here, so a bad model file is a one-line error
        config.factory = False
        uvicorn.Server(config).run()
    else:
        load_model(settings.model)  # the same check before the workers start, each loading its own copy
        Multiprocess(config, sockets=[config.bind_socket()]).run()

