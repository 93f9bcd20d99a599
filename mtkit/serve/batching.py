"""Dynamic batching: requests that arrive within a short window share one model call.

Requests wait in a bounded queue. The batching loop takes the first, then keeps taking requests until the batch
holds `max_batch_size` inputs or `max_wait_ms` has passed since the window opened, and runs the batch in one
worker thread (the model runs one batch at a time; the event loop stays free to accept and answer requests).
The window opens when the first request arrives or when the model frees, whichever is later (continuous
batching): requests that queued while the model ran go into the next batch at once, together with those
that arrive within `max_wait_ms` of its freeing (the clients just answered, sending their next requests),
rather than the batch closing on whatever had queued by then.
A request whose client left or whose time ran out before its batch ran is dropped from the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mtkit.serve.metrics import Metrics

__all__ = ["Batcher", "Job", "QueueFull"]

log = logging.getLogger("mtkit.serve")

RunBatch = Callable[[Hashable, Sequence[str], Sequence[str | None]], list[Any]]
"""(group key, texts, tasks) -> one answer per text; jobs run together only when their keys are equal."""


class QueueFull(Exception):
    """The queue holds `queue_size` requests already."""


@dataclass
class Job:
    """One request's inputs, waiting for its batch."""

    texts: list[str]
    tasks: list[str | None]
    key: Hashable = None
    future: asyncio.Future[list[Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Collects jobs into batches and runs them with `run_batch` in one worker thread."""

    def __init__(self, run_batch: RunBatch, *, max_batch_size: int, max_wait_ms: float, queue_size: int, metrics: Metrics) -> None:
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait = max_batch_size, max_wait_ms / 1000
        self.metrics = metrics
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtkit-model")
        self._task: asyncio.Task[None] | None = None
        self._held: Job | None = None
        self._arrived = asyncio.Event()
        self._freed = 0.0  # when the model last finished a batch (time.monotonic)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="mtkit-batcher")

    async def stop(self) -> None:
        """Finish the batches already queued, then stop (the server stops accepting requests first)."""
        while not self.queue.empty() or self._held is not None:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    def submit(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull from None
        self._arrived.set()
        self.metrics.queue_depth = self.queue.qsize()

    async def _collect(self) -> list[Job]:
        first = self._held if self._held is not None else await self.queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        deadline = max(first.arrived, self._freed) + self.max_wait
        while size < self.max_batch_size:
            if self.queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.clear()
                try:  # waiting on an event, not on queue.get(), so that a timeout never loses a job
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
                continue
            job = self.queue.get_nowait()
            if size + len(job.texts) > self.max_batch_size:
                self._held = job  # opens the next batch
                break
            batch.append(job)
            size += len(job.texts)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.metrics.queue_depth = self.queue.qsize()
            live = [job for job in batch if not job.future.done()]  # a dropped request's future is cancelled
            groups: dict[Hashable, list[Job]] = {}
            for job in live:
                groups.setdefault(job.key, []).append(job)
            for key, jobs in groups.items():
                texts = [t for job in jobs for t in job.texts]
                tasks = [t for job in jobs for t in job.tasks]
                now = time.monotonic()
                self.metrics.batch(len(texts), [now - job.arrived for job in jobs])
                try:
                    answers = await loop.run_in_executor(self.executor, self.run_batch, key, texts, tasks)
                except Exception as exc:  # a failure of the model call fails the requests in it, not the server
                    log.exception("batch of %d inputs failed", len(texts))
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                start = 0
                for job in jobs:
                    if not job.future.done():
                        job.future.set_result(answers[start : start + len(job.texts)])
                    start += len(job.texts)
            self._freed = time.monotonic()
