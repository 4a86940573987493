"""Prometheus metrics of market-data."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BOOK_REBUILDS",
    "CANDLES",
    "CANDLES_REJECTED",
    "DATA_AGE",
    "GAPS",
    "LATE_TRADES",
    "MESSAGES",
    "PRODUCT_ENTRIES_ALLOWED",
    "PUBLISH_ERRORS",
    "PUBLISH_SECONDS",
    "RECONNECTS",
    "REST_ERRORS",
]

MESSAGES = Counter("md_ws_messages_total", "WebSocket messages received.", ["channel"])
GAPS = Counter("md_sequence_gaps_total", "Sequence gaps detected on the WebSocket feed.")
RECONNECTS = Counter("md_reconnects_total", "WebSocket reconnections.")
BOOK_REBUILDS = Counter("md_book_rebuilds_total", "Books rebuilt from a snapshot after a gap.")
LATE_TRADES = Counter("md_late_trades_total", "Trades that arrived after their candle closed.")
CANDLES = Counter(
    "md_candles_published_total",
    "Closed candles published, by how they were made (trades, or rest after a feed break).",
    ["granularity_s", "source"],
)
CANDLES_REJECTED = Counter(
    "md_candles_rejected_total",
    "Buckets not published: the venue's candle was inconsistent or never served.",
    ["product_id"],
)
PUBLISH_ERRORS = Counter(
    "md_publish_errors_total", "Ticks and books dropped on a Redis error.", ["stream"]
)
REST_ERRORS = Counter("md_rest_errors_total", "Failed REST calls to the venue.", ["call"])
PUBLISH_SECONDS = Histogram(
    "md_publish_latency_seconds",
    "From receiving a market-data event to its entry in Redis.",
    ["stream"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
DATA_AGE = Gauge(
    "md_data_age_seconds", "Seconds since the last message per product.", ["product_id"]
)
PRODUCT_ENTRIES_ALLOWED = Gauge(
    "md_product_entries_allowed", "1 when the venue accepts new orders on the product.",
    ["product_id"],
)  # fmt: skip
