"""OpenTelemetry traces across HTTP and NATS hops, and structured JSON logs.

The W3C ``traceparent`` is injected into NATS headers on publish and extracted on consume, so
one inbound WhatsApp message is one trace through every service.

Spans are recorded only once something exports them (:class:`ExportGate`): a service without
``OTEL_EXPORTER_OTLP_ENDPOINT`` still gives every message a trace id (logs, dead letters and
the headers carry it) but builds no span objects nobody reads (~35 µs each, a few dozen per
lead message).
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
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, SamplingResult

from taskpilot.tenancy.context import current_tenant

correlation_id: ContextVar[str | None] = ContextVar("taskpilot_correlation", default=None)

_provider: TracerProvider | None = None


class ExportGate(Sampler):
    """The configured sampler once spans are exported; until then none is recorded.

    A dropped span is a ``NonRecordingSpan`` with a real trace and span id, so trace ids in
    logs and dead letters and the propagated ``traceparent`` stay as they were; it is marked
    not sampled, which a downstream service that exports (and samples by its parent, the
    default) follows: give every service the same endpoint (the chart and compose do)."""

    def __init__(self, when_exported: Sampler):
        self._sampler = when_exported
        self.exporting = False

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        sampler = self._sampler if self.exporting else ALWAYS_OFF
        return sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        state = "exporting" if self.exporting else "not exporting"
        return f"ExportGate({self._sampler.get_description()}, {state})"


def setup_tracing(
    service: str, otlp_endpoint: str | None = None, processor: SpanProcessor | None = None
) -> TracerProvider:
    """Install one tracer provider per process (the dev runner hosts six services in one)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service}))
        # Before any tracer exists: tracers keep the provider's sampler (OTEL_TRACES_SAMPLER).
        _provider.sampler = ExportGate(_provider.sampler)
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
            _gate(_provider).exporting = True
    if processor is not None:
        _provider.add_span_processor(processor)
        _gate(_provider).exporting = True
    return _provider


def _gate(provider: TracerProvider) -> ExportGate:
    gate = provider.sampler
    assert isinstance(gate, ExportGate)
    return gate


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
