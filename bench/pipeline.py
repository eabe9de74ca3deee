"""Pipeline latency of the thin slice, and a bare receive-and-publish baseline, in one run.

Pipeline: signed WhatsApp webhook POSTed to ingest -> ... -> the reply's send received by the
Graph API stand-in (``received_at`` in the sandbox). Six services and the sandbox run as
separate OS processes on a fresh nats-server and a scratch PostgreSQL database.

Baseline: a bare FastAPI endpoint (uvicorn, uvloop + httptools, one worker, its own process,
see ``bench/baseline_server.py``) that reads the body and publishes it to JetStream with an
ack (raw nats-py ``js.publish``), driven by the same client with the same bodies and rate.

Load is open-loop: message ``i`` is due at ``start + i / rate`` whatever the earlier ones do
(bounded by ``--max-in-flight``), each from a fresh lead (after a hand-off the bot stays silent
for that lead, and per-lead ordering should not be what is measured). Everything is loopback.

    .venv/bin/python bench/pipeline.py            # 1,000 messages at 50 msg/s
    .venv/bin/python bench/pipeline.py --quick    # 200 messages, smoke run
    .venv/bin/python bench/pipeline.py --rate 75 --count 3000

Prints a table and writes ``bench/results/pipeline.json`` (``--output``). Exit status 1 when
any message got no reply or any webhook was refused.

Read the figures with the two warnings the table may carry. SATURATED: the pipeline answered
slower than the offered rate, so its latencies are queueing (on 2 cores it tops out near
20 replies/s; measure a keeping-up pipeline with a lower ``--rate``). NOISY: other processes
on the machine kept CPU busy during a window (measured from /proc), so tails are inflated.
The stage rows come from JetStream's store timestamps of each hop (by correlation id); CPU per
message is each process's /proc CPU time over the measured window, PostgreSQL backends of the
scratch database included.
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
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from taskpilot.cli import demo
from taskpilot.ingest.meta import new_wamid, signed, text_webhook
from taskpilot.runtime.servers import (
    MACHINE_POSTGRES,
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess
from taskpilot.runtime.testing.tokens import inline_jwks, operator
from taskpilot.tenancy.tokens import LocalIssuer

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "pipeline.json"
SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")
WARMUP = 20

# The message mix; each kind has the reply it should get from the demo tenant.
GREETINGS = ("hi", "hello", "hola", "good morning", "hey there", "bom dia", "bonjour")
FAQS = tuple(question for question, _ in demo.DEMO_FAQS)
HANDOFFS = (
    "I want to talk to a person",
    "my order never arrived",
    "I need a refund for last week",
    "do you deliver to my area?",
    "can someone call me back this afternoon?",
)
KINDS = ("greeting", "faq", "handoff")


# -- load ------------------------------------------------------------------------------------


@dataclass
class Sample:
    index: int
    lead: str
    wamid: str
    kind: str
    text: str
    body: bytes
    headers: dict[str, str]
    due: float = 0.0
    started: float = 0.0  # perf_counter when the POST began
    posted_at: float = 0.0  # time.time() when the POST began
    ack_s: float | None = None
    status: int | None = None
    error: str | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reply_at(self) -> float | None:
        return float(self.replies[0]["received_at"]) if self.replies else None

    @property
    def e2e(self) -> float | None:
        """Seconds from the webhook POST to the reply's arrival at the Graph stand-in."""
        reply_at = self.reply_at
        return None if reply_at is None else reply_at - self.posted_at


