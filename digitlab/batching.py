"""Dynamic batching for the service: concurrent requests share one model call, made off the event loop."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .predict import Predictor


class QueueFull(Exception):
    """More requests are waiting than the service accepts; the client should retry shortly."""


@dataclass
class _Job:
    images: list[tuple[str, bytes | np.ndarray]]
    include_prepared: bool
    future: asyncio.Future = field(repr=False)


_STOP = object()


class Batcher:
    """One thread owns the predictor and answers a batch of requests with one `Predictor.answer` call;
    decoding and preparing happen there too, so the event loop only parses HTTP.

    The event loop forms the batches: requests that arrive while the thread computes wait, and the whole
    wait (up to `max_batch` images) is the next batch the moment the thread is free; a request that finds
    the thread idle waits `window_s` for company. So the batch grows with the load by itself, and the two
    threads meet once per batch rather than once per request (each meeting is a wake-up and a GIL hand-over).
    """

    def __init__(self, predictor: Predictor, *, max_batch: int, window_s: float, queue_size: int) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.window_s = window_s
        self.queue_size = queue_size
        # Touched only on the event loop; bounded, so a full wait is an immediate 503 rather than latency
        # that grows without limit.
        self._waiting: deque[_Job] = deque()
        self._computing = False
        self._window: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches: queue.SimpleQueue = queue.SimpleQueue()  # from the event loop to the thread
        self._thread = threading.Thread(target=self._run, name="digitlab-batcher", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the batch it computes (called once the server has finished its requests)."""
        if self._thread.is_alive():
            self._batches.put(_STOP)
            self._thread.join()

    def submit(self, images: list[tuple[str, bytes | np.ndarray]], include_prepared: bool = False) -> asyncio.Future:
        """Queue images from the event loop; the future resolves to their answers, in order. Raises QueueFull."""
        if len(self._waiting) >= self.queue_size:
            raise QueueFull
        self._loop = asyncio.get_running_loop()
        job = _Job(images, include_prepared, self._loop.create_future())
        self._waiting.append(job)
        if not self._computing:
            if sum(len(waiting.images) for waiting in self._waiting) >= self.max_batch:
                self._dispatch()
            elif self._window is None:
                self._window = self._loop.call_later(self.window_s, self._dispatch)
        return job.future

    def _dispatch(self) -> None:
        """On the event loop: hand the waiting requests, up to `max_batch` images, to the thread."""
        if self._window is not None:
            self._window.cancel()
            self._window = None
        # Without the thread (the app run without its lifespan) requests stay waiting and time out.
        if self._computing or not self.running:
            return
        batch, images = [], 0
        while self._waiting and (not batch or images + len(self._waiting[0].images) <= self.max_batch):
            job = self._waiting.popleft()
            # A job whose client gave up (timeout, disconnect) is dropped rather than computed for nobody.
            if not job.future.cancelled():
                batch.append(job)
                images += len(job.images)
        if batch:
            self._computing = True
            self._batches.put(batch)

    def _run(self) -> None:
        while (batch := self._batches.get()) is not _STOP:
            try:
                answers = self.predictor.answer(
                    [image for job in batch for image in job.images],
                    include_prepared=any(job.include_prepared for job in batch),
                )
            except Exception as error:  # a bug, not bad input: every request of the batch reports it as a 500
                self._loop.call_soon_threadsafe(self._settle, batch, None, error)
            else:
                self._loop.call_soon_threadsafe(self._settle, batch, answers, None)

    def _settle(self, batch: list[_Job], answers: list[dict] | None, error: Exception | None) -> None:
        """On the event loop: answer the batch's requests (those still waiting), then start the next batch."""
        start = 0
        for job in batch:
            mine = None if answers is None else answers[start : start + len(job.images)]
            start += len(job.images)
            if job.future.done():  # the request timed out meanwhile: nobody is waiting
                continue
            if error is not None:
                job.future.set_exception(error)
                continue
            if not job.include_prepared:
                for answer in mine:
                    answer.pop("prepared", None)
            job.future.set_result(mine)
        self._computing = False
        self._dispatch()
