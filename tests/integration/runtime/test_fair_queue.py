"""The fair scheduler alone (no server): round robin, per-tenant caps, per-key order, holds."""

from __future__ import annotations

from taskpilot.runtime.fairness import FairQueue


def take_all(queue: FairQueue[str], finish: bool = True) -> list[str]:
    taken = []
    while (t := queue.take()) is not None:
        taken.append(t.item)
        if finish:
            queue.done(t.tenant, t.key)
    return taken


def test_a_flooding_tenant_does_not_delay_the_next_tenant_beyond_one_round() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=4)
    for n in range(10_000):
        queue.put("flood", "", f"a{n}")
    queue.put("quiet", "", "b0")
    order = take_all(queue)
    assert order.index("b0") <= 1  # one flood delivery may go first, never 10,000
    assert order.count("b0") == 1 and len(order) == 10_001


def test_a_tenant_holds_at_most_its_cap_of_workers() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=2)
    for n in range(10):
        queue.put("flood", "", f"a{n}")
    first = take_all(queue, finish=False)
    assert first == ["a0", "a1"]  # the cap, while both are in flight
    queue.put("quiet", "", "b0")
    taken = queue.take()
    assert taken is not None and taken.item == "b0"  # others still get a worker at once
    queue.done("flood", "")
    assert [t.item for t in [queue.take()] if t] == ["a2"]


def test_ordered_keys_run_one_at_a_time_in_order_while_other_keys_proceed() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=8, ordered=True)
    for n in range(3):
        queue.put("t", "lead1", f"l1-{n}")
        queue.put("t", "lead2", f"l2-{n}")
    a, b = queue.take(), queue.take()
    assert a is not None and b is not None and {a.item, b.item} == {"l1-0", "l2-0"}
    assert queue.take() is None  # both keys busy: nothing else is eligible
    queue.done(a.tenant, a.key)
    nxt = queue.take()
    assert nxt is not None and nxt.item == a.item.replace("-0", "-1")


def test_a_held_key_is_not_overtaken_and_resumes_with_the_held_delivery() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=8, ordered=True)
    queue.put("t", "lead", "m1")
    queue.put("t", "lead", "m2")
    first = queue.take()
    assert first is not None and first.item == "m1"
    queue.done("t", "lead", hold=True)  # failed: a local retry waits its backoff
    assert queue.take() is None  # m2 must not overtake m1
    queue.release("t", "lead", "m1")
    assert take_all(queue) == ["m1", "m2"]


def test_round_robin_gives_every_tenant_its_turn() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=100)
    for tenant in ("a", "b", "c"):
        for n in range(3):
            queue.put(tenant, "", f"{tenant}{n}")
    assert take_all(queue) == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_drain_returns_everything_not_started() -> None:
    queue: FairQueue[str] = FairQueue(tenant_cap=1, ordered=True)
    for n in range(4):
        queue.put("t", f"k{n % 2}", f"m{n}")
    started = queue.take()
    assert started is not None
    left = queue.drain()
    assert sorted(left) == sorted({"m0", "m1", "m2", "m3"} - {started.item})
    assert len(queue) == 0 and queue.take() is None