def build_samples(count: int, lead_prefix: str, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        text = rng.choice({"greeting": GREETINGS, "faq": FAQS, "handoff": HANDOFFS}[kind])
        lead = f"{lead_prefix}{i:07d}"
        wamid = new_wamid()
        payload = text_webhook(demo.DEMO_NUMBER, lead, text, wamid, name=f"Bench Lead {i}")
        body, headers = signed(payload, demo.DEMO_APP_SECRET)
        samples.append(Sample(i, lead, wamid, kind, text, body, headers))
    return samples


async def post_one(client: httpx.AsyncClient, url: str, sample: Sample) -> None:
    sample.posted_at = time.time()
    sample.started = time.perf_counter()
    try:
        response = await client.post(url, content=sample.body, headers=sample.headers)
        sample.ack_s = time.perf_counter() - sample.started
        sample.status = response.status_code
        if response.status_code != 200:
            sample.error = f"HTTP {response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        sample.error = repr(exc)


async def fire(
    client: httpx.AsyncClient, url: str, samples: list[Sample], rate: float, max_in_flight: int
) -> None:
    """Open-loop: sample i is due at start + i / rate; at most ``max_in_flight`` outstanding."""
    slots = asyncio.Semaphore(max_in_flight)
    tasks: list[asyncio.Task[None]] = []

    async def run(sample: Sample) -> None:
        try:
            await post_one(client, url, sample)
        finally:
            slots.release()

    start = time.perf_counter()
    for i, sample in enumerate(samples):
        sample.due = start + i / rate
        delay = sample.due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(run(sample)))
    await asyncio.gather(*tasks)


class ReplyCollector:
    """Long-polls the sandbox's record of sends and files them by recipient."""

    def __init__(self, base_url: str):
        self._base = base_url
        self._after = 0
        self.by_lead: dict[str, list[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=15.0) as client:
            while True:
                try:
                    response = await client.get(
                        f"{self._base}/_sandbox/messages",
                        params={"after": self._after, "wait": 2.0},
                    )
                    response.raise_for_status()
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
                    continue
                for message in response.json():
                    self._after = max(self._after, int(message["seq"]))
                    self.by_lead.setdefault(message["to"], []).append(message)
                self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, leads: Iterable[str], timeout: float) -> set[str]:
        """Wait until every lead has a reply or ``timeout`` passes; returns those without."""
        missing = set(leads)
        deadline = time.monotonic() + timeout
        while True:
            missing = {lead for lead in missing if lead not in self.by_lead}
            remaining = deadline - time.monotonic()
            if not missing or remaining <= 0:
                return missing
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))


# -- processes -------------------------------------------------------------------------------


