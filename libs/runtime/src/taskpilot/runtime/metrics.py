"""Prometheus metrics shared by every service. Labels stay low-cardinality: no lead ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BUS_PUBLISHED = Counter("taskpilot_bus_published_total", "Messages published", ["stream"])
CONSUMED = Counter(
    "taskpilot_consumer_messages_total",
    "Messages handled by consumers, by outcome (ack, retry, dead_letter)",
    ["consumer", "outcome"],
)
REDELIVERED = Counter(
    "taskpilot_consumer_redeliveries_total", "Deliveries after the first", ["consumer"]
)
HANDLE_SECONDS = Histogram(
    "taskpilot_consumer_handle_seconds",
    "Time spent in a handler",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEAD_LETTERS = Counter("taskpilot_dead_letters_total", "Dead letters written", ["origin", "reason"])
CONSUMER_BUFFERED = Gauge(
    "taskpilot_consumer_buffered",
    "Deliveries fetched ahead and waiting for a worker (the consumer's lookahead in use)",
    ["consumer"],
)
CONSUMER_WAIT_SECONDS = Histogram(
    "taskpilot_consumer_wait_seconds",
    "Time a delivery waited in the process's fair queue before a worker took it",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "taskpilot_consumer_lag",
    "Messages of the durable consumer not yet acknowledged: waiting for delivery plus delivered "
    "and unacknowledged (num_pending + num_ack_pending of its JetStream consumer info, refreshed "
    "every few seconds by each process pulling it)",
    ["consumer"],
)
