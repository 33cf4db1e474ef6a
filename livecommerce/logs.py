"""Structured logs: one JSON object per line, so an operator can filter by request, user or broadcast.

The server writes a line per request, thousands a second under load, so the lines go to a buffered
stream: warnings and errors are flushed at once, the rest by `flush` (the app calls it a few times a
second, see `flush_periodically`) and when the process exits. The per-request line (`access`) is written
straight to that stream, in the same shape as every other line, without building a `LogRecord`.

What a line is about travels with the work: the socket event wrapper and the HTTP middlewares open a
`scope` naming the broadcast and the viewer (and the socket or the request), and every line written while it
is open carries those fields (`ContextFilter`), whichever module writes it. Work shared by many viewers (a
group of chat messages written together) runs `apart()` from the scope of the one who started it.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from .config import LoggingConfig

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    """What a line's caller added (`extra=`), beyond the record's own attributes."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _ts(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


_NOTHING: Mapping[str, Any] = MappingProxyType({})
_scope: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("livecommerce_log_scope",
                                                                           default=_NOTHING)


def scope_fields() -> Mapping[str, Any]:
    """The fields of the scope open here (`broadcast`, `viewer`, …)."""
    return _scope.get()


def enter(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Open a scope with `fields` (None values left out) over the one open here; `leave` closes it."""
    given = {k: v for k, v in fields.items() if v is not None}
    outer = _scope.get()
    return _scope.set({**outer, **given} if outer else given)


def leave(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _scope.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` to the scope open here (as learnt mid-way: the signed-in viewer of a request); they go
    when that scope is left."""
    given = {k: v for k, v in fields.items() if v is not None}
    if given:
        _scope.set({**_scope.get(), **given})


@contextmanager
def scope(**fields: Any) -> Iterator[None]:
    """`with scope(broadcast=…, viewer=…):` every line written inside carries these fields."""
    token = enter(**fields)
    try:
        yield
    finally:
        _scope.reset(token)


def apart() -> contextvars.Context:
    """A copy of the current context with no scope, for a task that works for many (`create_task(…,
    context=apart())`): its lines must not name the viewer who happened to start it."""
    ctx = contextvars.copy_context()
    ctx.run(_scope.set, _NOTHING)
    return ctx


class ContextFilter(logging.Filter):
    """Adds the open scope's fields to each record (a field the caller gave itself is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _scope.get()
        if fields:
            attrs = vars(record)
            for k, v in fields.items():
                attrs.setdefault(k, v)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _extra(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return self.line(record.name, record.levelname.lower(), record.getMessage(), fields, record.created)

    def line(self, logger: str, level: str, msg: str, fields: Mapping[str, Any], created: float) -> str:
        return json.dumps({"ts": _ts(created), "level": level, "logger": logger, "msg": msg, **fields},
                          ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _extra(record).items())
        return f"{base} {extra}" if extra else base

    def line(self, logger: str, level: str, msg: str, fields: Mapping[str, Any], created: float) -> str:
        record = logging.makeLogRecord({"name": logger, "levelname": level.upper(), "msg": msg, **fields})
        record.created, record.msecs = created, (created - int(created)) * 1000
        return self.format(record)


class LineHandler(logging.StreamHandler[TextIO]):
    """Writes each line to a buffered stream; flushes at once only from WARNING up."""

    def __init__(self, stream: TextIO, formatter: JsonFormatter | TextFormatter) -> None:
        super().__init__(stream)
        self.setFormatter(formatter)
        self.addFilter(ContextFilter())
        self.lines = formatter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            if record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def write_line(self, logger: str, level: str, msg: str, fields: Mapping[str, Any]) -> None:
        try:
            self.stream.write(self.lines.line(logger, level, msg, fields, time.time()) + "\n")
        except Exception:
            self.handleError(logging.LogRecord(logger, logging.INFO, "", 0, msg, None, None))


_installed: LineHandler | None = None


def setup_logging(cfg: LoggingConfig) -> None:
    global _installed
    formatter: JsonFormatter | TextFormatter = (
        JsonFormatter() if cfg.format == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler = LineHandler(_buffered_stderr(), formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
    _installed = handler
    # aiohttp's own access log would print a second, unstructured line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Nothing in a line needs the thread, the process or the caller's frame.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _buffered_stderr() -> TextIO:
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.stderr
    return open(os.dup(fd), "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace")


def access(logger: logging.Logger, msg: str, fields: Mapping[str, Any]) -> None:
    """An INFO line with `fields`, as `logger.info(msg, extra=fields)` would write it, for less."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _installed
    if handler is None or logger.handlers or not logger.propagate or logging.getLogger().handlers != [handler]:
        logger.info(msg, extra=dict(fields))
        return
    scoped = _scope.get()
    if scoped:  # as `ContextFilter` adds them: after the line's own fields, which win
        fields = {**fields, **{k: v for k, v in scoped.items() if k not in fields}}
    handler.write_line(logger.name, "info", msg, fields)


def flush() -> None:
    if _installed is not None:
        _installed.flush()


FLUSH_SECONDS = 0.25


async def flush_periodically(_app: object) -> AsyncIterator[None]:
    """For `app.cleanup_ctx`: flush the log lines every `FLUSH_SECONDS` while the app runs, and at the end."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            flush()

    task = asyncio.ensure_future(loop())
    try:
        yield
    finally:
        task.cancel()
        flush()
