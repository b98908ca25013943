"""The Redis transport the portal's Celery uses: kombu's, with one repair so a worker outlives its broker.

When Redis goes away, Celery's consumer collects the dead connection, which detaches kombu's transport
from it (`transport.client = None`). A worker that holds tasks (acks_late, a busy pool) then still
talks through channels of that transport: closing the connection puts the unacknowledged tasks back,
and a task that finishes is acknowledged. Both build a new Redis client from `transport.client` and
fail with `AttributeError: 'NoneType' object has no attribute 'hostname'` (kombu 5.7, celery 5.7,
redis-py 8), which Celery does not count as a connection error: "Unrecoverable error", and the worker
process exits. Here that case is the connection error it really is, so Celery logs it and reconnects.
Nothing is lost: Redis hands an unacknowledged task to a worker again after the visibility timeout
(the tasks are idempotent), and the outbox sweep re-queues every unsent mail.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed after it was lost")
        # kombu's stubs (from celery-types) leave this private method out.
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the Channel above (Celery setting `broker_transport`)."""

    Channel = Channel
