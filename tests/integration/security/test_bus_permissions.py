"""Bus permissions, proven against the project's nats-server with the generated users.

Each service, connected as its own user, provisions and runs every durable consumer its
handlers declare (pull, ack), publishes every channel it owns and uses its KV buckets. Then the
attacks: a service publishing another's subjects, listening to another's inbox or serving
another's request-reply; an internal team publishing contract subjects or another team's,
calling ``rpc.knowledge.<tenant>...``, reading commands, request-reply, dead letters or the
JetStream API. Every refused attempt must be seen as a permissions violation from the server;
an attempt that is not refused fails the suite (no violation arrives before the deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import pkgutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from taskpilot.cli import demo
from taskpilot.cli.bus_auth import helm_values, provision
from taskpilot.contracts import subjects
from taskpilot.contracts.knowledge import KnowledgeSearchResult, SearchKnowledge
from taskpilot.contracts.subjects import ALL_STREAMS, INBOUND_PARTITIONS, Channel
from taskpilot.ingest.meta import signed, text_webhook
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import ConsumerSpec
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.dlq import MOVER, RUNTIME_STREAMS
from taskpilot.runtime.permissions import (
    ADMIN,
    PUBLIC_CHANNELS,
    SERVICES,
    all_permissions,
    server_authorization,
    team_user,
)
from taskpilot.runtime.pulling import ACK, Delivery, Outcome
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS, CommonSettings, NatsCredentials
from taskpilot.runtime.testing import ServiceProcess, eventually
from taskpilot.tenancy import SecretBox, TenantDirectory
from taskpilot.tenancy.tokens import LocalIssuer

ROOT = Path(__file__).resolve().parents[3]
TEAMS = ("sales", "ops")
TENANT = "tenant-a"


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {p.user: f"pw-{p.user}" for p in all_permissions(TEAMS)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]) -> Iterator[str]:
    config = server_authorization(passwords, TEAMS)
    nats_server = NatsServer(tmp_path_factory.mktemp("nats-auth"), config=config).start()
    yield nats_server.url
    nats_server.stop()


@pytest.fixture(scope="module")
async def provisioned(server: str, passwords: dict[str, str]) -> str:
    await provision(server, NatsCredentials(ADMIN, passwords[ADMIN]))
    return server


def credentials(passwords: dict[str, str], user: str) -> NatsCredentials:
    return NatsCredentials(user, passwords[user])


class Watched:
    """A connection of one user that keeps every error the server sent it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = NatsClient()

    async def connect(self, url: str, creds: NatsCredentials) -> Watched:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        await self.nc.connect(
            url,
            user=creds.user,
            password=creds.password,
            inbox_prefix=creds.inbox_prefix,
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def refused(self, kind: str, subject: str) -> None:
        """Wait for the server's violation of ``kind`` (publish/subscription) on ``subject``."""
        # nats-py lowercases the server's -ERR text
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()

        async def seen() -> bool:
            return any(wanted in e.lower() for e in self.errors)

        await eventually(seen, timeout=3.0, what=f"{kind} to {subject} refused")

    async def close(self) -> None:
        if self.nc.is_connected:
            await self.nc.close()


Connect = Callable[[str], Awaitable[Watched]]


@pytest.fixture
async def connect(provisioned: str, passwords: dict[str, str]) -> AsyncIterator[Connect]:
    opened: list[Watched] = []

    async def open_as(user: str) -> Watched:
        watched = await Watched().connect(provisioned, credentials(passwords, user))
        opened.append(watched)
        return watched

    yield open_as
    for watched in opened:
        await watched.close()


def example_subject(channel: Channel, tenant: str = TENANT) -> str:
    parts = {name: f"x{i}" for i, name in enumerate(channel.placeholders)}
    return channel.subject(**{**parts, "tenant": tenant})


# -- the generated artefacts ------------------------------------------------------------------


def test_helm_values_for_the_nats_chart_are_generated_from_the_table() -> None:
    committed = (ROOT / "deploy/helm/examples/nats-auth-values.yaml").read_text()
    assert committed == helm_values(), "run: taskpilot nats helm-values > that file"


def test_every_service_user_has_an_entry_in_the_taskpilot_chart() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "deploy/helm/taskpilot/values.yaml").read_text())
    assert set(values["services"]) == set(SERVICES)


