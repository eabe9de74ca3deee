"""Ingest's webhook edge: signed webhooks per second and ack latency, against a bare baseline.

Servers, each in its own process with a fresh nats-server of its own (so no server's consumers
work during another's phase), and a scratch PostgreSQL database:

* ingest: ``python -m taskpilot.ingest`` (uvicorn, uvloop + httptools, one worker), the demo
  tenant seeded; every webhook is verified (HMAC of the raw body), split, parsed into a
  contract and published to JetStream with an ack before the 200.
* ingest-edge: the same with ``TASKPILOT_INGEST_MEDIA_CONSUMER=false``, the deployment where
  the media consumer (which reads every inbound message) runs in another process.
* baseline: ``bench/baseline_server.py``, a bare FastAPI endpoint on the same stack that reads
  the body and publishes it with an ack; no signature, no tenant, no parsing.

The load generator (``bench/ingest_load.py``) runs in a process of its own and sends the same
signed webhooks (one lead and one wamid each) to each server in turn, on loopback:

* closed loop: ``--connections`` clients back to back: maximum throughput.
* open loop at ``--rate`` webhooks/s: ack latency counted from when each webhook was due.

Phases alternate the servers, ``--rounds`` times, each with the load average before it.
Throughput is judged by ingest/baseline within a round (same machine load), median over rounds;
latency by the open-loop round with the lowest p99 (other processes only ever slow one down).

    .venv/bin/python bench/ingest.py                  # 10 s per phase, 2 rounds
    .venv/bin/python bench/ingest.py --quick          # 3 s per phase, 1 round
    .venv/bin/python bench/ingest.py --rate 2000 --duration 20

Prints a table, writes ``bench/results/ingest.json`` (``--output``) and exits 1 when ingest
misses its targets: at least 0.7x the baseline's closed-loop throughput, and p99 ack <= 50 ms
at the open-loop rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ingest_load.py

from ingest_load import LoadSpec, run

from taskpilot.cli import demo
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

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "ingest.json"
THROUGHPUT_TARGET = 0.7
P99_TARGET_MS = 50.0


class ScriptProcess(ServiceProcess):
    """A ServiceProcess for a command line other than ``python -m <module>``."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path):
        super().__init__(module=Path(argv[1]).name, env=env, port=port, log_path=log_path)
        self.argv = argv

    def start(self) -> ScriptProcess:
        import subprocess

        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
        )
        return self


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = sorted(values)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean": sum(ms) / len(ms),
        "p50": percentile(ms, 0.50),
        "p90": percentile(ms, 0.90),
        "p99": percentile(ms, 0.99),
        "max": ms[-1],
    }


def drive(spec: LoadSpec, server_pid: int, nats_pid: int) -> dict[str, Any]:
    """Run one load phase from a separate process; CPU of the server, of nats-server and of
    the machine over it (per request: warm-up included, since its CPU is counted too)."""
    load_before = os.getloadavg()
    before = {pid: cpu_seconds(pid) for pid in (server_pid, nats_pid)}
    busy0, wall0 = machine_busy_seconds(), time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        figures: dict[str, Any] = pool.apply(run, (spec,))
    wall = time.perf_counter() - wall0
    busy = machine_busy_seconds() - busy0
    used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
    ack = figures.pop("ack_ms")
    service = figures.pop("service_ms")
    answered = max(1, figures["answered_total"])
    return figures | {
        "ack_ms": summary_ms(ack),
        "service_ms": summary_ms(service),
        "loadavg_before": [round(x, 2) for x in load_before],
        "cores_busy_machine": busy / wall,
        "server_cpu_ms_per_request": 1000 * used[server_pid] / answered,
        "nats_cpu_ms_per_request": 1000 * used[nats_pid] / answered,
        "spec": asdict(spec),
    }


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


