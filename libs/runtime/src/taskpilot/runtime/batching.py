"""Coalescing: concurrent callers' items handled in one call, without a timer.

The first item starts a call at once (no added latency when the service is quiet); items that
arrive while a call runs wait for it and then go together in the next one. Under load a batch
grows to whatever arrived during one call, which is where batching pays: one embedding call
for sixteen short texts costs little more than one for a single text.

A failing batch is retried item by item, so one bad item fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``await submit(item)`` returns ``fn([... item ...])``'s result for that item.

    ``fn`` gets up to ``max_batch`` items and returns one result per item, in order.
    """

    def __init__(
        self, fn: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = 16, name: str = ""
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._fn = fn
        self._max = max_batch
        self._name = name or getattr(fn, "__qualname__", "coalescer")
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.calls = 0  # how many calls of fn (items / calls = mean batch)
        self.items = 0

    @property
    def waiting(self) -> int:
        """Items queued for the next call (not yet handed to ``fn``)."""
        return len(self._waiting)

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"coalesce-{self._name}")
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = [(i, f) for i, f in self._waiting[: self._max] if not f.cancelled()]
                del self._waiting[: self._max]
                if batch:
                    await self._call(batch)
        finally:  # cancelled (the service stops): nobody is left waiting forever
            for _, future in self._waiting:
                if not future.done():
                    future.cancel()
            self._waiting.clear()

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        self.calls += 1
        self.items += len(items)
        try:
            results = list(await self._fn(items))
            if len(results) != len(items):
                raise RuntimeError(f"{self._name}: {len(results)} results for {len(items)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.info("%s: a batch of %d failed (%r); each item alone", self._name, len(batch), exc)
            for one in batch:
                await self._call([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
