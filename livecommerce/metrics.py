"""Prometheus metrics, one registry per app (no import-time globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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


def make_metrics() -> Metrics:
    reg = CollectorRegistry()
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
    )
