"""Spans are built only when something exports them; trace ids flow either way."""

from __future__ import annotations

import textwrap

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, TraceIdRatioBased

from taskpilot.runtime.telemetry import ExportGate
from taskpilot.runtime.testing import python


def provider() -> tuple[TracerProvider, ExportGate, InMemorySpanExporter]:
    gate = ExportGate(DEFAULT_ON)
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=gate)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, gate, exporter


def hop(tp: TracerProvider, headers: dict[str, str]) -> tuple[trace.Span, bool, dict[str, str]]:
    """One consume hop: continue the caller's trace, pass it on."""
    onward: dict[str, str] = {}
    with tp.get_tracer("t").start_as_current_span("consume", context=extract(headers)) as span:
        recording = span.is_recording()
        inject(onward)
    return span, recording, onward


def sampled(traceparent: str) -> bool:
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 1)


def test_without_an_exporter_no_span_is_recorded_but_the_trace_id_travels() -> None:
    tp, _, exporter = provider()
    first, first_recorded, headers = hop(tp, {})
    second, second_recorded, _ = hop(tp, headers)

    assert not first_recorded and not second_recorded
    assert first.get_span_context().is_valid
    assert second.get_span_context().trace_id == first.get_span_context().trace_id
    assert not sampled(headers["traceparent"])  # nothing upstream recorded
    assert exporter.get_finished_spans() == ()


def test_once_exporting_every_hop_is_recorded_in_one_trace() -> None:
    tp, gate, exporter = provider()
    gate.exporting = True
    first, first_recorded, headers = hop(tp, {})
    _, second_recorded, _ = hop(tp, headers)

    assert first_recorded and second_recorded and sampled(headers["traceparent"])
    spans = exporter.get_finished_spans()
    assert [s.context.trace_id for s in spans] == [first.get_span_context().trace_id] * 2
    assert spans[1].parent is not None and spans[1].parent.span_id == spans[0].context.span_id


def test_the_configured_sampler_decides_once_exporting() -> None:
    gate = ExportGate(TraceIdRatioBased(0.0))
    tp = TracerProvider(sampler=gate)
    gate.exporting = True
    _, recorded, _ = hop(tp, {})

    assert not recorded
    assert "TraceIdRatioBased" in gate.get_description()


def test_setup_tracing_records_once_a_processor_arrives_after_the_services() -> None:
    """The process-wide wiring (in its own interpreter: the provider is global): services set
    tracing up without an exporter and take their tracers; a processor added later (the
    tracing test's in-memory exporter) turns recording on for those same tracers."""
    script = textwrap.dedent(
        """
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from taskpilot.runtime.telemetry import current_trace_id, setup_tracing, tracer

        setup_tracing("ingest")
        service = tracer("ingest")
        with service.start_as_current_span("before") as span:
            assert not span.is_recording() and current_trace_id()
        exporter = InMemorySpanExporter()
        setup_tracing("test", processor=SimpleSpanProcessor(exporter))
        with service.start_as_current_span("after") as span:
            assert span.is_recording()
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    run = python("-c", script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['after']"
