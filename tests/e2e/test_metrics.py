"""After one lead message through the system, every service's /metrics shows it."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskpilot.cli import demo
from taskpilot.ingest.meta import signed, text_webhook
from taskpilot.runtime.testing import eventually
from tests.e2e.conftest import SERVICES, System

pytestmark = pytest.mark.asyncio(loop_scope="session")

Samples = Counter[tuple[str, tuple[tuple[str, str], ...]]]


async def scrape(client: httpx.AsyncClient, base_url: str) -> Samples:
    text = (await client.get(f"{base_url}/metrics")).text
    samples: Samples = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (n, have), value in samples.items()
        if n == name and all(dict(have).get(k) == v for k, v in labels.items())
    )


def consumed(samples: Samples, consumer_prefix: str, outcome: str = "ack") -> float:
    return sum(
        value
        for (n, have), value in samples.items()
        if n == "taskpilot_consumer_messages_total"
        and dict(have).get("consumer", "").startswith(consumer_prefix)
        and dict(have).get("outcome") == outcome
    )


async def test_one_message_moves_the_counters_of_every_hop(system: System) -> None:
    lead = "4916" + str(uuid.uuid4().int)[:8]
    async with httpx.AsyncClient(timeout=10) as client:
        before = {n: await scrape(client, system.url(n)) for n in SERVICES}
        body, headers = signed(
            text_webhook(demo.DEMO_NUMBER, lead, "Do you accept card payments?"),
            demo.DEMO_APP_SECRET,
        )
        await client.post(
            f"{system.url('ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}",
            content=body,
            headers=headers,
        )

        async def sent() -> bool:
            r = await client.get(f"{system.url('sandbox')}/_sandbox/messages", params={"to": lead})
            return bool(r.json())

        await eventually(sent, timeout=30, what="reply sent")

        async def after_all() -> dict[str, Samples] | None:
            now = {n: await scrape(client, system.url(n)) for n in SERVICES}

            def moved(service: str, consumer: str) -> bool:
                return consumed(now[service], consumer) > consumed(before[service], consumer)

            # Every hop counts after its own work (an ack is counted after the handler, the
            # send after Meta's answer): wait until each has, then check the exact figures.
            sends = "taskpilot_ingest_sends_total"
            done = (
                moved("conversation", "conversation-sent")
                and moved("ingest", "ingest-sender")
                and moved("conversation", "conversation-inbound")
                and moved("inference", "inference-generate")
                and total(now["ingest"], sends, outcome="sent")
                > total(before["ingest"], sends, outcome="sent")
            )
            return now if done else None

        after = await eventually(after_all, timeout=20, what="counters settled")
        inference_text = (await client.get(f"{system.url('inference')}/metrics")).text

    def delta(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    assert (
        delta("ingest", "taskpilot_ingest_updates_total", kind="message", outcome="published") == 1
    )
    assert delta("ingest", "taskpilot_ingest_sends_total", outcome="sent") == 1
    assert (
        consumed(after["ingest"], "ingest-sender") - consumed(before["ingest"], "ingest-sender")
        == 1
    )
    assert (
        consumed(after["conversation"], "conversation-inbound")
        - consumed(before["conversation"], "conversation-inbound")
    ) == 1
    assert delta("conversation", "taskpilot_relay_messages_total") >= 5
    assert delta("inference", "taskpilot_inference_replies_total", tier="L1", source="faq") == 1
    assert (
        consumed(after["inference"], "inference-generate")
        - consumed(before["inference"], "inference-generate")
        == 1
    )
    assert delta("analytics", "taskpilot_consumer_messages_total") >= 3
    # the webhook was answered 200 once, and timed
    assert delta("ingest", "taskpilot_ingest_webhook_ack_seconds_count", outcome="accepted") == 1
    # every pulling process reports its consumers' lag (num_pending + num_ack_pending)
    for service, consumer in (
        ("ingest", "ingest-sender"),
        ("conversation", "conversation-inbound-p0"),
        ("inference", "inference-generate"),
        ("tools", "tools-jobs"),
        ("analytics", "analytics-projector"),
    ):
        lags = [k for k in after[service] if k[0] == "taskpilot_consumer_lag"]
        assert ("consumer", consumer) in {label for _, labels in lags for label in labels}
    # declared, though this run (no model configured) spent no tokens
    assert "# TYPE taskpilot_inference_tokens_total counter" in inference_text
    # bounded label cardinality: no lead id appears in any label of any service
    for samples in after.values():
        assert not any(lead in str(labels) for _, labels in samples)
