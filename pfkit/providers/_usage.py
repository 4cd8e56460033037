"""Token accounting: per call, node, line and run, with a cost estimate.

The engine opens a :class:`UsageRecorder` around each node it runs (a context variable, so
concurrent nodes and lines never mix); every model call made inside records its usage there.
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._base import Usage

# USD per 1M tokens (input, output), by model name prefix; the longest matching prefix wins.
# Estimates for planning only; override with $PFKIT_HOME/prices.yaml ({model: [in, out]}).
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-35-turbo": (0.50, 1.50),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.0),
}


@dataclass(slots=True)
class UsageRecorder:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    by_model: dict[str, list[int]] = field(default_factory=dict)  # model -> [prompt, completion]

    def add(self, usage: Usage, model: str | None, cached: bool = False) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.total_tokens += usage.total_tokens
        self.calls += 1
        self.cached_calls += int(cached)
        entry = self.by_model.setdefault(model or "unknown", [0, 0])
        entry[0] += usage.prompt_tokens
        entry[1] += usage.completion_tokens

    def merge(self, other: UsageRecorder) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        for model, (p, c) in other.by_model.items():
            entry = self.by_model.setdefault(model, [0, 0])
            entry[0] += p
            entry[1] += c

    def __bool__(self) -> bool:
        return self.calls > 0

    def to_dict(self, prices: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens, "calls": self.calls,
            "cached_calls": self.cached_calls,
        }
        cost = estimate_cost(self.by_model, prices)
        if cost is not None:
            data["cost_usd"] = cost
        return data


current_usage: contextvars.ContextVar[UsageRecorder | None] = contextvars.ContextVar(
    "pfkit_usage", default=None)


def record_usage(usage: Usage | None, model: str | None, cached: bool = False) -> None:
    recorder = current_usage.get()
    if recorder is not None and usage is not None:
        recorder.add(usage, model, cached)


def record_response(response: Any, model: str | None) -> None:
    """Record a Chat/Completion/EmbeddingResponse's usage (``model`` when it names none)."""
    record_usage(response.usage, response.model or model, response.cached)


def load_prices() -> dict[str, tuple[float, float]]:
    prices = dict(DEFAULT_PRICES)
    home = Path(os.environ.get("PFKIT_HOME") or Path.home() / ".pfkit").expanduser()
    override = home / "prices.yaml"
    if override.is_file():
        import yaml

        data = yaml.safe_load(override.read_text(encoding="utf-8")) or {}
        for model, pair in data.items():
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                prices[str(model)] = (float(pair[0]), float(pair[1]))
    return prices


def price_for(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    best = None
    for prefix in prices:
        if model.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return prices[best] if best else None


def estimate_cost(by_model: dict[str, list[int]],
                  prices: dict[str, tuple[float, float]] | None = None) -> float | None:
    """USD for the tokens of models with a known price; None when no model has a price."""
    if not by_model:
        return None
    table = prices if prices is not None else load_prices()
    total, known = 0.0, False
    for model, (prompt, completion) in by_model.items():
        price = price_for(model, table)
        if price is None:
            continue
        known = True
        total += prompt / 1e6 * price[0] + completion / 1e6 * price[1]
    return round(total, 6) if known else None
