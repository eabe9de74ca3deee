"""The heap of a service process: startup's objects are frozen out of the cyclic collector once
the service is up, and every collection's pause is measured. Each case runs in its own
interpreter: freezing the test runner's heap would keep its garbage for the rest of the run."""

from __future__ import annotations

import textwrap

from taskpilot.runtime.testing import python


def run_python(code: str) -> str:
    done = python("-c", textwrap.dedent(code))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_served_process_freezes_its_startup_objects_before_it_handles_anything() -> None:
    out = run_python(
        """
        import asyncio, gc
        from fastapi import FastAPI
        from taskpilot.runtime.host import ServiceApp, run, serve
        from taskpilot.runtime.servers import free_port

        seen = {}
        built_at_startup = [[i] for i in range(50_000)]

        async def main():
            stop = asyncio.Event()

            async def first_job():  # runs once serve() waits for the stop
                seen["frozen"] = gc.get_freeze_count()
                tracked = {id(o) for o in gc.get_objects()}
                seen["startup object still walked"] = id(built_at_startup[0]) in tracked
                stop.set()

            app = ServiceApp("t", None, FastAPI(), "127.0.0.1", free_port(), [first_job])
            await serve([app], stop)

        run(main())
        print(seen["frozen"], seen["startup object still walked"])
        """
    )
    frozen, walked = out.split()
    assert int(frozen) > 50_000
    assert walked == "False"


def test_serving_inside_another_program_leaves_its_heap_alone() -> None:
    out = run_python(
        """
        import asyncio, gc
        from fastapi import FastAPI
        from taskpilot.runtime.host import ServiceApp, serve
        from taskpilot.runtime.servers import free_port

        async def main():
            stop = asyncio.Event()

            async def first_job():
                stop.set()

            app = ServiceApp("t", None, FastAPI(), "127.0.0.1", free_port(), [first_job])
            await serve([app], stop)

        asyncio.run(main())  # a test or an embedding program, not run()
        print(gc.get_freeze_count())
        """
    )
    assert out.split() == ["0"]


def test_every_collection_pause_is_measured_by_generation_but_not_the_settling() -> None:
    out = run_python(
        """
        import gc
        from prometheus_client import REGISTRY
        from taskpilot.runtime.heap import measure_pauses, settle

        gc.disable()  # only the collections below: explicit ones run regardless
        measure_pauses()
        measure_pauses()  # once per process, however often asked
        for _ in range(3):
            cycle = []
            cycle.append(cycle)
            del cycle
            gc.collect()
        gc.collect(0)
        settle()  # chosen at start, not a pause the service suffers
        count = lambda g: REGISTRY.get_sample_value(
            "taskpilot_gc_pause_seconds_count", {"generation": g}
        )
        print(count("2"), count("0"), gc.get_freeze_count() > 0)
        """
    )
    assert out.split() == ["3.0", "1.0", "True"]
