"""Prometheus metrics of one server (worker): requests, latency, errors, tokens by node.

Each app has its own registry (two apps in one process never mix their counts). With several
workers each worker counts its own requests; a scrape sees the worker that answered it (the
``worker`` label tells which), as with any multi-process server without a shared store.
"""

from __future__ import annotations

import os
from typing import Any

from ..observe import ModelCall, Observer

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0, 300.0)


class ServeMetrics:
    def __init__(self, flow_name: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"flow": flow_name, "worker": str(os.getpid())}
        self._const = labels
        self.requests = Counter("pfkit_requests", "HTTP requests answered",
                                ["flow", "worker", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("pfkit_request_duration_seconds",
                                 "Time to answer a request (a stream: until its last event)",
                                 ["flow", "worker", "endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("pfkit_errors", "Error answers by error code",
                              ["flow", "worker", "code"], registry=self.registry)
        self.tokens = Counter("pfkit_tokens", "Model tokens used, by node and kind",
                              ["flow", "worker", "node", "kind"], registry=self.registry)
        self.in_flight = Gauge("pfkit_requests_in_flight", "Requests being answered",
                               ["flow", "worker"], registry=self.registry).labels(**labels)
        self.feedback = Counter("pfkit_feedback", "Feedback bodies received",
                                ["flow", "worker"], registry=self.registry).labels(**labels)
        self._children: dict[tuple[str, ...], Any] = {}
        self.observer = TokenObserver(self)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            names = [n for n in metric._labelnames if n not in self._const]
            child = self._children[key] = metric.labels(**self._const, **dict(zip(names, values, strict=True)))
        return child

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self._child(self.requests, endpoint, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    def error(self, code: str) -> None:
        self._child(self.errors, code).inc()

    def add_tokens(self, node: str, kind: str, count: int) -> None:
        if count:
            self._child(self.tokens, node, kind).inc(count)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class TokenObserver(Observer):
    """Counts the tokens of every model call by node (prompt and completion)."""

    def __init__(self, metrics: ServeMetrics) -> None:
        self.metrics = metrics

    def on_model_call(self, event: ModelCall) -> None:
        usage = event.usage
        if usage is None or event.cache_hit:
            return
        node = event.node or "-"
        self.metrics.add_tokens(node, "prompt", int(getattr(usage, "prompt_tokens", 0) or 0))
        self.metrics.add_tokens(node, "completion",
                                int(getattr(usage, "completion_tokens", 0) or 0))