def test_kv_buckets_of_the_table_are_the_services_defaults() -> None:
    from taskpilot.inference.settings import InferenceSettings
    from taskpilot.ingest.adapters.ledger import SendLedger

    inference = InferenceSettings()
    assert SERVICES["inference"].buckets == (inference.cache_bucket, inference.spend_bucket)
    assert SERVICES["ingest"].buckets == (SendLedger.BUCKET,)


# -- every service can do its job ---------------------------------------------------------------


def declared_consumers(service: str) -> list[ConsumerSpec]:
    """Every ConsumerSpec of the service's handlers module (module values, and factories
    called with the service's default settings or each inbound partition)."""
    handlers = importlib.import_module(f"taskpilot.{service}.handlers")
    settings_module = importlib.import_module(f"taskpilot.{service}.settings")
    settings_class = next(
        v
        for v in vars(settings_module).values()
        if isinstance(v, type)
        and issubclass(v, CommonSettings)
        and v.__module__ == settings_module.__name__
    )
    found: dict[str, ConsumerSpec] = {}

    def collect(value: object) -> None:
        if isinstance(value, ConsumerSpec):
            found[value.durable] = value
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in vars(value).values():
                collect(item)

    for name, value in vars(handlers).items():
        if not (inspect.isfunction(value) and value.__module__ == handlers.__name__):
            collect(value)
        elif "spec" in name:
            params = list(inspect.signature(value).parameters.values())
            if not params:
                collect(value())
            elif params[0].annotation in (int, "int"):
                collect([value(p) for p in range(INBOUND_PARTITIONS)])
            else:
                collect(value(settings_class()))
    return list(found.values())


def test_every_consumed_stream_is_in_the_table() -> None:
    for service, access in SERVICES.items():
        for spec in declared_consumers(service):
            assert spec.stream in access.consumes, f"{service}: {spec.durable}"


def test_every_request_reply_channel_is_served_by_one_service() -> None:
    import taskpilot.contracts as contracts

    declared = {
        value
        for module in pkgutil.iter_modules(contracts.__path__)
        for value in vars(importlib.import_module(f"taskpilot.contracts.{module.name}")).values()
        if isinstance(value, Channel) and value.stream is None
    }
    served = [c for access in SERVICES.values() for c in access.serves]
    assert sorted(c.pattern for c in served) == sorted(c.pattern for c in declared)


def feeding_subjects(spec: ConsumerSpec) -> list[str]:
    """Subjects whose messages reach ``spec``'s consumer (a partitioned filter: one lead per
    partition cannot be chosen from outside, so enough leads to cover every partition)."""
    parts = spec.filter_subject.split(".")
    if spec.stream.partitioning is not None:
        kind = parts[-1] if parts[-1] != ">" else "message"
        return [f"wa.in.{TENANT}.lead{n}.{kind}" for n in range(16 * INBOUND_PARTITIONS)]
    tokens = ["x" + str(i) if t == "*" else t for i, t in enumerate(parts)]
    if tokens[-1] == ">":
        tokens[-1] = "fact"
    return [".".join(tokens)]


