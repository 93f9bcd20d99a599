"""The batching policy on its own: the window, the size cap, grouping by key, dropped jobs, the bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence

import pytest

from mtkit.serve.batching import Batcher, Job, QueueFull
from mtkit.serve.metrics import Metrics


def echo_batches(calls: list[list[str]]) -> object:
    def run(key: Hashable, texts: Sequence[str], tasks: Sequence[str | None]) -> list[str]:
        calls.append(list(texts))
        return [f"{key}:{t}" for t in texts]

    return run


def test_batcher_serves_jobs_in_one_window_together_within_the_size_cap() -> None:
    calls: list[list[str]] = []

    async def scenario() -> list[list[str]]:
        batcher = Batcher(echo_batches(calls), max_batch_size=4, max_wait_ms=100, queue_size=10, metrics=Metrics())  # type: ignore[arg-type]
        batcher.start()
        jobs = [Job([f"a{i}"], [None]) for i in range(3)] + [Job(["b0", "b1"], [None]), Job(["c0"], [None], key="other")]
        for job in jobs:
            batcher.submit(job)
        answers = [await job.future for job in jobs]
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert answers[:3] == [["None:a0"], ["None:a1"], ["None:a2"]] and answers[3] == ["None:b0", "None:b1"] and answers[4] == ["other:c0"]
    # a0-a2 fill 3 of 4 places; b's two inputs do not fit, so they open the next batch, which c joins (in its own call)
    assert calls == [["a0", "a1", "a2"], ["b0", "b1"], ["c0"]]


def test_batcher_skips_dropped_jobs_and_refuses_beyond_the_queue() -> None:
    calls: list[list[str]] = []

    async def scenario() -> None:
        batcher = Batcher(echo_batches(calls), max_batch_size=8, max_wait_ms=50, queue_size=2, metrics=Metrics())  # type: ignore[arg-type]
        kept, dropped = Job(["kept"], [None]), Job(["dropped"], [None])
        batcher.submit(kept)
        batcher.submit(dropped)
        with pytest.raises(QueueFull):
            batcher.submit(Job(["one too many"], [None]))
        dropped.future.cancel()  # its client left before the batch ran
        batcher.start()
        assert await kept.future == ["None:kept"]
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [["kept"]]


def test_batcher_opens_the_window_when_the_model_frees() -> None:
    """A request that queued while the model ran and one that arrives just after it frees share the next batch: the
    window opens when the model frees, not when the first of them arrived (whose window had closed by then)."""
    calls: list[list[str]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        freed = asyncio.Event()

        def run(key: Hashable, texts: Sequence[str], tasks: Sequence[str | None]) -> list[str]:
            calls.append(list(texts))
            if texts == ["first"]:
                time.sleep(0.6)  # the model busy well past the window of a request arriving meanwhile
                loop.call_soon_threadsafe(freed.set)
            return list(texts)

        batcher = Batcher(run, max_batch_size=8, max_wait_ms=100, queue_size=10, metrics=Metrics())
        batcher.start()
        first, queued, late = Job(["first"], [None]), Job(["queued"], [None]), Job(["late"], [None])
        batcher.submit(first)
        await asyncio.sleep(0.3)  # the first batch has closed (100 ms) and runs
        batcher.submit(queued)  # its own window would close 100 ms from now, before the model frees
        await freed.wait()
        await asyncio.sleep(0.03)  # the client answered by the first batch comes back
        batcher.submit(late)
        assert await asyncio.gather(first.future, queued.future, late.future) == [["first"], ["queued"], ["late"]]
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [["first"], ["queued", "late"]]


def test_batcher_with_batches_of_one_never_waits() -> None:
    """--max-batch-size 1 runs each request as soon as the model frees (no window at all)."""
    calls: list[list[str]] = []

    async def scenario() -> float:
        batcher = Batcher(echo_batches(calls), max_batch_size=1, max_wait_ms=1000, queue_size=10, metrics=Metrics())  # type: ignore[arg-type]
        batcher.start()
        jobs = [Job([f"j{i}"], [None]) for i in range(3)]
        start = time.monotonic()
        for job in jobs:
            batcher.submit(job)
        await asyncio.gather(*(job.future for job in jobs))
        took = time.monotonic() - start
        await batcher.stop()
        return took

    assert asyncio.run(scenario()) < 0.5
    assert calls == [["j0"], ["j1"], ["j2"]]
