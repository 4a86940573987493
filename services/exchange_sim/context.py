"""What exchange-sim's routes share: the venue, the clock and the edge's rules."""

from __future__ import annotations

from dataclasses import dataclass

from services.exchange_sim.auth import JwtVerifier
from services.exchange_sim.faults import FaultPlan
from services.exchange_sim.limits import WindowLimiter
from services.exchange_sim.venue import Venue
from shared.clock import Clock

__all__ = ["SimContext"]


@dataclass
class SimContext:
    """What the routes share: the venue and the edge's rules."""

    venue: Venue
    clock: Clock
    faults: FaultPlan
    verifier: JwtVerifier
    public_limit: WindowLimiter
    private_limit: WindowLimiter