@pytest.mark.parametrize("service", list(SERVICES))
async def test_service_runs_its_consumers_and_publishes_its_channels_as_its_user(
    service: str, provisioned: str, passwords: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    access = SERVICES[service]
    bus = Bus(provisioned, name=service, credentials=credentials(passwords, service))
    admin = await nats.connect(provisioned, user=ADMIN, password=passwords[ADMIN])
    await bus.connect()
    try:
        # Start-up: the shared provisioning finds every stream as wanted, changes nothing.
        await ensure_streams(bus.js, ALL_STREAMS + RUNTIME_STREAMS)

        handled: dict[str, int] = {}

        def counting(durable: str) -> Callable[[Delivery], Awaitable[Outcome]]:
            async def process(delivery: Delivery) -> Outcome:
                handled[durable] = handled.get(durable, 0) + 1
                return ACK

            return process

        specs = declared_consumers(service)
        for spec in [*specs, MOVER]:
            bus.add_consumer(spec, counting(spec.durable))
        await bus.start()
        for spec in specs:
            for subject in feeding_subjects(spec):
                await admin.jetstream().publish(subject, b"{}", stream=spec.stream.name)

        async def all_handled_and_acked() -> bool:
            for spec in specs:
                if not handled.get(spec.durable):
                    return False
                info = await admin.jetstream().consumer_info(spec.stream.name, spec.durable)
                if info.num_ack_pending or info.num_pending:
                    return False
            return True

        await eventually(all_handled_and_acked, timeout=30, what=f"{service} consumers")

        for channel in access.publishes:
            assert channel.stream is not None
            subject = example_subject(channel)
            headers = {"Nats-Msg-Id": f"{service}:{subject}"}
            stored = await bus.publish_raw(subject, b"{}", headers, channel.stream.name)
            assert stored, f"{service} publishing {channel.pattern}"
        dead_letter = example_subject(subjects.DEAD_LETTER)
        assert await bus.publish_raw(dead_letter, b"{}", {}, subjects.DEAD_LETTERS.name)

        for bucket in access.buckets:
            kv = await bus.js.create_key_value(bucket=bucket, history=1)
            await kv.put("probe", service.encode())
            assert (await kv.get("probe")).value == service.encode()
        for stream in access.purges:
            await bus.js.purge_stream(stream.name, subject=f"{stream.subjects[0][:-1]}nobody.>")
        if service == "tools":  # its readers of other streams' history
            from taskpilot.tools.adapters.streams import ConversationHistory, DeadLetterArchive

            quiet = "tenant-quiet"  # nothing was published for it
            assert await DeadLetterArchive(bus.js).letters(quiet, "nobody", 5) == []
            now = datetime.now(UTC)
            history = ConversationHistory(bus.js)
            assert await history.events(quiet, now - timedelta(days=1), now) == []
    finally:
        await bus.close()
        await admin.close()
    # nats-py and FastStream log what the server refused: nothing was.
    refused = [
        f"{r.getMessage()} {r.exc_info}"
        for r in caplog.records
        if "permissions violation" in f"{r.getMessage()} {r.exc_info}".lower()
    ]
    assert refused == []


async def test_knowledge_answers_inference_on_its_own_inbox(connect: Connect) -> None:
    knowledge, inference = await connect("knowledge"), await connect("inference")

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"hits": []}')

    await knowledge.nc.subscribe(
        subjects.KNOWLEDGE_SEARCH.wildcard(), queue="knowledge-search", cb=answer
    )
    await knowledge.nc.flush()

    async def answered() -> Msg | None:
        # Once in a CI run the server still had no interest right after the flush.
        try:
            return await inference.nc.request(
                example_subject(subjects.KNOWLEDGE_SEARCH), b"{}", 2.0
            )
        except nats.errors.NoRespondersError:
            return None

    reply = await eventually(answered, timeout=10.0, what="knowledge answers inference")
    assert reply is not None
    assert reply.data == b'{"hits": []}'
    assert reply.subject.startswith("_INBOX.inference.")
    assert not knowledge.errors and not inference.errors


# -- attacks: services ----------------------------------------------------------------------------


