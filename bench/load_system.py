"""The system under load for bench/load.py and the chaos tests: every service as its own
process on a fresh nats-server and a scratch database, N tenants with their FAQs, and probes
(sends recorded by the Graph stand-in, dead letters, consumer lag, CPU per process).

Every process is started and ended by its PID; everything listens on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.js import JetStreamContext
from pydantic import SecretStr

from taskpilot.cli import demo
from taskpilot.contracts import subjects
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.ingest.meta import message_value, signed, text_message, webhook
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess, eventually
from taskpilot.runtime.testing.system import system_env
from taskpilot.runtime.testing.tokens import inline_jwks, operator
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets
from taskpilot.tenancy.tokens import LocalIssuer

SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")
GREETINGS = ("hi", "hello", "hola", "good morning", "hey there", "bom dia", "bonjour")
FAQS = tuple(question for question, _ in demo.DEMO_FAQS)
HANDOFFS = ("I want to talk to a person", "my order never arrived", "can someone call me back?")


@dataclass(frozen=True)
class LoadTenant:
    id: str
    number: str
    app_secret: str

    def tenant(self) -> Tenant:
        return Tenant(
            id=self.id,
            name=f"Load {self.id}",
            profile=BusinessProfile(name=f"Shop {self.id}", languages=["en", "es"]),
            secrets=TenantSecrets(
                app_secret=SecretStr(self.app_secret),
                access_token=SecretStr(f"token-{self.id}"),
                verify_token=SecretStr(f"verify-{self.id}"),
            ),
            phone_number_ids=[self.number],
        )

    def webhook(self, lead: str, text: str, wamid: str) -> tuple[bytes, dict[str, str]]:
        value = message_value(
            self.number,
            [text_message(lead, text, wamid)],
            [{"profile": {"name": "Lead"}, "wa_id": lead}],
        )
        return signed(webhook(value), self.app_secret)

    def batch_webhook(self, items: Iterable[tuple[str, str, str]]) -> tuple[bytes, dict[str, str]]:
        """One webhook carrying several messages (Meta batches bursts): (lead, text, wamid)."""
        items = list(items)
        value = message_value(
            self.number,
            [text_message(lead, text, wamid) for lead, text, wamid in items],
            [{"profile": {"name": "Lead"}, "wa_id": lead} for lead, _, _ in items],
        )
        return signed(webhook(value), self.app_secret)

    def replies(self) -> dict[str, str]:
        """Text of each level-1 or handoff reply this tenant sends -> its kind."""
        profile = self.tenant().profile
        kinds = {answer: "faq" for _, answer in demo.DEMO_FAQS}
        kinds[profile.render(profile.greeting_template)] = "greeting"
        kinds[profile.render(profile.thanks_template)] = "thanks"
        kinds[profile.render(profile.handoff_message)] = "handoff"
        return kinds


def load_tenants(count: int, prefix: str = "load") -> list[LoadTenant]:
    """Tenants ``{prefix}000``...; each prefix has its own range of phone number ids."""
    base = 2 + sum(map(ord, prefix)) % 7  # a leading digit per prefix
    return [
        LoadTenant(f"{prefix}{i:03d}", f"{base}{i:014d}", f"secret-{prefix}-{i}")
        for i in range(count)
    ]


class Process(ServiceProcess):
    """ServiceProcess with a command line of its own."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path):
        super().__init__(module=argv[-1], env=env, port=port, log_path=log_path)
        self.argv = argv

    def start(self) -> Process:
        import subprocess

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        return self


