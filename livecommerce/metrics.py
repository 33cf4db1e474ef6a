"""Prometheus metrics, one registry per app (no import-time globals).

Each process serves its own figures at `/metrics`; an operator's Prometheus scrapes every process and adds
them up (`deploy/grafana-dashboard.json` shows a show's figures that way). Labels stay few and bounded:
error and refusal codes, routes, and the broadcasts with viewers on the process right now (a broadcast's
series goes when its last viewer here leaves).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import AppError, Unavailable
from .outages import unavailable

T = TypeVar("T")

# The lag of a room event from its publication (on any process) to its write here: batching adds up to
# `room.batch_ms` (100 ms by default), a process back on the bus fills from the stream after seconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RoomViewers = Callable[[], Mapping[int, int]]  # broadcast id → viewers on this process (rooms with some)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    sockets_connected: Gauge
    socket_events: Counter
    errors: Counter
    bus_up: Gauge
    bus_outages: Counter
    bus_reconnections: Counter
    bus_events_filled: Counter
    chat_groups: Counter
    chat_messages: Counter
    deliveries: Counter
    delivery_lag: Histogram
    viewers_dropped: Counter
    purchases: Counter
    claims: Counter
    rooms: RoomFigures
    _children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP answer and its time (the labelled series are looked up once each)."""
        key = (method, route, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (self.requests.labels(method, route, str(status)), self.request_seconds.labels(route))
            if len(self._children) < 10_000:
                self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def delivered(self, data: Any, copies: int) -> None:
        """A room frame written to `copies` sockets: counted once, and the lag of each room event in it (an
        envelope `{"e", "o", "t", "d", "ts"}`, or a `room:batch` list of them) observed once, whatever the
        number of viewers. Frames without a publication stamp (figures, states) have no lag."""
        self.deliveries.inc(copies)
        if type(data) is dict:
            stamp = data.get("ts")
            if type(stamp) is float:
                self.delivery_lag.observe(max(0.0, time.time() - stamp))  # clocks apart: never below 0
        elif type(data) is list:
            now = time.time()
            for env in data:
                stamp = env.get("ts") if type(env) is dict else None
                if type(stamp) is float:
                    self.delivery_lag.observe(max(0.0, now - stamp))


class RoomFigures(Collector):
    """Rooms and viewers on this process, read from `source` (set by the room's runtime when it starts) at each
    scrape: nothing on the room's path."""

    def __init__(self) -> None:
        self.source: RoomViewers | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rooms = dict(self.source()) if self.source is not None else {}
        yield GaugeMetricFamily("livecommerce_rooms_open", "Broadcast rooms with viewers on this process",
                                value=len(rooms))
        yield GaugeMetricFamily("livecommerce_viewers", "Sockets in a broadcast's room on this process",
                                value=sum(rooms.values()))
        per_room = GaugeMetricFamily("livecommerce_room_viewers", "Sockets in the broadcast's room on this process "
                                     "(only broadcasts with viewers here)", labels=["broadcast"])
        for broadcast_id, n in sorted(rooms.items()):
            per_room.add_metric([str(broadcast_id)], n)
        yield per_room


def make_metrics() -> Metrics:
    reg = CollectorRegistry()
    rooms = RoomFigures()
    reg.register(rooms)
    return Metrics(
        registry=reg,
        requests=Counter("livecommerce_http_requests", "HTTP requests answered", ["method", "route", "status"],
                         registry=reg),
        request_seconds=Histogram("livecommerce_http_request_seconds", "Time to answer an HTTP request", ["route"],
                                  registry=reg),
        sockets_connected=Gauge("livecommerce_sockets_connected", "Sockets connected to this process", registry=reg),
        socket_events=Counter("livecommerce_socket_events", "Socket events handled", ["event", "outcome"],
                              registry=reg),
        errors=Counter("livecommerce_errors", "Errors answered, by code", ["code"], registry=reg),
        bus_up=Gauge("livecommerce_bus_up", "1 while this process is subscribed to the Redis bus", registry=reg),
        bus_outages=Counter("livecommerce_bus_outages", "Times this process lost the Redis bus", registry=reg),
        bus_reconnections=Counter("livecommerce_bus_reconnections",
                                  "Times this process subscribed to the Redis bus again after losing it",
                                  registry=reg),
        bus_events_filled=Counter("livecommerce_bus_events_filled",
                                  "Room events read from the room's stream because the bus did not bring them",
                                  registry=reg),
        chat_groups=Counter("livecommerce_chat_groups", "Transactions that wrote chat messages (each writes the "
                            "messages that arrived together)", registry=reg),
        chat_messages=Counter("livecommerce_chat_messages", "Chat messages written", registry=reg),
        deliveries=Counter("livecommerce_deliveries", "Room frames written to viewers' sockets by this process (a "
                           "frame to 1,000 viewers counts 1,000)", registry=reg),
        delivery_lag=Histogram("livecommerce_delivery_lag_seconds", "Time from a room event's publication to its "
                               "write to this process's viewers (once per event, whatever the viewers)",
                               buckets=LAG_BUCKETS, registry=reg),
        viewers_dropped=Counter("livecommerce_viewers_dropped", "Viewers cut off because they could not keep up "
                                "with the room (they reconnect and catch up from their position)", registry=reg),
        purchases=Counter("livecommerce_purchases", "Purchase attempts answered, by outcome: bought, replayed (a "
                          "retry answered what its key kept) or the refusal's error code", ["outcome"], registry=reg),
        claims=Counter("livecommerce_coupon_claims", "Coupon claims answered, by outcome: claimed, replayed (a "
                       "retry answered what its key kept) or the refusal's error code", ["outcome"], registry=reg),
        rooms=rooms,
    )


async def count_outcome(outcomes: Counter, attempt: Awaitable[T], outcome: Callable[[T], str]) -> T:
    """Await `attempt` and count its answer under `outcomes`: `outcome(result)` when it answers, the error's
    code when it is refused, `unavailable` or `internal` when it fails (the failure is raised on)."""
    try:
        result = await attempt
    except AppError as exc:
        outcomes.labels(exc.code).inc()
        raise
    except Exception as exc:
        outcomes.labels(Unavailable.code if unavailable(exc) else "internal").inc()
        raise
    outcomes.labels(outcome(result)).inc()
    return result