def foreign_channels(service: str) -> list[Channel]:
    own = set(SERVICES[service].publishes) | set(SERVICES[service].requests)
    return [
        c
        for other, access in SERVICES.items()
        if other != service
        for c in access.publishes + access.requests + access.serves
        if c not in own
    ]


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_service_cannot_publish_another_services_subjects(
    service: str, connect: Connect
) -> None:
    watched = await connect(service)
    attempts = sorted({example_subject(c) for c in foreign_channels(service)})
    attempts += [f"team.sales.{service}", "$JS.API.STREAM.DELETE.CONVERSATION"]
    attempts += ["$JS.API.STREAM.UPDATE.WHATSAPP_IN", "$JS.API.STREAM.PURGE.DEAD_LETTERS"]
    assert len(attempts) > 4
    for subject in attempts:
        await watched.nc.publish(subject, b"{}")
    await watched.nc.flush()
    for subject in attempts:
        await watched.refused("publish", subject)


@pytest.mark.parametrize("service", ["ingest", "inference", "tools"])
async def test_a_service_cannot_listen_to_other_inboxes_or_serve_knowledge(
    service: str, connect: Connect
) -> None:
    watched = await connect(service)
    attempts = ["_INBOX.>", "_INBOX.knowledge.>", "rpc.knowledge.>", "wa.out.>", ">"]
    for subject in attempts:
        await watched.nc.subscribe(subject)
    for subject in attempts:
        await watched.refused("subscription", subject)


# -- attacks: internal teams ---------------------------------------------------------------------

COMMANDS_AND_INTERNALS = [
    subjects.WA_SEND.wildcard(),
    subjects.WA_MARK_READ.wildcard(),
    subjects.GENERATE_REPLY.wildcard(),
    subjects.TOOL_EXECUTE.wildcard(),
    subjects.TOOL_WEBHOOK_DELIVERY.wildcard(),
    subjects.TOOL_JOB_RUN.wildcard(),
    subjects.WA_MESSAGE_RECEIVED.wildcard(),
    subjects.KNOWLEDGE_SEARCH.wildcard(),
    "rpc.>",
    "rpc.knowledge.>",
    subjects.DEAD_LETTER.wildcard(),
    "dlq.>",
    "dlqops.>",
    "$JS.EVENT.ADVISORY.>",
    "$KV.>",
    "_INBOX.>",
    "_INBOX.knowledge.>",
    "_INBOX.team-ops.>",
    "team.ops.>",
    ">",
]


async def test_a_team_cannot_read_commands_request_reply_dead_letters_or_inboxes(
    connect: Connect,
) -> None:
    team = await connect(team_user("sales"))
    for subject in COMMANDS_AND_INTERNALS:
        await team.nc.subscribe(subject)
    for subject in COMMANDS_AND_INTERNALS:
        await team.refused("subscription", subject)


async def test_a_team_cannot_publish_contract_subjects_nor_call_knowledge(connect: Connect) -> None:
    team = await connect(team_user("sales"))
    every_channel = {
        c for access in SERVICES.values() for c in access.publishes + access.serves
    } | {subjects.DEAD_LETTER}
    attempts = sorted({example_subject(c) for c in every_channel})
    attempts += [
        "team.ops.announcement",  # another team's
        "$JS.API.CONSUMER.CREATE.DEAD_LETTERS.spy",
        "$JS.API.STREAM.MSG.GET.CONVERSATION",
        "$JS.API.STREAM.INFO.DEAD_LETTERS",
        "$KV.inference_cache.anything",
    ]
    for subject in attempts:
        await team.nc.publish(subject, b"{}")
    await team.nc.flush()
    for subject in attempts:
        await team.refused("publish", subject)

    # Asking knowledge for tenant B's knowledge: refused before any responder sees it.
    knowledge = await connect("knowledge")
    asked: list[str] = []

    async def answer(msg: Msg) -> None:
        asked.append(msg.subject)
        await msg.respond(b"{}")

    await knowledge.nc.subscribe("rpc.knowledge.>", cb=answer)
    await knowledge.nc.flush()
    search = subjects.KNOWLEDGE_SEARCH.subject(tenant="tenant-b")
    team.errors.clear()
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await team.nc.request(search, b'{"query": "prices"}', timeout=1.0)
    await team.refused("publish", search)
    assert asked == []