@dataclass
class System:
    nats: NatsServer
    database_url: str
    data: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    restarts: int = 0

    def url(self, name: str) -> str:
        return self.processes[name].base_url

    def _service(self, name: str) -> ServiceProcess:
        port = free_port()
        self.restarts += 1
        log = self.data / f"{name}.{self.restarts}.log"
        env = {**self.env, f"TASKPILOT_{name.upper()}_HTTP_PORT": str(port)}
        if name == "sandbox":
            argv = [sys.executable, "-m", "taskpilot.ingest.sandbox", "--port", str(port)]
            return Process(argv, env, port, log)
        return ServiceProcess(f"taskpilot.{name}", env, port, log)

    async def start(self, extra_env: dict[str, str] | None = None, timeout: float = 180) -> None:
        sandbox_port = free_port()
        (self.data / "qdrant").mkdir(parents=True, exist_ok=True)
        self.env = {  # each service's port is added as it starts (a restart gets a new one)
            **system_env(self.nats.url, self.database_url, self.data, sandbox_port, {}),
            "TASKPILOT_AUTH_JWKS": inline_jwks(LocalIssuer.in_data_dir(self.data)),
            **(extra_env or {}),
        }
        sandbox = Process(
            [sys.executable, "-m", "taskpilot.ingest.sandbox", "--port", str(sandbox_port)],
            {},
            sandbox_port,
            self.data / "sandbox.log",
        )
        self.processes["sandbox"] = sandbox.start()
        for name in SERVICES:
            self.processes[name] = self._service(name).start()
        await asyncio.gather(*(p.wait_ready(timeout) for p in self.processes.values()))

    async def restart(self, name: str, sig: int = signal.SIGKILL, timeout: float = 120) -> float:
        """End a service by its PID with ``sig``, start a new one; seconds until it is ready."""
        old = self.processes[name]
        await asyncio.to_thread(old.stop, sig, 30.0)
        started = time.monotonic()
        new = self._service(name)
        self.processes[name] = new.start()
        await new.wait_ready(timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM every process by PID, then wait (SIGKILL after 30 s)."""
        for process in self.processes.values():
            if process.process is not None and process.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop(timeout=30.0)

    def pids(self) -> dict[str, int]:
        return {n: p.process.pid for n, p in self.processes.items() if p.process is not None}


async def seed_tenants(system: System, tenants: list[LoadTenant], faqs: bool = True) -> None:
    pool = await open_pool(system.database_url, max_size=2)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await directory.ensure_schema()
        for tenant in tenants:
            await directory.upsert(tenant.tenant())
    finally:
        await pool.close()
    if not faqs:
        return
    issuer = LocalIssuer.in_data_dir(system.data)
    async with httpx.AsyncClient(timeout=60, headers=operator(issuer)) as client:
        slots = asyncio.Semaphore(4)

        async def seed(tenant: LoadTenant, question: str, answer: str) -> None:
            async with slots:
                response = await client.post(
                    f"{system.url('knowledge')}/v1/tenants/{tenant.id}/faqs",
                    json={"question": question, "answer": answer},
                )
                response.raise_for_status()

        await asyncio.gather(
            *(seed(t, q, a) for t in tenants for q, a in demo.DEMO_FAQS),
        )


class Sends:
    """Long-polls the Graph stand-in's record of sends and files them by recipient."""

    def __init__(self, system: System):
        self._system = system
        self._after = 0
        self.by_lead: dict[str, list[dict[str, Any]]] = {}
        self.count = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=15.0) as client:
            while True:
                try:
                    response = await client.get(
                        f"{self._system.url('sandbox')}/_sandbox/messages",
                        params={"after": self._after, "wait": 2.0},
                    )
                    response.raise_for_status()
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
                    continue
                for message in response.json():
                    self._after = max(self._after, int(message["seq"]))
                    self.by_lead.setdefault(message["to"], []).append(message)
                    self.count += 1
                self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, leads: Iterable[str], timeout: float) -> set[str]:
        """Wait until every lead got a send or ``timeout`` passes; returns those without."""
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


WAMID = re.compile(r"wamid\.[A-Za-z0-9_=-]+")


def letters_by_wamid(letters: list[DeadLettered]) -> dict[str, str]:
    """wamid -> reason, from the correlation id or (webhooks ingest could not route) the
    raw body the letter keeps."""
    found: dict[str, str] = {}
    for letter in letters:
        for wamid in {letter.correlation_id, *WAMID.findall(letter.payload)}:
            found.setdefault(wamid, letter.reason)
    return found


async def dead_letters(nats_url: str) -> list[DeadLettered]:
    nc = await nats.connect(nats_url, name="bench-dlq")
    letters = []
    try:
        sub = await nc.jetstream().subscribe(subjects.DEAD_LETTER.wildcard(), ordered_consumer=True)
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                break
            letters.append(DeadLettered.model_validate_json(msg.data))
        await sub.unsubscribe()
    finally:
        await nc.close()
    return letters


