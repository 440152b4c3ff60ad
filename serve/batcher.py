"""Micro-batching: texts from concurrent requests are gathered into one model call off the event loop.

The queue is bounded: a request is admitted only while the characters queued or being tagged stay within
``max_queue_chars`` and, once the model's speed has been measured, while the queue ahead of it would be
tagged within ``max_wait_s`` (before that, while they stay within ``unmeasured_chars``); otherwise :class:`Overloaded` is raised at once (the service answers 503 with
``Retry-After``), instead of letting the request wait for a timeout.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)


TEXT_COST_CHARS = 64  # the fixed cost of a text (tokenizer call, specials, padding) in characters of work
RATE_SMOOTHING = 0.3  # weight of the newest batch in the measured speed


class Overloaded(Exception):
    """The queue is full: the request was not admitted; ``retry_after`` is the expected wait in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def work(text: str) -> int:
    """The work of tagging ``text``, in characters."""
    return len(text) + TEXT_COST_CHARS


@dataclass
class _Item:
    text: str
    future: asyncio.Future
    work: int = 0


class MicroBatcher:
    """Queue texts; a worker takes up to ``max_batch_size`` of them (waiting at most ``wait_ms`` for more)
    and runs ``predict`` on a dedicated thread, so the event loop never runs the model."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch_size: int = 32,
                 wait_ms: float = 5.0, max_queue_chars: int | None = None, max_wait_s: float | None = None,
                 unmeasured_chars: int | None = None) -> None:
        self.predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.wait = max(0.0, wait_ms) / 1000
        self.max_queue_work = max_queue_chars  # None: unbounded
        self.max_wait_s = max_wait_s  # None: no estimate-based admission
        self.unmeasured_work = unmeasured_chars  # the queue's bound until the first batch has been timed
        self.queued_work = 0  # work of the texts admitted and not yet tagged
        self.rate: float | None = None  # measured work per second of the model thread
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyner-model")
        self.worker: asyncio.Task | None = None
        self.in_flight = 0
        self.batches = 0

    def start(self) -> None:
        """Start the worker on the running loop."""
        self.worker = asyncio.get_running_loop().create_task(self._run())

    def expected_wait(self, extra: int = 0) -> float | None:
        """Seconds until the queue (plus ``extra`` work) is tagged, at the measured speed; None before measuring."""
        return (self.queued_work + extra) / self.rate if self.rate else None

    def retry_after(self) -> int:
        """Whole seconds a refused client should wait before trying again (at least 1)."""
        wait = self.expected_wait()
        return max(1, math.ceil(wait)) if wait is not None else 1

    def check_room(self, texts: Sequence[str] = ()) -> None:
        """Raise :class:`Overloaded` unless ``texts`` can be admitted now (nothing queued: always admitted)."""
        if self.queued_work == 0:
            return
        extra = sum(work(t) for t in texts)
        if self.max_queue_work is not None and self.queued_work + extra > self.max_queue_work:
            raise Overloaded(f"the queue is full (max_queue_chars={self.max_queue_work})", self.retry_after())
        if self.rate is None and self.unmeasured_work is not None and self.queued_work + extra > self.unmeasured_work:
            raise Overloaded("the queue is full until the model's speed is measured", self.retry_after())
        wait = self.expected_wait(extra)
        if self.max_wait_s is not None and wait is not None and wait > self.max_wait_s:
            raise Overloaded(f"the queue would take about {wait:.1f} s, more than the {self.max_wait_s:g} s "
                             "a request may wait", self.retry_after())

    def enqueue(self, texts: Sequence[str]) -> asyncio.Future:
        """Queue ``texts`` now (admission and queueing happen at once, with no await in between) and return the
        future of their results, in order; cancelling it withdraws the texts not yet tagged. Raises
        :class:`Overloaded` (queueing nothing) when :meth:`check_room` refuses them."""
        self.check_room(texts)
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future(), work(text)) for text in texts]
        for item in items:
            self.queued_work += item.work
            self.queue.put_nowait(item)
        self.in_flight += 1
        results = asyncio.gather(*(item.future for item in items))
        results.add_done_callback(self._finished)
        return results

    def _finished(self, _: asyncio.Future) -> None:
        self.in_flight -= 1

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        """Tag ``texts`` (batched with other requests' texts); results in order (see :meth:`enqueue`)."""
        return list(await self.enqueue(texts))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    while len(batch) < self.max_batch_size and not self.queue.empty():
                        batch.append(self.queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [item for item in batch if not item.future.done()]  # cancelled requests are skipped
            self.queued_work -= sum(item.work for item in batch if item.future.done())
            if not live:
                continue
            try:
                started = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self.executor, self.predict, [i.text for i in live])
                finally:
                    self.queued_work -= sum(item.work for item in live)
                self._measure(sum(item.work for item in live), time.perf_counter() - started)
                if len(results) != len(live):
                    raise RuntimeError(f"the model returned {len(results)} results for {len(live)} texts")
                self.batches += 1
                for item, result in zip(live, results):
                    if not item.future.done():
                        item.future.set_result(result)
            except Exception as exc:  # a model failure fails the requests of this batch, not the worker
                logger.exception("batch of %d texts failed", len(live))
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _measure(self, done: int, seconds: float) -> None:
        """Fold one batch into the measured speed (work per second)."""
        if seconds <= 0:
            return
        rate = done / seconds
        self.rate = rate if self.rate is None else (1 - RATE_SMOOTHING) * self.rate + RATE_SMOOTHING * rate

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for queued and running requests, then stop the worker."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (self.in_flight or not self.queue.empty()) and loop.time() < end:
            await asyncio.sleep(0.01)
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)