async def test_a_team_reads_public_events_and_publishes_its_own(connect: Connect) -> None:
    team, conversation, tools = (
        await connect(team_user("sales")),
        await connect("conversation"),
        await connect("tools"),
    )
    received: set[str] = set()

    async def keep(msg: Msg) -> None:
        received.add(msg.subject)

    for channel in PUBLIC_CHANNELS:
        await team.nc.subscribe(channel.wildcard(), cb=keep)
    await team.nc.subscribe("team.sales.>", cb=keep)
    await team.nc.flush()
    event = example_subject(subjects.CONVERSATION_EVENT)
    booked = example_subject(subjects.TOOL_SLOT_BOOKED)
    scored = "team.sales.lead_scored"
    sent_by = {event: conversation, booked: tools, scored: team}
    wanted = set(sent_by)

    async def all_arrived() -> bool:
        # Core NATS is at most once: what has not arrived yet is published again (a refused
        # publish never arrives however often it is sent, and shows in the errors).
        for subject in wanted - received:
            await sent_by[subject].nc.publish(subject, b"{}")
            await sent_by[subject].nc.flush()
        assert received == wanted, (
            sorted(received),
            team.errors,
            conversation.errors,
            tools.errors,
        )
        return True

    await eventually(
        all_arrived, timeout=15.0, interval=0.5, what="the three events delivered to the team"
    )
    assert team.errors == []
    assert conversation.errors == tools.errors == []


async def test_a_team_consumes_public_events_durably_and_nothing_else(
    provisioned: str, passwords: dict[str, str], connect: Connect
) -> None:
    user = team_user("sales")
    bus = Bus(provisioned, name="crm-sync", credentials=credentials(passwords, user))
    admin = await nats.connect(provisioned, user=ADMIN, password=passwords[ADMIN])
    await bus.connect()
    got: asyncio.Queue[str] = asyncio.Queue()

    async def process(delivery: Delivery) -> Outcome:
        await got.put(delivery.msg.subject)
        return ACK

    try:
        # The documented way (docs/events.md): the runtime's consumer, named like the user.
        replies = subjects.CONVERSATION_EVENT.wildcard(event="reply_composed")
        bus.add_consumer(ConsumerSpec(user, subjects.CONVERSATION, replies), process)
        await bus.start()
        event = subjects.CONVERSATION_EVENT.subject(
            tenant=TENANT, lead="4915", event="reply_composed"
        )
        await admin.jetstream().publish(event, b"{}", stream=subjects.CONVERSATION.name)
        assert await asyncio.wait_for(got.get(), 10.0) == event
    finally:
        await bus.close()
        await admin.close()

    team = await connect(user)
    api = "$JS.API.CONSUMER"
    attempts = [
        f"{api}.CREATE.CONVERSATION.analytics-projector.conversation.*.*.*",  # a service's name
        f"{api}.DURABLE.CREATE.CONVERSATION.{user}",  # the legacy API hides the filter
        f"{api}.CREATE.CONVERSATION.{user}",  # no filter, or several
        f"{api}.CREATE.TOOLS.{user}.tools.*.execute",  # commands
        f"{api}.CREATE.TOOLS.{user}.tools.>",
        f"{api}.CREATE.DEAD_LETTERS.{user}.dlq.*.*",
        f"{api}.CREATE.WHATSAPP_IN.{user}.wa.inp.*.*.*.message",
        f"{api}.MSG.NEXT.CONVERSATION.analytics-projector",  # steal a service's deliveries
        f"{api}.DELETE.CONVERSATION.analytics-projector",
        "$JS.ACK.CONVERSATION.analytics-projector.1.1.1.1.0",
        subjects.DEAD_LETTER.subject(tenant=TENANT, origin="analytics-projector"),
    ]
    for subject in attempts:
        await team.nc.publish(subject, b"{}")
    await team.nc.flush()
    for subject in attempts:
        await team.refused("publish", subject)