async def stream_messages(nats_url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(nats_url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


EDGE_ENV = {"TASKPILOT_INGEST_MEDIA_CONSUMER": "false"}
"""The ``ingest-edge`` variant: webhooks only, the media consumer left to another process."""


def start_servers(
    natses: dict[str, NatsServer], database_url: str, tmp: Path, ingest_env: dict[str, str]
) -> dict[str, ServiceProcess]:
    servers: dict[str, ServiceProcess] = {}
    for name, nats in natses.items():
        port = free_port()
        if name == "baseline":
            argv = [sys.executable, str(BENCH_DIR / "baseline_server.py"), "--port", str(port)]
            servers[name] = ScriptProcess(
                [*argv, "--nats-url", nats.url], env={}, port=port, log_path=tmp / "baseline.log"
            )
            continue
        env = {
            "NATS_URL": nats.url,
            "DATABASE_URL": database_url,
            "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
            "TASKPILOT_DATA_DIR": str(tmp / "data"),
            "TASKPILOT_INGEST_HTTP_PORT": str(port),
            "TASKPILOT_LOG_LEVEL": "WARNING",
            **ingest_env,
            **(EDGE_ENV if name == "ingest-edge" else {}),
        }
        servers[name] = ServiceProcess(
            "taskpilot.ingest", env=env, port=port, log_path=tmp / f"{name}.log"
        )
    for server in servers.values():
        server.start()
    return servers


def phases(args: argparse.Namespace, port: dict[str, int], pids: dict[str, int]) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {}
    path = f"/webhooks/whatsapp/{demo.DEMO_TENANT}"
    for round_ in range(args.rounds):
        for mode in args.modes:
            for server in args.servers:
                spec = LoadSpec(
                    port=port[server],
                    path=path,
                    mode=mode,
                    connections=args.connections if mode == "closed" else args.open_connections,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                    rate=args.rate,
                    lead_prefix=f"34{round_}{'co'.index(mode[0])}{len(results)}",
                )
                figures = drive(spec, pids[server], pids[f"nats-{server}"])
                results.setdefault(f"{server}/{mode}", []).append(figures)
                print("  " + line(f"{server} {mode} (round {round_ + 1})", figures), flush=True)
    return {name: best(runs, name.endswith("closed")) for name, runs in results.items()} | {
        "all_rounds": results
    }


def best(runs: list[dict[str, Any]], closed: bool) -> dict[str, Any]:
    """The least disturbed round: most throughput (closed loop), lowest p99 (open loop)."""
    if closed:
        return max(runs, key=lambda r: r["throughput_rps"])
    return min(runs, key=lambda r: r["ack_ms"].get("p99", math.inf))


def line(label: str, f: dict[str, Any]) -> str:
    a = f["ack_ms"]
    errors = f["requests"] - f["ok"]
    return (
        f"{label:<28} {f['throughput_rps']:>8.0f}/s  p50 {a.get('p50', math.nan):6.2f} ms  "
        f"p99 {a.get('p99', math.nan):6.2f} ms  max {a.get('max', math.nan):7.1f} ms  "
        f"errors {errors:>4}  CPU ms/req server {f['server_cpu_ms_per_request']:.3f} "
        f"nats {f['nats_cpu_ms_per_request']:.3f}  "
        f"load {f['loadavg_before'][0]:.2f}"
    )


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="tp-bench-ingest-"))
    dbname = scratch_database_name("tp_bench")
    database_url = create_database(args.admin_url, dbname)
    natses: dict[str, NatsServer] = {}
    processes: list[ServiceProcess] = []
    try:
        for name in args.servers:
            natses[name] = NatsServer(tmp / f"nats-{name}").start()
        await seed_tenant(database_url)
        servers = start_servers(natses, database_url, tmp, dict(args.ingest_env))
        processes += servers.values()
        await asyncio.gather(*(server.wait_ready(60) for server in servers.values()))
        pids = {name: server.process.pid for name, server in servers.items() if server.process}
        pids |= {f"nats-{name}": n.process.pid for name, n in natses.items() if n.process}
        print(
            f"ingest benchmark: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
            f"closed loop c={args.connections}, open loop {args.rate:g}/s "
            f"(<= {args.open_connections} in flight); {args.duration:g} s per phase "
            f"after {args.warmup:g} s warm-up, {args.rounds} round(s)",
            flush=True,
        )
        result = phases(args, {name: server.port for name, server in servers.items()}, pids)
        published = 0
        for name, nats in natses.items():
            if name.startswith("ingest"):
                published += await stream_messages(nats.url, "WHATSAPP_IN")
    finally:
        for proc in processes:
            with contextlib.suppress(Exception):
                proc.stop()
        for nats in natses.values():
            nats.stop()
        drop_database(args.admin_url, dbname)
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = judge(result, published)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "config": vars(args) | {"output": str(args.output)},
        "verdict": verdict,
        **result,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print("best round of each (closed: most throughput; open: lowest p99):")
    for name in (f"{server}/{mode}" for mode in args.modes for server in args.servers):
        if name in result:
            print("  " + line(name, result[name]))
    print(
        f"ingest/baseline closed-loop throughput {verdict['throughput_ratio']:.2f} (median of "
        f"rounds {', '.join(f'{r:.2f}' for r in verdict['throughput_ratio_by_round'])}) "
        f"(target >= {THROUGHPUT_TARGET}); ingest p99 at {args.rate:g}/s "
        f"{verdict['open_loop_p99_ms']:.1f} ms (target <= {P99_TARGET_MS:g}); "
        f"{published} webhooks stored for {verdict['ingest_acked']} acks. Written to {args.output}"
    )
    if verdict["edge_throughput_ratio_by_round"]:
        print(
            f"ingest-edge (media consumer in another process): throughput "
            f"{verdict['edge_throughput_ratio']:.2f} of the baseline, p99 at {args.rate:g}/s "
            f"{verdict['edge_open_loop_p99_ms']:.1f} ms"
        )
    good = verdict["throughput_ok"] and verdict["p99_ok"] and verdict["every_ack_stored"]
    return 0 if good else 1


