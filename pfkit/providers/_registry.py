"""From a connection name to a model: one model instance per connection per registry, so its
limits (concurrency, requests and tokens per minute) are shared by every node, line and
evaluator that uses it."""

from __future__ import annotations

from typing import Any

from ..connections._store import ConnectionStore
from ..errors import UserError
from ._limits import Limits
from ._openai import OpenAICompatibleModel, ProviderOptions


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def options_of(conn: Any) -> tuple[ProviderOptions, Limits]:
    defaults = ProviderOptions()
    options = ProviderOptions(
        timeout=float(getattr(conn, "timeout", None) or defaults.timeout),
        max_retries=_int(getattr(conn, "max_retries", None)) if getattr(conn, "max_retries", None)
        not in (None, "") else defaults.max_retries,
    )
    limits = Limits(
        max_concurrency=_int(getattr(conn, "max_concurrency", None)),
        requests_per_minute=_int(getattr(conn, "requests_per_minute", None)),
        tokens_per_minute=_int(getattr(conn, "tokens_per_minute", None)),
    )
    return options, limits


def model_from_connection(name: str, conn: Any) -> Any:
    """Build the model for a resolved connection object."""
    ctype = getattr(conn, "TYPE", "")
    options, limits = options_of(conn)
    if ctype == "open_ai":
        return OpenAICompatibleModel(kind="openai", api_key=conn.api_key, base_url=conn.base_url,
                                     organization=getattr(conn, "organization", None),
                                     connection=name, options=options, limits=limits)
    if ctype == "azure_open_ai":
        return OpenAICompatibleModel(kind="azure_openai", api_key=conn.api_key,
                                     base_url=conn.api_base, api_version=conn.api_version,
                                     connection=name, options=options, limits=limits)
    if ctype == "serverless":
        base = conn.api_base.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        return OpenAICompatibleModel(kind="openai", api_key=conn.api_key, base_url=base,
                                     connection=name, options=options, limits=limits)
    if ctype == "local":
        from ._local import local_model

        return local_model(getattr(conn, "model_path", None), n_ctx=getattr(conn, "n_ctx", None))
    raise UserError(f"connection '{name}' is of type {ctype!r}, which is not a model connection",
                    code="InvalidConnectionType",
                    hint="LLM nodes need an open_ai, azure_open_ai, serverless or local connection.")


class ModelRegistry:
    """Resolves llm nodes' connections to models, creating each model once."""

    def __init__(self, store: ConnectionStore | None = None, wrap: Any = None) -> None:
        self.store = store or ConnectionStore()
        self.wrap = wrap  # e.g. a cache: model -> model
        self.fallback: Any = None  # name -> model, when the connection cannot be resolved
        self._models: dict[str, Any] = {}

    def connection(self, name: str) -> Any:
        return self.store.get(name)

    def model(self, name: str) -> Any:
        model = self._models.get(name)
        if model is None:
            try:
                model = model_from_connection(name, self.store.get(name))
            except UserError:
                if self.fallback is None:
                    raise
                model = self.fallback(name)
            else:
                if self.wrap is not None:
                    model = self.wrap(model)
            self._models[name] = model
        return model

    def __call__(self, name: str, node: Any = None) -> Any:
        """The resolver ``bind`` uses: errors name the node that needs the connection."""
        try:
            return self.model(name)
        except UserError as exc:
            if node is None:
                raise
            raise type(exc)(f"node '{node.name}' needs connection '{name}': {exc.message}",
                            code=exc.code, hint=exc.hint) from None
