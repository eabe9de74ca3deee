"""Coalescing concurrent callers into batches: no timer, no lost caller, no shared failure."""

from __future__ import annotations

import asyncio

import pytest

from taskpilot.runtime.batching import Coalescer
from taskpilot.runtime.testing import eventually


class Recorder:
    """Doubles numbers; the first call waits for ``gate`` so others can pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.entered.set()
        if len(self.batches) == 1:
            await self.gate.wait()
        if -1 in items:
            raise ValueError("bad item")
        return [2 * i for i in items]


async def queued(batcher: Coalescer[int, int], count: int) -> None:
    """Until ``count`` items wait for the next call (the submitting tasks have run)."""

    async def enough() -> bool:
        return batcher.waiting == count

    await eventually(enough, timeout=5.0, what=f"{count} items queued")


async def test_a_lone_item_is_handled_at_once_by_itself() -> None:
    calls = Recorder()
    calls.gate.set()
    assert await Coalescer(calls).submit(4) == 8
    assert calls.batches == [[4]]


async def test_items_arriving_during_a_call_go_together_in_the_next_one() -> None:
    calls = Recorder()
    batcher = Coalescer(calls, max_batch=4)
    first = asyncio.create_task(batcher.submit(1))
    await calls.entered.wait()
    rest = [asyncio.create_task(batcher.submit(n)) for n in range(2, 8)]
    await queued(batcher, 6)
    calls.gate.set()

    assert await first == 2
    assert await asyncio.gather(*rest) == [4, 6, 8, 10, 12, 14]
    assert calls.batches == [[1], [2, 3, 4, 5], [6, 7]]
    assert (batcher.calls, batcher.items) == (3, 7)


async def test_a_failing_batch_fails_only_the_bad_items_caller() -> None:
    calls = Recorder()
    batcher = Coalescer(calls)
    first = asyncio.create_task(batcher.submit(1))
    await calls.entered.wait()
    good, bad = asyncio.create_task(batcher.submit(5)), asyncio.create_task(batcher.submit(-1))
    await queued(batcher, 2)
    calls.gate.set()

    assert await first == 2
    assert await good == 10
    with pytest.raises(ValueError, match="bad item"):
        await bad
    assert calls.batches == [[1], [5, -1], [5], [-1]]


async def test_a_wrong_number_of_results_is_an_error_not_a_mismatch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await Coalescer(short).submit(3)


async def test_a_cancelled_caller_leaves_the_others_served() -> None:
    calls = Recorder()
    batcher = Coalescer(calls)
    first = asyncio.create_task(batcher.submit(1))
    await calls.entered.wait()
    gone, kept = asyncio.create_task(batcher.submit(2)), asyncio.create_task(batcher.submit(3))
    await queued(batcher, 2)
    gone.cancel()
    calls.gate.set()

    assert (await first, await kept) == (2, 6)
    assert calls.batches == [[1], [3]]
