"""Coinbase's candle granularities and their lengths."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Granularity"]

_SECONDS = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}


class Granularity(StrEnum):
    """Coinbase's candle granularities (the ``granularity`` query parameter)."""

    ONE_MINUTE = "ONE_MINUTE"
    FIVE_MINUTE = "FIVE_MINUTE"
    FIFTEEN_MINUTE = "FIFTEEN_MINUTE"
    THIRTY_MINUTE = "THIRTY_MINUTE"
    ONE_HOUR = "ONE_HOUR"
    TWO_HOUR = "TWO_HOUR"
    SIX_HOUR = "SIX_HOUR"
    ONE_DAY = "ONE_DAY"

    @property
    def seconds(self) -> int:
        """Length of one bucket in seconds."""
        return _SECONDS[self.value]

    @classmethod
    def from_seconds(cls, seconds: int) -> Granularity:
        """The granularity ``seconds`` long; ValueError when Coinbase has none."""
        for granularity in cls:
            if granularity.seconds == seconds:
                return granularity
        raise ValueError(f"Coinbase has no {seconds}s candles")
