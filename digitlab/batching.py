"""Dynamic batching for the service: concurrent requests share one model call, made off the event loop."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .predict import Predictor


class QueueFull(Exception):
    """More requests are waiting than the service accepts; the client should retry shortly."""


@dataclass
class _Job:
    images: list[tuple[str, bytes | np.ndarray]]
    include_prepared: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)


_STOP = object()


class Batcher:
    """One thread owns the predictor: it takes the waiting requests, up to `max_batch` images or whatever
    arrives within `window_s` of the first, and answers them all with one `Predictor.answer` call.
    Decoding and preparing happen in that thread too, so the event loop only parses HTTP."""

    def __init__(self, predictor: Predictor, *, max_batch: int, window_s: float, queue_size: int) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.window_s = window_s
        # A thread-safe queue with a bound: put_nowait from the event loop never blocks it, and a
        # full queue is an immediate 503 rather than latency that grows without limit.
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="digitlab-batcher", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Answer what is queued, then end the thread (called after the server has finished its requests)."""
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join()

    def submit(self, images: list[tuple[str, bytes | np.ndarray]], include_prepared: bool = False) -> asyncio.Future:
        """Queue images from the event loop; the future resolves to their answers, in order. Raises QueueFull."""
        loop = asyncio.get_running_loop()
        job = _Job(images, include_prepared, loop, loop.create_future())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job.future

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            self._answer(batch)

    def _collect(self) -> list[_Job] | None:
        """Block for the first job, then gather more until the batch is full or the window closes."""
        first = self._jobs.get()
        if first is _STOP:
            return None
        batch, images = [first], len(first.images)
        closes = time.monotonic() + self.window_s
        while images < self.max_batch:
            try:
                job = self._jobs.get(timeout=max(0.0, closes - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                self._jobs.put(_STOP)  # answer this batch first, then stop
                break
            batch.append(job)
            images += len(job.images)
        return batch

    def _answer(self, batch: list[_Job]) -> None:
        # Jobs whose client gave up (timeout, disconnect) are skipped rather than computed for nobody.
        batch = [job for job in batch if not job.future.cancelled()]
        if not batch:
            return
        try:
            answers = self.predictor.answer(
                [image for job in batch for image in job.images],
                include_prepared=any(job.include_prepared for job in batch),
            )
        except Exception as error:  # a bug, not bad input: every waiting request reports it as a 500
            for job in batch:
                job.loop.call_soon_threadsafe(_settle, job.future, None, error)
            return
        start = 0
        for job in batch:
            mine = answers[start : start + len(job.images)]
            start += len(job.images)
            if not job.include_prepared:
                for answer in mine:
                    answer.pop("prepared", None)
            job.loop.call_soon_threadsafe(_settle, job.future, mine, None)


def _settle(future: asyncio.Future, result: list[dict] | None, error: Exception | None) -> None:
    """Runs on the event loop; the request may have timed out meanwhile, and then nobody is waiting."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
