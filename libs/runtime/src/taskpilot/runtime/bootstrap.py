"""What every composition root starts with: tracing, the bus, the database, the key ring."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts.subjects import ALL_STREAMS
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.dlq import RUNTIME_STREAMS, register_dead_letter_mover
from taskpilot.runtime.ops import ReadinessCheck
from taskpilot.runtime.settings import CommonSettings
from taskpilot.runtime.telemetry import setup_logging, setup_tracing
from taskpilot.tenancy import SecretBox, TenantDirectory


@dataclass
class Resources:
    bus: Bus
    pool: AsyncConnectionPool
    tenants: TenantDirectory

    def readiness(self) -> dict[str, ReadinessCheck]:
        async def postgres() -> bool:
            async with self.pool.connection() as conn:
                await conn.execute("SELECT 1")
            return True

        return {"nats": self.bus.is_connected, "postgres": postgres}

    async def close(self) -> None:
        await self.pool.close()


async def connect(settings: CommonSettings, name: str, *, pool_size: int = 10) -> Resources:
    setup_logging(settings.log_level, settings.log_json)
    setup_tracing(name, settings.otlp_endpoint)
    bus = Bus(
        settings.nats_url,
        name=name,
        publish_retry_s=settings.publish_retry_s,
        replicas=settings.stream_replicas,
        drain_timeout_s=settings.drain_timeout_s,
        fair=settings.fair_consumers,
        credentials=settings.nats_credentials(name),
    )
    await bus.connect()
    await ensure_streams(bus.js, ALL_STREAMS + RUNTIME_STREAMS, replicas=settings.stream_replicas)
    register_dead_letter_mover(bus)
    pool = await open_pool(settings.database_url, max_size=pool_size)
    tenants = TenantDirectory(pool, SecretBox.from_setting(settings.secret_keys))
    await tenants.ensure_schema()
    return Resources(bus, pool, tenants)
