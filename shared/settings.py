"""Settings every service shares, from the environment via pydantic-settings.

Each service subclasses :class:`ServiceSettings` and builds it with :func:`load_settings`
at startup, never at import time. Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.clock import Clock, LiveClock, ScaledClock
from shared.messages import TradingMode

__all__ = ["ServiceSettings", "SettingsError", "load_settings"]

S = TypeVar("S", bound="ServiceSettings")


class SettingsError(ValueError):
    """The environment does not describe a valid configuration; the message lists why."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    service_name: str = Field(default="service", min_length=1)
    trading_mode: TradingMode = TradingMode.PAPER
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/trading")
    bus_prefix: str = Field(default="", description="Namespace for every Redis key of the bus.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    clock_speed: float = Field(
        default=1.0, gt=0, le=10_000, description="Rehearsals only: run time this much faster."
    )
    clock_origin: datetime | None = Field(
        default=None, description="With CLOCK_SPEED: the UTC moment the scaled clock starts from."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("postgresql"):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _clock(self) -> ServiceSettings:
        if self.clock_speed != 1.0:
            if self.trading_mode is TradingMode.LIVE:
                raise ValueError("CLOCK_SPEED must be 1 in LIVE: real orders run on real time")
            if self.clock_origin is None or self.clock_origin.tzinfo is None:
                raise ValueError(
                    "CLOCK_SPEED needs CLOCK_ORIGIN, a UTC time such as 2026-01-01T00:00:00Z"
                )
        return self

    def clock(self) -> Clock:
        """The live clock, or the scaled one a rehearsal asked for."""
        if self.clock_speed == 1.0 or self.clock_origin is None:
            return LiveClock()
        return ScaledClock(self.clock_origin, self.clock_speed)

    def secrets(self) -> list[SecretStr]:
        """Every secret value of these settings, for log redaction."""
        return [value for value in self.__dict__.values() if isinstance(value, SecretStr)]


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build ``cls`` from the environment (and ``overrides``); errors name every bad variable."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            name = ".".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
