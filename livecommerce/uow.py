"""One unit of work, typed: what a transaction's statements run on. Three things are one: an ORM
session (`AsyncSession`), a plain SQLAlchemy connection in a transaction (`AsyncConnection`), and
asyncpg's own connection on PostgreSQL (`hot.NativeConnection`, which runs the same Core statements
for about a third of the CPU). A rule written against `UnitOfWork` — taking stock, redeeming a
coupon — runs unchanged on each, so the flash sale's fast path and the ordinary path share it.

Only Core statements (`select`, `insert`, `update`, `delete` on tables or mapped classes) and what
their results answer below belong here: the ORM's identity map is not there on the fast path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable

from .hot import NativeConnection

__all__ = ["Rows", "UnitOfWork", "dialect_name"]

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class Rows(Protocol):
    """What a statement's result answers, on every kind of unit of work. (A DML statement's `rowcount`
    is there at run time too, but SQLAlchemy types it on its cursor results only.)"""

    def first(self) -> Any: ...

    def one(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...

    def scalars(self) -> Any: ...


class UnitOfWork(Protocol):
    """A transaction's statements: `execute(statement, params)`, with a list of parameter sets running
    the statement once for each (an INSERT … RETURNING gives its rows in the same order)."""

    async def execute(self, statement: Executable, params: Params | None = None, /) -> Rows: ...


def dialect_name(uow: UnitOfWork) -> str:
    """"postgresql" or "sqlite": for the few statements written per dialect (an INSERT … ON CONFLICT)."""
    if isinstance(uow, AsyncSession):  # a session knows its engine, not a dialect of its own
        return uow.get_bind().dialect.name
    if isinstance(uow, AsyncConnection | NativeConnection):  # connections: SQLAlchemy's and asyncpg's own
        return uow.dialect.name
    raise TypeError(f"not a unit of work: {uow!r}")
