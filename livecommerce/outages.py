"""Whether an exception says that a part the answer needs did not answer — PostgreSQL or Redis away,
restarting or refusing connections, a pool that timed out — rather than a mistake in the request or in the
code. The edges answer such a failure "try again" (`503` with `Retry-After` over HTTP, `unavailable` on the
socket), never as a fault of the server's own."""

from __future__ import annotations

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from . import hot

# What asyncpg raises itself (its own pool, or a connection SQLAlchemy opens): the connection refused,
# lost or closed, and PostgreSQL shutting down or still starting (SQLSTATE class 57P: "the database system
# is starting up", "terminating connection due to administrator command").
_ASYNCPG = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.exceptions.OperatorInterventionError)
_DIRECT = (SATimeoutError, ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError, hot.Unavailable,
           *_ASYNCPG)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says a part the answer needs did not answer."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, DBAPIError) and (current.connection_invalidated
                                                or isinstance(current, OperationalError | InterfaceError)):
            return True
        if isinstance(current, _DIRECT):
            return True
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__
        seen += 1
    return False
