"""``pfkit.Session``: the long-lived owner of models, cache, limits, run store and observers.

Everything started in one session shares one model per connection (one client, one connection
pool, one budget of concurrency, requests and tokens per minute): a server's requests and an
evaluation's judge calls draw on the same limits. The response cache may differ per run: the
session keeps one set of raw models and wraps a cache layer around them per cache mode.

Sync calls (``flow(...)``, ``flow.test``, ``pfkit.run``) run on the session's one background
event loop (also from inside Jupyter's running loop); async code awaits ``flow.arun`` /
``pfkit.arun`` on its own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ._aio import BackgroundLoop, default_loop
from .errors import UserError
from .observe import Observers

T = TypeVar("T")


class ModelLayer:
    """The models of one cache mode (and cassette) in a session: the session's raw models with
    this mode's cache around them. ``bind`` calls it as the model resolver. Imports nothing of
    the provider stack until a node needs a model."""

    def __init__(self, session: Session, mode: str | None, cassette: Path | None) -> None:
        self.session = session
        self.cache_mode = mode
        self.cassette = cassette
        self._cache_session: Any = None
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        if mode not in (None, "off"):
            self._caching()  # an invalid mode or a missing cassette is reported now

    def _caching(self) -> Any:
        if self._cache_session is None:
            from .providers._session import ModelSession

            self._cache_session = ModelSession(self.cache_mode, self.cassette)
        return self._cache_session

    def __call__(self, name: str, node: Any = None) -> Any:
        model = self._models.get(name)
        if model is not None:
            return model
        with self._lock:
            model = self._models.get(name)
            if model is None:
                model = self._models[name] = self._build(name, node)
        return model

    def _build(self, name: str, node: Any) -> Any:
        registry = self.session.raw_models
        caching = self._caching()
        wrap = caching.registry.wrap
        try:
            raw = registry.model(name)
        except UserError as exc:
            fallback = caching.registry.fallback
            if fallback is None:
                if node is None:
                    raise
                raise type(exc)(f"node '{node.name}' needs connection '{name}': {exc.message}",
                                code=exc.code, hint=exc.hint, location=exc.location) from None
            return fallback(name)
        if wrap is None:
            return raw
        from .providers._observed import ObservedModel, observed

        inner = raw.inner if isinstance(raw, ObservedModel) else raw  # observed outermost
        return observed(wrap(inner))

    def connection(self, name: str) -> Any:
        return self.session.raw_models.connection(name)

    def finish(self) -> int | None:
        """Write the cassette (record mode) and close the cache; returns entries written."""
        caching, self._cache_session = self._cache_session, None
        self._models.clear()
        return caching.finish() if caching is not None else None

    @property
    def stats(self) -> dict[str, int]:
        return self._cache_session.stats if self._cache_session is not None else {}


class Session:
    """``Session(store=None, observers=(), cache=None, cassette=None, models=None)``.

    ``models`` replaces the connection store for every flow of the session (a mapping of
    connection name to model, ``"*"`` for any, or a resolver ``(name, node) -> model``);
    ``cache`` and ``cassette`` are the default cache mode and cassette of its flows and runs.
    Use it as ``async with Session() as s:``, ``with Session() as s:`` or a plain object
    (``close()``); :meth:`default` is the process-wide one."""

    _default: Session | None = None
    _default_lock = threading.Lock()

    def __init__(self, store: Any = None, observers: Iterable[Any] | Observers = (),
                 cache: str | None = None, cassette: str | Path | None = None,
                 models: Any = None, *, connections: Any = None) -> None:
        self._store = store
        self.observers = observers if isinstance(observers, Observers) else Observers(
            tuple(observers))
        self.cache = cache
        self.cassette = Path(cassette) if cassette else None
        self.models = models
        self._connections = connections
        self._raw: Any = None
        self._layers: dict[tuple[str | None, str | None], ModelLayer] = {}
        self._lock = threading.Lock()
        self._loop: BackgroundLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ the default session

    @classmethod
    def default(cls) -> Session:
        """The process-wide session (sync calls without ``session=`` use it)."""
        with cls._default_lock:
            if cls._default is None or cls._default._closed:
                session = cls()
                session._loop = default_loop()
                cls._default = session
            return cls._default

    # ------------------------------------------------------------------ what it holds

    @property
    def store(self) -> Any:
        """The run store (the local SQLite store under ``$PFKIT_HOME`` unless given)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from . import runs

                    factory = getattr(runs, "LocalRunStore", None) or runs.RunStore
                    self._store = factory()
        return self._store

    @property
    def raw_models(self) -> Any:
        """One model per connection, without a cache: the session's clients and limits."""
        if self._raw is None:
            with self._lock:
                if self._raw is None:
                    from .providers._registry import ModelRegistry

                    self._raw = ModelRegistry()
        return self._raw

    def model_layer(self, cache: str | None = None, cassette: str | Path | None = None, *,
                    flow: str | Path | None = None) -> ModelLayer:
        """The models for one cache mode and cassette (created once per session). Without a
        cassette, ``flow``'s is used: ``pfkit.cassette.jsonl`` in the flow folder."""
        mode = cache if cache is not None else self.cache
        if cassette is None and self.cassette is None and flow is not None:
            cassette = default_cassette(flow)
        tape = Path(cassette).expanduser().absolute() if cassette else self.cassette
        key = (mode, str(tape) if tape else None)
        with self._lock:
            layer = self._layers.get(key)
            if layer is None:
                layer = self._layers[key] = ModelLayer(self, mode, tape)
        return layer

    def resolvers(self, cache: str | None = None, cassette: str | Path | None = None
                  ) -> tuple[Any, Any]:
        """(models, connections) resolvers for binding a flow in this session."""
        if self.models is not None:
            return self.models, self._connections or _connection_store_get()
        layer = self.model_layer(cache, cassette)
        return layer, self._connections or layer.connection

    # ------------------------------------------------------------------ flows

    def load_executable(self, path: str | Path, *, variant: str | None = None,
                        connection_overrides: Mapping[str, str] | None = None,
                        cache: str | None = None, cassette: str | Path | None = None,
                        models: Any = None, connections: Any = None,
                        init: Mapping[str, Any] | None = None) -> Any:
        """An :class:`~pfkit.engine.ExecutableFlow` whose models come from this session
        (``init``: a flex flow's class init values)."""
        from .engine import load_executable

        if models is None:
            if cassette is None and self.cassette is None:
                cassette = default_cassette(path)
            models, default_connections = self.resolvers(cache, cassette)
            connections = connections or default_connections
        return load_executable(path, variant=variant, models=models, connections=connections,
                               connection_overrides=connection_overrides,
                               **({"init": init} if init else {}))

    def connection(self, name: str) -> Any:
        """A connection from the connection store (secrets resolved, and registered for
        scrubbing), without building a model for it."""
        return (self._connections or _connection_store_get())(name)

    def load_flow(self, path: str | Path, **kwargs: Any) -> Any:
        """A :class:`pfkit.Flow` in this session."""
        from .flows import Flow

        return Flow(path, session=self, **kwargs)

    # ------------------------------------------------------------------ running

    @property
    def loop(self) -> BackgroundLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = BackgroundLoop(name="pfkit-session")
        return self._loop

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the session's background loop and wait for it."""
        if self._closed:
            coro.close()
            raise UserError("this pfkit.Session is closed", code="SessionClosed",
                            hint="Create a new Session.")
        return self.loop.run(coro)

    # ------------------------------------------------------------------ closing

    def finish_models(self) -> dict[str, int | None]:
        """Write cassettes (record mode) and close caches; returns written entries per file."""
        written = {}
        with self._lock:
            layers = list(self._layers.values())
            self._layers.clear()
        for layer in layers:
            count = layer.finish()
            if layer.cassette is not None:
                written[str(layer.cassette)] = count
        return written

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.finish_models()
        if self._loop is not None and self._loop is not default_loop():
            self._loop.close()
        store, self._store = self._store, None
        closer = getattr(store, "close", None)
        if callable(closer):
            closer()

    async def aclose(self) -> None:
        self._closed = True
        self.finish_models()
        provider = __import__("sys").modules.get("pfkit.providers._openai")
        if provider is not None:
            await provider.close_loop_clients()
        if self._loop is not None and self._loop is not default_loop():
            self._loop.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


