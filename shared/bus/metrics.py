"""Prometheus metrics of the bus, labelled by stream and consumer group."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CONSUMER_LAG",
    "CONSUMER_PENDING",
    "DEAD_LETTERED",
    "DUPLICATES",
    "FAILED",
    "HANDLED",
    "HANDLE_SECONDS",
    "PUBLISHED",
    "REDIS_ERRORS",
]

PUBLISHED = Counter("bus_published_total", "Envelopes published.", ["stream"])
HANDLED = Counter("bus_handled_total", "Entries handled and acked.", ["stream", "group"])
FAILED = Counter("bus_failed_total", "Handler failures (entry left pending).", ["stream", "group"])
DUPLICATES = Counter(
    "bus_duplicates_total", "Redelivered entries skipped as already handled.", ["stream", "group"]
)
DEAD_LETTERED = Counter(
    "bus_dead_lettered_total",
    "Entries moved to the dead-letter stream.",
    ["stream", "group", "reason"],
)
REDIS_ERRORS = Counter(
    "bus_redis_errors_total", "Redis connection errors seen by consumers.", ["stream", "group"]
)
CONSUMER_LAG = Gauge(
    "bus_consumer_lag", "Entries in the stream not yet delivered to the group.", ["stream", "group"]
)
CONSUMER_PENDING = Gauge(
    "bus_consumer_pending", "Entries delivered to the group but not acked.", ["stream", "group"]
)
HANDLE_SECONDS = Histogram(
    "bus_handle_seconds",
    "Time from read to ack of one entry.",
    ["stream", "group"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
)
