"""Outgoing webhooks' fan-out reads each tenant's subscriptions from a cache: one query per
tenant and TTL instead of one per event, the API's PUT and DELETE apply at once, another
replica's changes within the TTL. Hand-written fakes, a fixed clock, no database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from taskpilot.contracts import Message
from taskpilot.contracts.tools import DeliverWebhook, PaymentReceived
from taskpilot.tools.configuration import ToolsConfiguration, WebhookEndpointIn
from taskpilot.tools.repository import WebhookEndpoint
from taskpilot.tools.webhooks import OutgoingWebhooks, SubscriptionCache

TTL = 5.0


@dataclass
class FakeRepository:
    """The endpoints table, shared by every replica."""

    rows: dict[str, dict[str, WebhookEndpoint]] = field(default_factory=dict)
    loads: int = 0
    gate: asyncio.Event | None = None
    """When set, a load reads the rows, then waits for the gate before answering."""
    reading: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoints(self, tenant_id: str) -> list[WebhookEndpoint]:
        self.loads += 1
        found = list(self.rows.get(tenant_id, {}).values())
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        return found

    async def save_endpoint(
        self, tenant_id: str, endpoint_id: str, url: str, event_types: list[str], secret: str
    ) -> None:
        endpoint = WebhookEndpoint(endpoint_id, url, sorted(event_types), secret)
        self.rows.setdefault(tenant_id, {})[endpoint_id] = endpoint

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        return self.rows.get(tenant_id, {}).pop(endpoint_id, None) is not None


@dataclass
class FakeBus:
    published: list[Message] = field(default_factory=list)

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        self.published.append(message)
        return True


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    webhooks: OutgoingWebhooks
    configuration: ToolsConfiguration
    bus: FakeBus

    def deliveries(self) -> list[str]:
        return [m.endpoint_id for m in self.bus.published if isinstance(m, DeliverWebhook)]


def replica(repo: FakeRepository, clock: Clock) -> Replica:
    bus = FakeBus()
    cache = SubscriptionCache(repo.endpoints, TTL, clock)
    webhooks = OutgoingWebhooks(repo, bus, None, None, cache)  # type: ignore[arg-type]
    return Replica(webhooks, ToolsConfiguration(repo, cache), bus)  # type: ignore[arg-type]


def paid(n: int, tenant_id: str = "acme") -> PaymentReceived:
    return PaymentReceived(
        tenant_id=tenant_id,
        correlation_id=f"evt_{n}",
        provider_event_id=f"evt_{n}",
        checkout_session_id=f"cs_{n}",
    )


def crm(*event_types: str) -> WebhookEndpointIn:
    return WebhookEndpointIn(
        url="https://crm.example.com/hook",  # type: ignore[arg-type]
        event_types=list(event_types),
        secret="s" * 16,
    )


async def test_a_tenant_without_endpoints_costs_one_query_per_ttl_not_one_per_event() -> None:
    repo, clock = FakeRepository(), Clock()
    one = replica(repo, clock)

    for n in range(50):
        await one.webhooks.fan_out(paid(n))
    clock.now += TTL
    await one.webhooks.fan_out(paid(50))

    assert (repo.loads, one.deliveries()) == (2, [])


async def test_put_and_delete_through_the_api_apply_to_the_next_event() -> None:
    repo, clock = FakeRepository(), Clock()
    one = replica(repo, clock)
    await one.webhooks.fan_out(paid(1))  # caches "no endpoints"

    await one.configuration.save_endpoint("acme", "crm", crm("PaymentReceived"))
    await one.webhooks.fan_out(paid(2))
    await one.configuration.save_endpoint("acme", "crm", crm("SlotBooked"))
    await one.webhooks.fan_out(paid(3))
    await one.configuration.save_endpoint("acme", "crm", crm("*"))
    await one.webhooks.fan_out(paid(4))
    await one.configuration.delete_endpoint("acme", "crm")
    await one.webhooks.fan_out(paid(5))

    assert [m.event["checkout_session_id"] for m in one.bus.published] == ["cs_2", "cs_4"]


async def test_another_replicas_change_applies_within_the_ttl() -> None:
    repo, clock = FakeRepository(), Clock()
    one, other = replica(repo, clock), replica(repo, clock)
    await other.webhooks.fan_out(paid(1))

    await one.configuration.save_endpoint("acme", "crm", crm("PaymentReceived"))
    clock.now += TTL - 0.1
    await other.webhooks.fan_out(paid(2))
    clock.now += 0.1
    await other.webhooks.fan_out(paid(3))

    assert [m.event["checkout_session_id"] for m in other.bus.published] == ["cs_3"]


async def test_tenants_are_cached_apart() -> None:
    repo, clock = FakeRepository(), Clock()
    one = replica(repo, clock)
    await one.configuration.save_endpoint("acme", "crm", crm("*"))

    await one.webhooks.fan_out(paid(1, "acme"))
    await one.webhooks.fan_out(paid(2, "globex"))

    assert [m.tenant_id for m in one.bus.published] == ["acme"]


async def test_a_load_overtaken_by_a_change_is_not_kept() -> None:
    gate = asyncio.Event()
    repo, clock = FakeRepository(gate=gate), Clock()
    one = replica(repo, clock)
    slow = asyncio.create_task(one.webhooks.fan_out(paid(1)))
    await repo.reading.wait()  # it has read "no endpoints" and not answered yet

    await one.configuration.save_endpoint("acme", "crm", crm("*"))
    gate.set()
    await slow
    await one.webhooks.fan_out(paid(2))

    assert one.deliveries() == ["crm"]
