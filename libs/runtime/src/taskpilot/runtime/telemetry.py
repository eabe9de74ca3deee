"""OpenTelemetry traces across HTTP and NATS hops, and structured JSON logs.

The W3C ``traceparent`` is injected into NATS headers on publish and extracted on consume, so
one inbound WhatsApp message is one trace through every service.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from taskpilot.tenancy.context import current_tenant

correlation_id: ContextVar[str | None] = ContextVar("taskpilot_correlation", default=None)

_provider: TracerProvider | None = None


def setup_tracing(
    service: str, otlp_endpoint: str | None = None, processor: SpanProcessor | None = None
) -> TracerProvider:
    """Install one tracer provider per process (the dev runner hosts six services in one)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service}))
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
    if processor is not None:
        _provider.add_span_processor(processor)
    return _provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(f"taskpilot.{name}")


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    inject(headers)
    return headers


def context_from_headers(headers: Mapping[str, str] | None) -> Context:
    return extract(dict(headers or {}))


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "tenant_id": current_tenant(),
            "correlation_id": correlation_id.get(),
            "trace_id": current_trace_id(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


def setup_logging(level: str = "INFO", as_json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("faststream", "uvicorn.access", "httpx", "nats"):
        logging.getLogger(noisy).setLevel("WARNING")
