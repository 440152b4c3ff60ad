"""Micro-batching: texts from concurrent requests are gathered into one model call off the event loop."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)


@dataclass
class _Item:
    text: str
    future: asyncio.Future


class MicroBatcher:
    """Queue texts; a worker takes up to ``max_batch_size`` of them (waiting at most ``wait_ms`` for more)
    and runs ``predict`` on a dedicated thread, so the event loop never runs the model."""

    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch_size: int = 32,
                 wait_ms: float = 5.0) -> None:
        self.predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.wait = max(0.0, wait_ms) / 1000
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyner-model")
        self.worker: asyncio.Task | None = None
        self.in_flight = 0
        self.batches = 0

    def start(self) -> None:
        """Start the worker on the running loop."""
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        """Tag ``texts`` (batched with other requests' texts); results in order."""
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future()) for text in texts]
        self.in_flight += 1
        try:
            for item in items:
                self.queue.put_nowait(item)
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            self.in_flight -= 1

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
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.predict, [i.text for i in live])
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