class ScriptProcess(ServiceProcess):
    """ServiceProcess for a command line other than ``python -m <module>``."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path):
        super().__init__(module=argv[-1] if argv else "?", env=env, port=port, log_path=log_path)
        self.argv = argv

    def start(self) -> ScriptProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        return self


def stop_all(processes: list[ServiceProcess]) -> None:
    """SIGTERM every process (by PID) first, then wait for each; SIGKILL stragglers."""
    for proc in processes:
        if proc.process is not None and proc.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
    for proc in reversed(processes):
        with contextlib.suppress(Exception):
            proc.stop(timeout=20.0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postgres_backends(admin_url: str, dbname: str) -> list[int]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,)
        ).fetchall()
    return [int(r[0]) for r in rows]


class CpuMeter:
    """CPU time of named groups of processes, of this process, and of the whole machine, over
    a window: tells what each part costs per message and whether something else was running."""

    def __init__(self, groups: dict[str, list[int]], postgres: tuple[str, str] | None = None):
        self._groups = groups
        self._postgres = postgres
        self._before: dict[int, float] = {}

    def _pids(self) -> dict[str, list[int]]:
        groups = dict(self._groups)
        if self._postgres is not None:
            groups["postgres"] = postgres_backends(*self._postgres)
        return groups

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in self._pids().values() for pid in pids}
        self._client = time.process_time()
        self._machine = machine_busy_seconds()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        machine = machine_busy_seconds() - self._machine
        used = {
            name: sum(cpu_seconds(pid) - self._before.get(pid, 0.0) for pid in pids)
            for name, pids in self._pids().items()
        }
        used["bench-client"] = time.process_time() - self._client
        ours = sum(used.values())
        return {
            "wall_s": wall,
            "seconds": used,
            "cores_busy": {
                "this_benchmark": ours / wall,
                "whole_machine": machine / wall,
                "other_processes": max(0.0, machine - ours) / wall,
            },
        }


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- statistics ------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary_ms(values_s: Iterable[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values_s)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean": sum(ms) / len(ms),
        "min": ms[0],
        "p50": percentile(ms, 0.50),
        "p90": percentile(ms, 0.90),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": ms[-1],
    }


# -- phases ----------------------------------------------------------------------------------


async def run_baseline(
    args: argparse.Namespace, nats: NatsServer, tmp: Path, processes: list[ServiceProcess]
) -> dict[str, Any]:
    port = free_port()
    server = ScriptProcess(
        [
            sys.executable,
            str(BENCH_DIR / "baseline_server.py"),
            "--port",
            str(port),
            "--nats-url",
            nats.url,
        ],
        env={},
        port=port,
        log_path=tmp / "baseline.log",
    )
    processes.append(server.start())
    await server.wait_ready(timeout=60)
    url = f"{server.base_url}/webhooks/whatsapp/{demo.DEMO_TENANT}"
    warm = build_samples(WARMUP, "3470", args.seed + 1)
    measured = build_samples(args.count, "3471", args.seed)
    async with client_for(args) as client:
        await fire(client, url, warm, args.rate, args.max_in_flight)
        assert server.process is not None and nats.process is not None
        meter = CpuMeter(
            {"baseline-server": [server.process.pid], "nats-server": [nats.process.pid]}
        )
        meter.start()
        await fire(client, url, measured, args.rate, args.max_in_flight)
        cpu = meter.stop()
    server.stop()
    processes.remove(server)
    errors = [s for s in measured if s.error]
    return {
        "ack_ms": summary_ms(s.ack_s for s in measured if s.ack_s is not None and not s.error),
        "errors": len(errors),
        "first_error": errors[0].error if errors else None,
        "cpu_ms_per_msg": {k: v * 1000 / len(measured) for k, v in cpu["seconds"].items()},
        "cores_busy": cpu["cores_busy"],
        "schedule_lag_ms": summary_ms(max(0.0, s.started - s.due) for s in measured),
        "raw": {"ack_ms": [round(s.ack_s * 1000, 2) if s.ack_s else None for s in measured]},
    }


def client_for(args: argparse.Namespace) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=30.0,
        # Expire idle connections before uvicorn does (timeout_keep_alive, 5 s): reusing one
        # the server is closing at that moment fails with ReadError, a client artifact.
        limits=httpx.Limits(
            max_connections=args.max_in_flight,
            max_keepalive_connections=args.max_in_flight,
            keepalive_expiry=2.0,
        ),
    )


async def seed_tenant(database_url: str) -> None:
    from taskpilot.runtime.db import open_pool
    from taskpilot.tenancy import SecretBox, TenantDirectory

    pool = await open_pool(database_url, max_size=1)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await directory.ensure_schema()
        await directory.upsert(demo.demo_tenant())
    finally:
        await pool.close()


async def seed_faqs(knowledge: ServiceProcess) -> None:
    base = f"{knowledge.base_url}/v1/tenants/{demo.DEMO_TENANT}/faqs"
    issuer = LocalIssuer.in_data_dir(Path(knowledge.env["TASKPILOT_DATA_DIR"]))
    async with httpx.AsyncClient(timeout=60, headers=operator(issuer)) as client:
        for question, answer in demo.DEMO_FAQS:
            response = await client.post(base, json={"question": question, "answer": answer})
            response.raise_for_status()
        listed = (await client.get(base)).json()
    if len(listed) != len(demo.DEMO_FAQS):
        raise RuntimeError(f"knowledge lists {len(listed)} FAQs, expected {len(demo.DEMO_FAQS)}")


def start_pipeline(
    nats: NatsServer,
    database_url: str,
    tmp: Path,
    processes: list[ServiceProcess],
    extra_env: dict[str, str],
) -> dict[str, ServiceProcess]:
    sandbox_port = free_port()
    common = {
        "NATS_URL": nats.url,
        "DATABASE_URL": database_url,
        "TASKPILOT_DATA_DIR": str(tmp / "data"),
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_KNOWLEDGE_QDRANT_PATH": str(tmp / "qdrant"),
        "TASKPILOT_INGEST_GRAPH_API_BASE": f"http://127.0.0.1:{sandbox_port}",
        "TASKPILOT_AUTH_JWKS": inline_jwks(LocalIssuer.in_data_dir(tmp / "data")),
        **extra_env,
    }
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "qdrant").mkdir(exist_ok=True)
    started: dict[str, ServiceProcess] = {}
    sandbox = ScriptProcess(
        [sys.executable, "-m", "taskpilot.ingest.sandbox", "--port", str(sandbox_port)],
        env={},
        port=sandbox_port,
        log_path=tmp / "sandbox.log",
    )
    processes.append(sandbox.start())
    started["sandbox"] = sandbox
    for name in SERVICES:
        port = free_port()
        proc = ServiceProcess(
            f"taskpilot.{name}",
            env={**common, f"TASKPILOT_{name.upper()}_HTTP_PORT": str(port)},
            port=port,
            log_path=tmp / f"{name}.log",
        )
        processes.append(proc.start())
        started[name] = proc
    return started


async def run_pipeline(
    args: argparse.Namespace,
    nats: NatsServer,
    dbname: str,
    database_url: str,
    tmp: Path,
    processes: list[ServiceProcess],
) -> dict[str, Any]:
    await seed_tenant(database_url)
    t0 = time.perf_counter()
    procs = start_pipeline(nats, database_url, tmp, processes, args.service_env)
    await asyncio.gather(*(p.wait_ready(timeout=args.startup_timeout) for p in procs.values()))
    startup_s = time.perf_counter() - t0
    await seed_faqs(procs["knowledge"])
    print(f"  services ready in {startup_s:.1f} s; demo tenant and FAQs seeded", flush=True)

    url = f"{procs['ingest'].base_url}/webhooks/whatsapp/{demo.DEMO_TENANT}"
    collector = ReplyCollector(procs["sandbox"].base_url)
    collector.start()
    try:
        async with client_for(args) as client:
            warm = build_samples(WARMUP, "3460", args.seed + 1)
            await fire(client, url, warm, args.rate, args.max_in_flight)
            missing_warm = await collector.wait_for((s.lead for s in warm), args.drain_timeout)
            if missing_warm:
                raise RuntimeError(f"{len(missing_warm)} of {WARMUP} warm-up messages got no reply")
            print(f"  warm-up: {WARMUP} messages answered", flush=True)

            measured = build_samples(args.count, "3461", args.seed)
            groups = {name: [p.process.pid] for name, p in procs.items() if p.process is not None}
            assert nats.process is not None
            groups["nats-server"] = [nats.process.pid]
            meter = CpuMeter(groups, postgres=(args.admin_url, dbname))
            meter.start()
            await fire(client, url, measured, args.rate, args.max_in_flight)
            missing = await collector.wait_for((s.lead for s in measured), args.drain_timeout)
            cpu = meter.stop()
            await asyncio.sleep(0.5)  # let any duplicate send show up before we count them
    finally:
        await collector.stop()

    for sample in measured:
        sample.replies = sorted(
            collector.by_lead.get(sample.lead, []), key=lambda m: m["received_at"]
        )
    try:
        stages = await stage_breakdown(nats.url, measured)
    except Exception as exc:  # the breakdown is a diagnostic: keep the figures without it
        print(f"  stage breakdown failed: {exc!r}", flush=True)
        stages = {}
    return report_pipeline(measured, missing, cpu, stages) | {"startup_s": startup_s}


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
                        batch = await sub.fetch(1000, timeout=2.0)
                    except (NatsTimeoutError, TimeoutError):  # nats-py raises either
                        break
                    for msg in batch:
                        corr = (msg.headers or {}).get("Correlation-Id")
                        if corr in wanted and corr not in stamps[hop]:
                            stamps[hop][corr] = msg.metadata.timestamp.timestamp()
                    if len(stamps[hop]) == len(wanted):
                        break
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
    finally:
        await nc.close()

    legs = (
        ("ingest: POST -> wa.in stored", None, "wa_in"),
        ("conversation: receive + relay", "wa_in", "generate_reply"),
        ("inference: embed + search + decide", "generate_reply", "reply_generated"),
        ("conversation: compose + relay", "reply_generated", "wa_send"),
        ("ingest sender: -> Graph stand-in", "wa_send", None),
    )
    result: dict[str, Any] = {}
    for name, start, end in legs:
        deltas = []
        for s in samples:
            a = s.posted_at if start is None else stamps[start].get(s.wamid)
            b = s.reply_at if end is None else stamps[end].get(s.wamid)
            if a is not None and b is not None:
                deltas.append(b - a)
        result[name] = summary_ms(deltas)
    return result


def classify(text: str | None) -> str:
    profile = demo.demo_tenant().profile
    if text == profile.render(profile.greeting_template):
        return "greeting"
    if text == profile.render(profile.handoff_message):
        return "handoff"
    if text in {answer for _, answer in demo.DEMO_FAQS}:
        return "faq"
    if text == profile.render(profile.thanks_template):
        return "thanks"
    return "other"


def report_pipeline(
    samples: list[Sample], missing: set[str], cpu: dict[str, Any], stages: dict[str, Any]
) -> dict[str, Any]:
    n = len(samples)
    answered = [s for s in samples if s.e2e is not None]
    e2e = [s.e2e for s in answered if s.e2e is not None]
    errors = [s for s in samples if s.error]
    posts = sorted(s.posted_at for s in samples)
    replies = sorted(s.reply_at for s in answered if s.reply_at is not None)
    offered = (n - 1) / (posts[-1] - posts[0]) if n > 1 and posts[-1] > posts[0] else math.nan
    # Replies per second between the first and the last reply: the offered rate when the
    # pipeline keeps up, its capacity when it does not.
    throughput = (
        (len(replies) - 1) / (replies[-1] - replies[0])
        if len(replies) > 1 and replies[-1] > replies[0]
        else math.nan
    )
    decile = max(1, n // 10)
    first = summary_ms(s.e2e for s in samples[:decile] if s.e2e is not None)
    last = summary_ms(s.e2e for s in samples[-decile:] if s.e2e is not None)
    saturated = bool(
        throughput < 0.9 * offered
        or (first.get("n") and last.get("n") and last["p50"] > 2 * first["p50"] + 100)
    )
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        of_kind = [s for s in samples if s.kind == kind]
        outcomes: dict[str, int] = {}
        for s in of_kind:
            got = classify(s.replies[0]["text"]) if s.replies else "no_reply"
            outcomes[got] = outcomes.get(got, 0) + 1
        by_kind[kind] = {
            "sent": len(of_kind),
            "replies": outcomes,
            "e2e_ms": summary_ms(s.e2e for s in of_kind if s.e2e is not None),
        }
    return {
        "messages": n,
        "answered": len(answered),
        "no_reply": len(missing),
        "no_reply_leads": sorted(missing)[:20],
        "duplicate_replies": sum(1 for s in samples if len(s.replies) > 1),
        "webhook_errors": len(errors),
        "first_error": errors[0].error if errors else None,
        "e2e_ms": summary_ms(e2e),
        "webhook_ack_ms": summary_ms(
            s.ack_s for s in samples if s.ack_s is not None and not s.error
        ),
        "throughput_msg_s": throughput,
        "offered_rate_msg_s": offered,
        "saturated": saturated,
        "e2e_p50_first_vs_last_decile_ms": [first.get("p50"), last.get("p50")],
        "schedule_lag_ms": summary_ms(max(0.0, s.started - s.due) for s in samples),
        "by_kind": by_kind,
        "stages_ms": stages,
        "cpu_ms_per_msg": {k: v * 1000 / n for k, v in cpu["seconds"].items()},
        "cores_busy": cpu["cores_busy"],
        "window_s": cpu["wall_s"],
        "raw": {
            "e2e_ms": [round(s.e2e * 1000, 2) if s.e2e is not None else None for s in samples],
            "ack_ms": [round(s.ack_s * 1000, 2) if s.ack_s is not None else None for s in samples],
        },
    }


# -- output ----------------------------------------------------------------------------------


def row(label: str, s: dict[str, float], width: int = 38) -> str:
    if not s.get("n"):
        return f"  {label:<{width}} (no data)"
    return (
        f"  {label:<{width}} {s['n']:>5}  {s['p50']:>8.1f} {s['p95']:>8.1f} "
        f"{s['p99']:>8.1f} {s['max']:>8.1f}"
    )


def print_report(result: dict[str, Any], output: Path) -> None:
    p, b, cfg = result["pipeline"], result["baseline"], result["config"]
    head = f"  {'latency (ms)':<38} {'n':>5}  {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    lines = [
        "",
        f"TaskPilot pipeline benchmark: {cfg['count']} messages at {cfg['rate']:g} msg/s "
        f"(+{WARMUP} warm-up each), {os.cpu_count()} cores",
        "",
        head,
        "  " + "-" * (len(head) - 2),
        row("pipeline: webhook -> Graph send", p["e2e_ms"]),
    ]
    for kind in KINDS:
        lines.append(row(f"  {kind}", p["by_kind"][kind]["e2e_ms"]))
    lines += [
        row("pipeline: webhook ack (ingest)", p["webhook_ack_ms"]),
        row("baseline: webhook ack (bare publish)", b["ack_ms"]),
        "",
        "  stages (JetStream store timestamps)",
    ]
    for name, s in p["stages_ms"].items():
        lines.append(row(f"  {name}", s))
    ratio = result["ratio_ingest_ack_vs_baseline"]
    first, last = p["e2e_p50_first_vs_last_decile_ms"]
    lines += [
        "",
        f"  ingest ack / baseline ack:  p50 x{ratio['p50']:.2f}   p95 x{ratio['p95']:.2f}   "
        f"p99 x{ratio['p99']:.2f}",
        f"  throughput: {p['throughput_msg_s']:.1f} replies/s (offered "
        f"{p['offered_rate_msg_s']:.1f} msg/s); e2e p50 first/last tenth: "
        f"{first or math.nan:.0f} / {last or math.nan:.0f} ms",
        f"  no reply: {p['no_reply']}   duplicate replies: {p['duplicate_replies']}   "
        f"webhook errors: {p['webhook_errors']} (baseline {b['errors']})",
        "  replies by kind: "
        + "; ".join(
            f"{kind} -> " + ", ".join(f"{k} {v}" for k, v in p["by_kind"][kind]["replies"].items())
            for kind in KINDS
        ),
        "  CPU ms per message: "
        + ", ".join(f"{k} {v:.1f}" for k, v in p["cpu_ms_per_msg"].items()),
        "  baseline CPU ms per message: "
        + ", ".join(f"{k} {v:.2f}" for k, v in b["cpu_ms_per_msg"].items()),
        "  cores busy (pipeline window): "
        + ", ".join(f"{k} {v:.2f}" for k, v in p["cores_busy"].items()),
        f"  client schedule lag p99: pipeline {p['schedule_lag_ms'].get('p99', 0):.1f} ms, "
        f"baseline {b['schedule_lag_ms'].get('p99', 0):.1f} ms",
    ]
    if p["saturated"]:
        lines.append(
            "  SATURATED: the pipeline did not keep up with the offered rate; its latencies "
            "are mostly queueing (lower --rate for the latency of a keeping-up pipeline)"
        )
    for phase, name in ((p, "pipeline"), (b, "baseline")):
        other = phase["cores_busy"]["other_processes"]
        if other > 0.25:
            lines.append(
                f"  NOISY: other processes kept {other:.2f} cores busy during the {name} window"
            )
    lines += ["", f"  results: {output}", ""]
    print("\n".join(lines), flush=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("fastapi", "uvicorn", "uvloop", "httptools", "httpx", "nats-py", "faststream"):
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


# -- main ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="taskpilot-bench-"))
    processes: list[ServiceProcess] = []
    nats: NatsServer | None = None
    dbname: str | None = None
    ok = False
    try:
        nats = NatsServer(tmp / "nats").start()
        print(f"nats-server {nats.url} (store {tmp / 'nats'})", flush=True)

        print(f"baseline: {args.count} messages at {args.rate:g} msg/s ...", flush=True)
        baseline = await run_baseline(args, nats, tmp, processes)

        dbname = scratch_database_name("tp_bench")
        database_url = create_database(args.admin_url, dbname)
        print(f"pipeline: database {dbname}; starting 6 services + Graph sandbox ...", flush=True)
        pipeline = await run_pipeline(args, nats, dbname, database_url, tmp, processes)

        ack, base = pipeline["webhook_ack_ms"], baseline["ack_ms"]
        result = {
            "benchmark": "pipeline",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {
                "count": args.count,
                "rate": args.rate,
                "warmup": WARMUP,
                "max_in_flight": args.max_in_flight,
                "drain_timeout_s": args.drain_timeout,
                "seed": args.seed,
                "service_env": args.service_env,
                "mix": {k: 1 / len(KINDS) for k in KINDS},
            },
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_at_end": os.getloadavg(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "versions": versions(),
            },
            "pipeline": pipeline,
            "baseline": baseline,
            "ratio_ingest_ack_vs_baseline": {
                q: ack[q] / base[q] if base.get(q) else math.nan for q in ("p50", "p95", "p99")
            },
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print_report(result, args.output)
        ok = pipeline["no_reply"] == 0 and pipeline["webhook_errors"] == 0
        if baseline["errors"]:
            ok = False
        return 0 if ok else 1
    finally:
        stop_all(processes)
        if not ok:
            for proc in processes:
                print(f"--- {proc.log_path.name} (last lines) ---\n{tail(proc.log_path)}")
        if dbname is not None:
            with contextlib.suppress(Exception):
                drop_database(args.admin_url, dbname)
        if nats is not None:
            nats.stop()
        if args.keep:
            print(f"logs and stores kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pipeline latency (webhook -> Graph send) and a bare publish baseline."
    )
    parser.add_argument("--count", type=int, default=1000, help="measured messages (1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (50)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 messages")
    parser.add_argument("--max-in-flight", type=int, default=128, help="open webhooks (128)")
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait for the last replies"
    )
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--admin-url", default=MACHINE_POSTGRES, help="PostgreSQL admin URL")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores)")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="JSON results (bench/results/pipeline.json)"
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the six services (repeatable), e.g. OMP_NUM_THREADS=1",
    )
    args = parser.parse_args(argv)
    try:
        args.service_env = dict(item.split("=", 1) for item in args.service_env)
    except ValueError:
        parser.error("--service-env takes KEY=VALUE")
    if args.quick:
        args.count = 200
    if not 1 <= args.count <= 100_000:
        parser.error("--count must be 1..100000")
    if not 0 < args.rate <= 5_000:
        parser.error("--rate must be in (0, 5000]")
    if not 1 <= args.max_in_flight <= 1_000:
        parser.error("--max-in-flight must be 1..1000")
    return args


async def bounded(args: argparse.Namespace) -> int:
    """The whole run under one deadline: start-up, both phases at the offered rate, drains."""
    budget = (
        args.startup_timeout
        + 3 * 2 * (args.count + 2 * WARMUP) / args.rate
        + 2 * args.drain_timeout
        + 180
    )
    try:
        async with asyncio.timeout(budget) as scope:
            return await main(args)
    except TimeoutError:
        if not scope.expired():
            raise
        print(f"benchmark did not finish within {budget:.0f} s", file=sys.stderr)
        return 2


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(bounded(arguments)))
    else:
        sys.exit(uvloop.run(bounded(arguments)))
