"""The weekly marketing plan written by a model: the tools job gathers the week's facts and asks
the inference service (built by its composition root, on the same NATS and PostgreSQL) over
request-reply; inference asks its premium model on the OpenAI-compatible stand-in. When the
models fail the job still finishes, with the template's draft labelled as such."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from taskpilot.contracts.tools import JobCompleted, JobProgressed
from taskpilot.inference.adapters.spend import KvSpendLedger
from taskpilot.inference.app import create
from taskpilot.inference.settings import InferenceSettings
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets
from taskpilot.tools.jobs import STEPS
from taskpilot.tools.plan import TEMPLATE
from tests.integration.inference.conftest import models_config
from tests.integration.inference.standin import OpenAIStandIn, running, status, text
from tests.integration.tools.conftest import Collected
from tests.integration.tools.test_jobs import publish_week, this_week

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLAN = "Last week 2 leads wrote to you and 1 asked for a person. This week: add an FAQ."
SPEND_BUCKET = f"spend_{uuid.uuid4().hex[:8]}"
WEEK_FACTS = re.compile(r'<<data-(\w+) kind="week_facts">>\n(.*?)\n<<end-data-\1>>', re.S)


@pytest.fixture(scope="module")
def standin_server() -> Iterator[OpenAIStandIn]:
    with running(OpenAIStandIn()) as standin:
        yield standin


@pytest.fixture(scope="module")
async def inference(
    tools_nats: NatsServer, tools_database: str, standin_server: OpenAIStandIn
) -> AsyncIterator[ServiceApp]:
    """Inference answering rpc.inference.*.write_plan next to the session's tools service."""
    settings = InferenceSettings(
        nats_url=tools_nats.url,
        database_url=tools_database,
        secret_keys=DEV_SECRET_KEYS,
        log_json=False,
        models=models_config(standin_server, num_retries=0, timeout_s=2.0),
        cache_bucket=f"cache_{uuid.uuid4().hex[:8]}",
        spend_bucket=SPEND_BUCKET,
    )
    app = await create(settings)
    assert app.bus is not None
    await app.bus.start()
    yield app
    await app.bus.close()
    for hook in app.on_stop:
        await hook()


@pytest.fixture
async def known_tenant(tools_database: str, tenant: str) -> str:
    """The tenant in the directory inference reads its profile from."""
    pool = await open_pool(tools_database, max_size=1)
    directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
    await directory.ensure_schema()
    secrets = TenantSecrets(
        app_secret=SecretStr("a"), access_token=SecretStr("b"), verify_token=SecretStr("c")
    )
    profile = BusinessProfile(name="Salón Aurora", languages=["es", "en"])
    await directory.upsert(Tenant(id=tenant, name="Aurora", profile=profile, secrets=secrets))
    await pool.close()
    return tenant


@pytest.fixture
def standin(standin_server: OpenAIStandIn, inference: ServiceApp) -> Iterator[OpenAIStandIn]:
    standin_server.reset()
    yield standin_server
    standin_server.reset()


async def run_plan(api: httpx.AsyncClient, tenant: str, collected: Collected) -> JobCompleted:
    response = await api.post(
        f"/v1/tenants/{tenant}/jobs",
        json={"kind": "weekly_marketing_plan", "week_start": this_week()},
    )
    assert response.status_code == 202, response.text
    [completed] = await collected.wait_for(JobCompleted, timeout=60)
    return completed


async def test_the_premium_model_writes_the_plan_from_the_weeks_facts(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    known_tenant: str,
    standin: OpenAIStandIn,
    inference: ServiceApp,
) -> None:
    standin.queue("premium", text(PLAN, prompt_tokens=900, completion_tokens=200))
    await publish_week(bus, known_tenant)

    completed = await run_plan(api, known_tenant, collected)

    result = completed.result
    assert result is not None and completed.error is None
    assert (result["written_by"], result["model_generated"], result["plan"]) == (
        "openai/premium",
        True,
        PLAN,
    )
    model = result["model"]
    assert (model["tier"], model["prompt_tokens"], model["completion_tokens"]) == ("L3", 900, 200)
    assert model["cost_usd"] == pytest.approx(900 * 3e-6 + 200 * 1.5e-5)
    assert result["facts"]["distinct_leads"] == 2 and "template_reason" not in result
    assert [p.step for p in collected.of(JobProgressed)] == list(STEPS)
    assert STEPS[-1] == "write_plan"

    [asked] = standin.calls_to("premium")
    system, data = (m["content"] for m in asked["messages"])
    [(_nonce, week)] = WEEK_FACTS.findall(data)
    assert '"messages_from_leads": 2' in week and '"asked for a human": 1' in week
    assert "asked for a human" not in system, "the facts are data, not instructions"
    assert inference.bus is not None
    ledger = await KvSpendLedger.open(inference.bus.js, SPEND_BUCKET)
    month = completed.occurred_at.strftime("%Y-%m")
    assert (await ledger.spent(known_tenant, month)).tokens == 1100


async def test_when_every_model_errors_the_template_writes_it_and_says_so(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    known_tenant: str,
    standin: OpenAIStandIn,
) -> None:
    standin.defaults.update(premium=status(500), cheap=status(500))
    await publish_week(bus, known_tenant)

    completed = await run_plan(api, known_tenant, collected)

    result = completed.result
    assert result is not None and completed.error is None
    assert (result["written_by"], result["model_generated"]) == (TEMPLATE, False)
    assert "no model answered" in result["template_reason"] and "model" not in result
    assert result["plan"].startswith("2 messages from 2 leads;")
    assert standin.calls_to("premium"), "the model was asked first"
    assert [p.step for p in collected.of(JobProgressed)] == list(STEPS)