def test_the_generated_server_config_is_valid_json_per_user(passwords: dict[str, str]) -> None:
    block = server_authorization(passwords, TEAMS)
    users = json.loads(block[block.index("[") : block.rindex("]") + 1])
    assert {u["user"] for u in users} == set(passwords)
    team = next(u for u in users if u["user"] == team_user("sales"))
    published = team["permissions"]["publish"]["allow"]
    assert published[0] == "team.sales.>"
    assert all(p.startswith(("$JS.API.CONSUMER.", "$JS.ACK.", "dlq.*.")) for p in published[1:])


# -- the Helm chart -------------------------------------------------------------------------------


def test_the_chart_gives_each_service_its_own_user_when_enabled() -> None:
    import subprocess

    import yaml

    helm = ROOT / ".tools/deploy/bin/helm"
    if not helm.exists():
        pytest.skip("helm is installed by tests/deploy (deploy/validate.sh --install-only)")
    rendered = subprocess.run(
        [str(helm), "template", "t", str(ROOT / "deploy/helm/taskpilot"),
         "--set", "nats.auth.enabled=true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    users = {}
    for doc in yaml.safe_load_all(rendered.stdout):
        if doc and doc["kind"] == "Deployment":
            env = {e["name"]: e for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
            user = env["NATS_USER"]["value"]
            users[user] = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert set(users) == set(SERVICES)
    assert all(ref == {"name": "taskpilot-nats-users", "key": u} for u, ref in users.items())


# -- the thin slice, every service a process with its own user -----------------------------------


@pytest.fixture(scope="module")
def slice_processes(
    provisioned: str,
    passwords: dict[str, str],
    postgres_admin_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ServiceProcess]]:
    data = tmp_path_factory.mktemp("slice")
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    ports = {name: free_port() for name in (*SERVICES, "sandbox")}
    env = {
        "NATS_URL": provisioned,
        "DATABASE_URL": database_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_DATA_DIR": str(data),
        "TASKPILOT_KNOWLEDGE_QDRANT_PATH": str(data / "qdrant"),
        "TASKPILOT_INGEST_GRAPH_API_BASE": f"http://127.0.0.1:{ports['sandbox']}",
        "PORT": str(ports["sandbox"]),
        **{f"TASKPILOT_{n.upper()}_HTTP_PORT": str(ports[n]) for n in SERVICES},
    }
    processes = {
        "sandbox": ServiceProcess(
            "taskpilot.ingest.sandbox", env, ports["sandbox"], data / "sandbox.log"
        )
    }
    for name in SERVICES:
        own = {**env, "NATS_USER": name, "NATS_PASSWORD": passwords[name]}
        processes[name] = ServiceProcess(
            f"taskpilot.{name}", own, ports[name], data / f"{name}.log"
        )
    for process in processes.values():
        process.start()
    try:
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        drop_database(postgres_admin_url, dbname)


@pytest.fixture(scope="module")
async def seeded(slice_processes: dict[str, ServiceProcess]) -> dict[str, ServiceProcess]:
    """The slice ready, with the demo tenant and its first FAQ."""
    for process in slice_processes.values():
        await process.wait_ready()
    env = slice_processes["ingest"].env
    pool = await open_pool(env["DATABASE_URL"], max_size=1)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await directory.ensure_schema()
        await directory.upsert(demo.demo_tenant())
    finally:
        await pool.close()
    # HTTP auth: a token of the demo tenant from the local issuer the services share through
    # the data directory.
    issuer = LocalIssuer.in_data_dir(Path(env["TASKPILOT_DATA_DIR"]))
    token = issuer.issue(tenant_id=demo.DEMO_TENANT, roles=["owner"], subject="bus-test")
    question, answer = demo.DEMO_FAQS[0]
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{slice_processes['knowledge'].base_url}/v1/tenants/{demo.DEMO_TENANT}/faqs",
            json={"question": question, "answer": answer},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    return slice_processes


async def test_a_lead_is_answered_with_every_service_on_its_own_user(
    seeded: dict[str, ServiceProcess],
) -> None:
    lead = "4915" + str(uuid.uuid4().int)[:9]
    payload = text_webhook(demo.DEMO_NUMBER, lead, "What time do you open?")
    body, headers = signed(payload, demo.DEMO_APP_SECRET)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{seeded['ingest'].base_url}/webhooks/whatsapp/{demo.DEMO_TENANT}",
            content=body,
            headers=headers,
        )
        assert response.status_code == 200, response.text

        async def sent() -> list[dict[str, str]]:
            sandbox = seeded["sandbox"].base_url
            response = await client.get(f"{sandbox}/_sandbox/messages", params={"to": lead})
            return list(response.json())

        replies = await eventually(sent, timeout=30, what="the reply sent through the sandbox")
    assert replies[0]["text"] == demo.DEMO_FAQS[0][1]
    for name in SERVICES:  # no service was refused anything on its way
        log = await asyncio.to_thread(seeded[name].log_path.read_text)
        assert "permissions violation" not in log.lower(), name


# -- the commands of docs/events.md --------------------------------------------------------------


def test_team_credentials_join_the_embedded_defaults_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskpilot.cli.bus_auth import dev_passwords, dev_server_config
    from taskpilot.cli.main import main

    dev_passwords(tmp_path)  # what `taskpilot dev` writes at its first start
    with pytest.raises(SystemExit) as done:
        main(["--data-dir", str(tmp_path), "nats", "team-credentials", "crm"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    _, passwords = dev_passwords(tmp_path)
    assert f"password:      {passwords['team-crm']}" in printed
    assert '"user": "team-crm"' in dev_server_config(passwords)
    assert (tmp_path / "nats-users.json").stat().st_mode & 0o777 == 0o600

    with pytest.raises(SystemExit):
        main(["nats", "server-config", "--team", "crm"])
    block = capsys.readouterr().out
    assert block.startswith("authorization {") and '"user": "team-crm"' in block


async def test_a_legitimate_requester_cannot_cross_tenants_through_knowledge(
    seeded: dict[str, ServiceProcess], passwords: dict[str, str]
) -> None:
    """Inference's user may ask knowledge; its subject names the tenant, and knowledge answers
    only for the tenant of both the subject and the envelope (the running slice's knowledge)."""
    bus = Bus(
        seeded["inference"].env["NATS_URL"],
        name="inference",
        credentials=credentials(passwords, "inference"),
    )
    await bus.connect()
    try:
        question = demo.DEMO_FAQS[0][0]
        own = SearchKnowledge(tenant_id=demo.DEMO_TENANT, correlation_id="x", query=question)

        async def found() -> KnowledgeSearchResult | None:
            result = await bus.request(own, KnowledgeSearchResult, timeout=10)
            return result if result.hits else None

        await eventually(found, timeout=30, what="the demo tenant's FAQ found")

        other = "tenant-b"
        crafted = [
            # tenant B's subject, the demo tenant's envelope, and the other way round
            (subjects.KNOWLEDGE_SEARCH.subject(tenant=other), own),
            (subjects.KNOWLEDGE_SEARCH.subject(tenant=demo.DEMO_TENANT), own.model_copy(
                update={"tenant_id": other})),
        ]  # fmt: skip
        for subject, request in crafted:
            reply = await bus.nc.request(subject, request.to_bytes(), timeout=10)
            result = KnowledgeSearchResult.model_validate_json(reply.data)
            assert result.hits == [] and result.error, subject
        # tenant B asking properly gets none of the demo tenant's knowledge
        theirs = SearchKnowledge(tenant_id=other, correlation_id="x", query=question)
        assert (await bus.request(theirs, KnowledgeSearchResult, timeout=10)).hits == []
    finally:
        await bus.close()
