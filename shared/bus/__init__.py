"""Redis Streams bus: a publisher and a consumer-group worker with exactly-once effects."""

from shared.bus.commit import Delivery
from shared.bus.consumer import ConsumerSettings, Handler, StreamConsumer
from shared.bus.keys import BusKeys
from shared.bus.publisher import ENVELOPE_FIELD, Publisher
from shared.bus.redis import create_redis

__all__ = [
    "ENVELOPE_FIELD",
    "BusKeys",
    "ConsumerSettings",
    "Delivery",
    "Handler",
    "Publisher",
    "StreamConsumer",
    "create_redis",
]
