"""From a connection to a model: a registry of model factories by connection type, and one
model instance per connection per :class:`ModelRegistry`, so its limits (concurrency, requests
and tokens per minute) are shared by every node, line, flow and evaluator using it.

A later provider plugs in with :func:`register_model_factory` (its connection type with
:func:`pfkit.connections._registry.register_connection_type`); factories import their heavy
dependencies when first called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..connections._store import ConnectionStore
from ..errors import UserError
from ._limits import Limits
from ._openai import OpenAICompatibleModel, ProviderOptions

ModelFactory = Callable[[str, Any], Any]  # (connection name, connection object) -> ChatModel

MODEL_FACTORIES: dict[str, ModelFactory] = {}


def register_model_factory(connection_type: str, factory: ModelFactory) -> None:
    """Models for connections of ``connection_type`` come from ``factory(name, conn)``."""
    MODEL_FACTORIES[connection_type] = factory


def _option(conn: Any, name: str) -> Any:
    value = getattr(conn, name, None)
    return None if value in (None, "") else value


def options_of(conn: Any) -> tuple[ProviderOptions, Limits]:
    """Retry/timeout options and limits of a connection (already checked by the store)."""
    defaults = ProviderOptions()
    timeout = _option(conn, "timeout")
    retries = _option(conn, "max_retries")
    options = ProviderOptions(
        timeout=float(timeout) if timeout is not None else defaults.timeout,
        max_retries=int(retries) if retries is not None else defaults.max_retries,
    )

    def limit(name: str) -> int | None:
        value = _option(conn, name)
        return int(value) if value is not None else None

    limits = Limits(max_concurrency=limit("max_concurrency"),
                    requests_per_minute=limit("requests_per_minute"),
                    tokens_per_minute=limit("tokens_per_minute"))
    return options, limits


def _open_ai(name: str, conn: Any) -> Any:
    options, limits = options_of(conn)
    return OpenAICompatibleModel(kind="openai", api_key=conn.api_key, base_url=conn.base_url,
                                 organization=getattr(conn, "organization", None),
                                 connection=name, options=options, limits=limits,
                                 connection_type="open_ai")


def _azure_open_ai(name: str, conn: Any) -> Any:
    options, limits = options_of(conn)
    return OpenAICompatibleModel(kind="azure_openai", api_key=conn.api_key,
                                 base_url=conn.api_base, api_version=conn.api_version,
                                 connection=name, options=options, limits=limits,
                                 connection_type="azure_open_ai")


def _serverless(name: str, conn: Any) -> Any:
    options, limits = options_of(conn)
    base = conn.api_base.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    return OpenAICompatibleModel(kind="openai", api_key=conn.api_key, base_url=base,
                                 connection=name, options=options, limits=limits,
                                 connection_type="serverless")


def _local(name: str, conn: Any) -> Any:
    from ._local import local_model

    return local_model(getattr(conn, "model_path", None), n_ctx=getattr(conn, "n_ctx", None))


for _type, _factory in (("open_ai", _open_ai), ("azure_open_ai", _azure_open_ai),
                        ("serverless", _serverless), ("local", _local)):
    register_model_factory(_type, _factory)


def model_from_connection(name: str, conn: Any) -> Any:
    """Build the model for a resolved connection object."""
    ctype = getattr(conn, "TYPE", "")
    factory = MODEL_FACTORIES.get(ctype)
    if factory is None:
        raise UserError(
            f"connection '{name}' is of type {ctype!r}, which is not a model connection",
            code="InvalidConnectionType",
            hint=f"LLM nodes need a connection of type {', '.join(sorted(MODEL_FACTORIES))}.")
    return factory(name, conn)


class ModelRegistry:
    """Resolves llm nodes' connections to models, creating each model once (thread-safe: one
    registry may serve several flows, threads and event loops at once)."""

    def __init__(self, store: ConnectionStore | None = None, wrap: Any = None) -> None:
        self.store = store or ConnectionStore()
        self.wrap = wrap  # e.g. a cache: model -> model
        self.fallback: Any = None  # name -> model, when the connection cannot be resolved
        self._models: dict[str, tuple[Any, Any]] = {}  # name -> (file stamp, model)
        self._lock = threading.Lock()

    def connection(self, name: str) -> Any:
        return self.store.get(name)

    def model(self, name: str) -> Any:
        """The model of connection ``name``: the same object (so the same limits) for as long
        as the connection's file is unchanged; an edited file gives a new model."""
        stamp = self.store.stamp(name)
        entry = self._models.get(name)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        with self._lock:
            entry = self._models.get(name)
            if entry is None or entry[0] != stamp:
                entry = self._models[name] = (stamp, self._build(name))
        return entry[1]

    def _build(self, name: str) -> Any:
        try:
            model = model_from_connection(name, self.store.get(name))
        except UserError:
            if self.fallback is None:
                raise
            return self.fallback(name)
        if self.wrap is not None:
            model = self.wrap(model)
        return model  # calls are reported by the node that uses it (providers._observed)

    def __call__(self, name: str, node: Any = None) -> Any:
        """The resolver ``bind`` uses: errors name the node that needs the connection."""
        try:
            return self.model(name)
        except UserError as exc:
            if node is None:
                raise
            raise type(exc)(f"node '{node.name}' needs connection '{name}': {exc.message}",
                            code=exc.code, hint=exc.hint, location=exc.location) from None