async def backlogs(js: JetStreamContext) -> dict[str, int]:
    """Every durable consumer's backlog now: pending plus delivered and not yet acknowledged.
    The services' consumers are all durable; the ephemeral ones are the bench's own readers
    of stored messages (the hop timings) and would show as a backlog of the system."""
    lag: dict[str, int] = {}
    for stream in (s.name for s in subjects.ALL_STREAMS):
        with contextlib.suppress(Exception):
            for info in await js.consumers_info(stream):
                if info.config.durable_name:
                    lag[info.name] = (info.num_pending or 0) + (info.num_ack_pending or 0)
    return lag


async def until_idle(nats_url: str, timeout: float) -> dict[str, int]:
    """Wait until no consumer has anything pending or unacknowledged (a late duplicate send
    would have shown up by then); what is still busy at the deadline is returned."""
    busy: dict[str, int] = {}
    nc = await nats.connect(nats_url, name="bench-idle")
    try:

        async def idle() -> bool:
            nonlocal busy
            busy = {name: n for name, n in (await backlogs(nc.jetstream())).items() if n}
            return not busy

        with contextlib.suppress(AssertionError):
            await eventually(idle, timeout=timeout, interval=0.5, what="the bus idle")
    finally:
        await nc.close()
    return busy


class LagSampler:
    """Every consumer's backlog (pending + unacknowledged) over time, from consumer info."""

    def __init__(self, nats_url: str, period_s: float = 1.0):
        self._url, self._period = nats_url, period_s
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()

    async def _run(self) -> None:
        nc = await nats.connect(self._url, name="bench-lag", max_reconnect_attempts=-1)
        js = nc.jetstream()
        try:
            while True:
                self.samples.append((time.monotonic() - self._t0, await backlogs(js)))
                await asyncio.sleep(self._period)
        finally:
            await nc.close()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def peaks(self) -> dict[str, int]:
        peak: dict[str, int] = {}
        for _, lag in self.samples:
            for name, value in lag.items():
                peak[name] = max(peak.get(name, 0), value)
        return {k: v for k, v in sorted(peak.items(), key=lambda kv: -kv[1]) if v}


async def consumer_times(system: System) -> dict[str, dict[str, float]]:
    """Per consumer, from every service's /metrics: deliveries, mean wait in the fair queue
    and mean handler time (ms) since the service started."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, str], float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name in SERVICES:
            try:
                text = (await client.get(f"{system.url(name)}/metrics")).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                if family.name not in (
                    "taskpilot_consumer_wait_seconds",
                    "taskpilot_consumer_handle_seconds",
                ):
                    continue
                for sample in family.samples:
                    if sample.name.endswith(("_sum", "_count")):
                        key = (
                            sample.labels["consumer"],
                            sample.name.rsplit("_", 1)[0] + "." + sample.name.rsplit("_", 1)[1],
                        )
                        sums[key] = sums.get(key, 0.0) + sample.value
    result: dict[str, dict[str, float]] = {}
    for (consumer, metric), value in sums.items():
        result.setdefault(consumer, {})[metric] = value
    table = {}
    for consumer, m in result.items():
        waits = m.get("taskpilot_consumer_wait_seconds.count", 0.0)
        handled = m.get("taskpilot_consumer_handle_seconds.count", 0.0)
        table[consumer] = {
            "deliveries": waits,
            "wait_ms_mean": 1000 * m.get("taskpilot_consumer_wait_seconds.sum", 0.0) / waits
            if waits
            else 0.0,
            "handle_ms_mean": 1000 * m.get("taskpilot_consumer_handle_seconds.sum", 0.0) / handled
            if handled
            else 0.0,
        }
    return table


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system_, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system_ + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of each service process, nats-server and this process over a window."""

    def __init__(self, pids: dict[str, int]):
        self._pids = pids

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._client = time.process_time()
        self._machine = machine_busy_seconds()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        used = {n: cpu_seconds(p) - self._before.get(n, 0.0) for n, p in self._pids.items()}
        used["bench-client"] = time.process_time() - self._client
        machine = machine_busy_seconds() - self._machine
        return {
            "wall_s": wall,
            "seconds": used,
            "cores_busy": {"ours": sum(used.values()) / wall, "machine": machine / wall},
        }