async def arun(flow: str | Path, data: str | Path | None = None, *, progress: bool = False,
               models: Any = None, store: Any = None, observers: Any = (), session: Any = None,
               **options: Any) -> Any:
    """``await pfkit.arun(flow, data, ...)``: :func:`pfkit.run` for async code, on the caller's
    event loop (same arguments; ``session`` default ``Session.default()``)."""
    from .runs import _api

    runs_arun = getattr(_api, "arun", None)
    if runs_arun is not None and runs_arun is not arun:
        return await runs_arun(flow, data, progress=progress, models=models, store=store,
                               observers=observers, session=session, **options)
    base = options.pop("run", None)
    resume = options.pop("resume_from", None)
    for key in ("column_mapping", "environment_variables", "connections", "tags"):
        options[key] = dict(options.get(key) or {})
    request = _api.RunRequest(
        flow=str(flow), data=str(data) if data is not None else None,
        run=getattr(base, "name", base), resume_from=getattr(resume, "name", resume), **options)
    return await _api.acreate_run(request, store=store, progress=progress, models=models,
                                  observers=observers, session=session)


def default_cassette(flow: str | Path) -> Path:
    """Where a flow's recorded model calls live: ``pfkit.cassette.jsonl`` beside the flow."""
    from .providers._lazy import CASSETTE_NAME
    from .spec import resolve_flow_file

    return resolve_flow_file(flow).parent / CASSETTE_NAME


def _connection_store_get() -> Any:
    from .connections._store import ConnectionStore

    return ConnectionStore().get


__all__ = ["ModelLayer", "Session", "arun", "default_cassette"]
