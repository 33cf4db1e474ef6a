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
    )
