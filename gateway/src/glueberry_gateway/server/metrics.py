"""Prometheus metrics (``glueberry_gateway_*``), one registry per gateway so that several can
live in one process (tests). Exposed as text at ``/metrics``. Nothing here ever carries payload,
keys or peer-supplied strings beyond bounded label sets (reasons are our own code names)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "Traffic"]


class Traffic:
    """Frame and byte counts, kept as plain integers: they change on every relayed frame, where a
    labelled Prometheus counter costs several microseconds; they are read at scrape time."""

    __slots__ = ("bytes_to_backend", "bytes_to_browser", "frames_to_backend", "frames_to_browser")

    def __init__(self) -> None:
        self.frames_to_backend = 0
        self.bytes_to_backend = 0
        self.frames_to_browser = 0
        self.bytes_to_browser = 0


class _TrafficCollector(Collector):
    def __init__(self, traffic: Traffic) -> None:
        self._traffic = traffic

    def collect(self) -> Iterator[CounterMetricFamily]:
        t = self._traffic
        frames = CounterMetricFamily("glueberry_gateway_frames", "Data frames relayed", labels=["direction"])
        frames.add_metric(["to_backend"], t.frames_to_backend)
        frames.add_metric(["to_browser"], t.frames_to_browser)
        yield frames
        size = CounterMetricFamily("glueberry_gateway_bytes", "Payload bytes relayed", labels=["direction"])
        size.add_metric(["to_backend"], t.bytes_to_backend)
        size.add_metric(["to_browser"], t.bytes_to_browser)
        yield size


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ns = "glueberry_gateway"
        self.sockets = Gauge(f"{ns}_sockets", "Open browser WebSockets", registry=r)
        self.sessions = Gauge(f"{ns}_sessions", "Open sessions (backend connections)", registry=r)
        self.detached_sessions = Gauge(f"{ns}_detached_sessions", "Sessions waiting for a resume", registry=r)
        self.traffic = Traffic()  # glueberry_gateway_frames_total / _bytes_total, by direction
        r.register(_TrafficCollector(self.traffic))
        self.closes = Counter(
            f"{ns}_socket_closes_total", "Sockets closed, by code name", ["reason"], registry=r
        )
        self.session_closes = Counter(
            f"{ns}_session_closes_total", "Sessions ended, by code name", ["reason"], registry=r
        )
        self.drops = Counter(f"{ns}_drops_total", "Frames dropped, by reason", ["reason"], registry=r)
        self.auth_failures = Counter(
            f"{ns}_auth_failures_total", "Failed authentications, by code name", ["reason"], registry=r
        )
        self.auth_successes = Counter(f"{ns}_auth_successes_total", "Successful authentications", registry=r)
        self.resumes = Counter(f"{ns}_resumes_total", "Resume attempts by outcome", ["outcome"], registry=r)
        self.dial_latency = Histogram(
            f"{ns}_backend_dial_seconds",
            "Backend dial + libp2p upgrade time, by outcome",
            ["outcome"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
