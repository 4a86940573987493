"""Redis key names used by the bus, all under one optional prefix.

The prefix namespaces a whole deployment (``paper:``, ``test-1a2b:``) on a shared Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BusKeys", "text"]


@dataclass(frozen=True)
class BusKeys:
    prefix: str = ""

    def stream(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def dead_letter(self, name: str) -> str:
        return f"{self.prefix}dlq.{name}"

    def handled(self, name: str, group: str, message_id: str) -> str:
        """Marker that ``group`` has handled envelope ``message_id`` from stream ``name``."""
        return f"{self.prefix}bus:handled:{name}:{group}:{message_id}"

    def errors(self, name: str, group: str) -> str:
        """Hash of entry id -> last handler error, kept until the entry is acked."""
        return f"{self.prefix}bus:errors:{name}:{group}"


def text(value: bytes | str | int) -> str:
    """A Redis reply field as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
