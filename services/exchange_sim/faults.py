"""Faults exchange-sim can inject, changed at run time through ``PUT /sim/faults``.

Tests use them to prove the client survives what Coinbase does on a bad day: slow
answers, 429 storms, 5xx, a create-order that never answers (after or before the order
was taken), dropped WebSocket messages (sequence gaps) and dropped connections.
"""

from __future__ import annotations

import random
from typing import Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["INJECTED", "CreateOrderFault", "FaultPlan", "Faults"]

INJECTED = Counter(
    "sim_faults_injected_total",
    "Faults exchange-sim injected: throttle (429), error (503), each create-order fault, "
    "ws_drop (a lost WebSocket message).",
    ["fault"],
)

CreateOrderFault = Literal[
    "timeout_after_accept",  # the order is placed; the answer never comes in time
    "timeout_before_accept",  # nothing is placed; the answer never comes in time
    "error_after_accept",  # the order is placed; the answer is a 500
    "error_before_accept",  # nothing is placed; the answer is a 503
]


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0, ge=0, le=60_000, description="Added to every answer.")
    error_rate: float = Field(default=0, ge=0, le=1, description="Share of requests given 503.")
    throttle_rate: float = Field(
        default=0, ge=0, le=1, description="Share of requests given 429, a rate-limit storm."
    )
    create_order: list[CreateOrderFault] = Field(
        default_factory=list, description="Faults for the next create-order calls, in order."
    )
    hang_s: float = Field(default=30, ge=0, le=600, description="How long a timeout hangs.")
    duplicate_client_order_id: Literal["return_existing", "reject"] = Field(
        default="return_existing",
        description="A repeated client_order_id: the existing order, or a rejection with "
        "DUPLICATE_CLIENT_ORDER_ID (Coinbase has answered both ways).",
    )
    ws_drop_rate: float = Field(default=0, ge=0, le=1, description="Share of WS messages lost.")
    ws_drop_next: int = Field(default=0, ge=0, description="Lose the next N level2 messages.")


class FaultPlan:
    """The current faults and the seeded dice that apply them."""

    def __init__(self, faults: Faults | None = None, seed: int = 0) -> None:
        self.faults = faults or Faults()
        self._rng = random.Random(seed)

    def replace(self, faults: Faults) -> None:
        self.faults = faults

    def fail_request(self) -> bool:
        return _counted("error", self._dice(self.faults.error_rate))

    def throttle_request(self) -> bool:
        return _counted("throttle", self._dice(self.faults.throttle_rate))

    def next_create_order_fault(self) -> CreateOrderFault | None:
        queue = self.faults.create_order
        if not queue:
            return None
        fault = queue.pop(0)
        INJECTED.labels(fault).inc()
        return fault

    def drop_ws_message(self, channel: str) -> bool:
        if channel == "l2_data" and self.faults.ws_drop_next > 0:
            self.faults.ws_drop_next -= 1
            return _counted("ws_drop", True)
        return _counted("ws_drop", self._dice(self.faults.ws_drop_rate))

    def _dice(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate


def _counted(fault: str, injected: bool) -> bool:
    if injected:
        INJECTED.labels(fault).inc()
    return injected