def judge(result: dict[str, Any], published: int) -> dict[str, Any]:
    """Throughput: ingest over baseline within each round (measured one after the other, under
    about the same machine load), the median over rounds. Latency: the open-loop round with the
    lowest ingest p99."""
    rounds = result["all_rounds"]
    acked = sum(r["ok"] for k, runs in rounds.items() if k.startswith("ingest") for r in runs)

    def ratios(server: str) -> list[float]:
        pairs = zip(
            rounds.get(f"{server}/closed", []), rounds.get("baseline/closed", []), strict=False
        )
        return [i["throughput_rps"] / b["throughput_rps"] for i, b in pairs]

    def p99(server: str) -> float:
        best = result.get(f"{server}/open")
        return float(best["ack_ms"].get("p99", math.inf)) if best else math.nan

    ratio = statistics.median(ratios("ingest")) if ratios("ingest") else math.nan
    edge = ratios("ingest-edge")
    return {
        "throughput_ratio": ratio,
        "throughput_ratio_by_round": ratios("ingest"),
        "throughput_ok": ratio >= THROUGHPUT_TARGET,
        "open_loop_p99_ms": p99("ingest"),
        "p99_ok": p99("ingest") <= P99_TARGET_MS,
        "edge_throughput_ratio": statistics.median(edge) if edge else math.nan,
        "edge_throughput_ratio_by_round": edge,
        "edge_open_loop_p99_ms": p99("ingest-edge"),
        "stored_in_whatsapp_in": published,
        "ingest_acked": acked,
        "every_ack_stored": published >= acked,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--rate", type=float, default=2000.0, help="open-loop webhooks/s")
    parser.add_argument("--open-connections", type=int, default=64, help="open-loop cap")
    parser.add_argument("--admin-url", default=os.environ.get("DATABASE_URL", MACHINE_POSTGRES))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="3 s phases, 1 round")
    parser.add_argument(
        "--ingest-env",
        action="append",
        default=[],
        type=lambda kv: tuple(kv.split("=", 1)),
        metavar="NAME=VALUE",
        help="extra environment of the ingest process (experiments)",
    )
    parser.add_argument(
        "--modes", nargs="+", default=["closed", "open"], choices=["closed", "open"]
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["baseline", "ingest", "ingest-edge"],
        choices=["baseline", "ingest", "ingest-edge"],
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 3.0, 1.0, 1
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args())))
