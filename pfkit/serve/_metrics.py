"""Prometheus metrics of one server (worker): requests, latency, errors, tokens by node.

Counted in plain dictionaries on the event loop (a request costs a few dictionary updates, no
lock) and exposed through a prometheus-client collector at scrape time, in the standard text
format. Each app has its own registry. With several workers each worker counts its own requests;
a scrape sees the worker that answered it (the ``worker`` label tells which).
"""

from __future__ import annotations

import bisect
import os
from typing import Any

from ..observe import ModelCall, Observer

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bucket
        self.sum = 0.0
        self.total = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.total += 1


class ServeMetrics:
    def __init__(self, flow_name: str) -> None:
        from prometheus_client import CollectorRegistry

        self.flow = flow_name
        self.worker = str(os.getpid())
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.errors: dict[str, int] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.in_flight = _Gauge()
        self.feedback = _Gauge()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.observer = TokenObserver(self)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = _Histogram()
        histogram.observe(seconds)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def add_tokens(self, node: str, kind: str, count: int) -> None:
        if count:
            key = (node, kind)
            self.tokens[key] = self.tokens.get(key, 0) + count

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Gauge:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class _Collector:
    def __init__(self, metrics: ServeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.metrics
        base = ["flow", "worker"]
        ids = [m.flow, m.worker]
        requests = CounterMetricFamily("pfkit_requests", "HTTP requests answered",
                                       labels=[*base, "endpoint", "status"])
        for (endpoint, status), count in sorted(m.requests.items()):
            requests.add_metric([*ids, endpoint, status], count)
        yield requests
        latency = HistogramMetricFamily(
            "pfkit_request_duration_seconds",
            "Time to answer a request (a stream: until its last event)",
            labels=[*base, "endpoint"])
        for endpoint, histogram in sorted(m.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), histogram.counts,
                                    strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([*ids, endpoint], buckets, histogram.sum)
        yield latency
        errors = CounterMetricFamily("pfkit_errors", "Error answers by error code",
                                     labels=[*base, "code"])
        for code, count in sorted(m.errors.items()):
            errors.add_metric([*ids, code], count)
        yield errors
        tokens = CounterMetricFamily("pfkit_tokens", "Model tokens used, by node and kind",
                                     labels=[*base, "node", "kind"])
        for (node, kind), count in sorted(m.tokens.items()):
            tokens.add_metric([*ids, node, kind], count)
        yield tokens
        in_flight = GaugeMetricFamily("pfkit_requests_in_flight", "Requests being answered",
                                      labels=base)
        in_flight.add_metric(ids, m.in_flight.value)
        yield in_flight
        feedback = CounterMetricFamily("pfkit_feedback", "Feedback bodies received",
                                       labels=base)
        feedback.add_metric(ids, m.feedback.value)
        yield feedback


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
