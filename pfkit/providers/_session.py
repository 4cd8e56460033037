"""The models of one command or API call: connections resolved once, the response cache and
record/replay applied around every model, cassettes loaded and written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..connections._store import ConnectionStore, pfkit_home
from ..errors import UserError
from ._cache import CachingModel, ReplayMissError, ResponseCache, resolve_cache_mode
from ._registry import ModelRegistry


class ReplayOnlyModel:
    """Stands in for a connection that does not exist here, in replay mode: every answer must
    come from the cassette; a miss is reported by the cache as usual."""

    def __init__(self, connection: str, api_style: str) -> None:
        self.api_style = api_style
        provider = "azure_openai" if api_style == "azure_openai" else "openai"
        self.identity = {"provider": provider, "connection": connection}

    async def _missing(self, request: dict[str, Any]) -> Any:  # pragma: no cover - guarded
        raise ReplayMissError.for_call(self.identity, "chat", "", request)

    chat = complete = embed = _missing

    async def chat_stream(self, request: dict[str, Any]):  # pragma: no cover - guarded
        raise ReplayMissError.for_call(self.identity, "chat", "", request)
        yield ""


class ModelSession:
    """``ModelSession(cache_mode, cassette)``: ``.registry`` resolves llm nodes' connections;
    call :meth:`finish` when the work is done (it writes the cassette in record mode)."""

    def __init__(self, cache_mode: str | None = None, cassette: str | Path | None = None,
                 store: ConnectionStore | None = None) -> None:
        self.mode = resolve_cache_mode(cache_mode)
        self.cassette = Path(cassette) if cassette else None
        self.cache: ResponseCache | None = None
        wrap = None
        if self.mode != "off":
            self.cache = ResponseCache(pfkit_home() / "cache.sqlite")
            if self.cassette and self.cassette.is_file() and self.mode != "record":
                self.cache.load_cassette(self.cassette)
            elif self.mode == "replay" and self.cassette:
                raise UserError(f"replay needs the cassette {self.cassette}, which does not exist",
                                code="CassetteNotFound",
                                hint="Record it first:  --cache record  (with the models reachable).")

            # temperature > 0 without a seed is not cached in read_write mode unless asked for
            everything = os.environ.get("PFKIT_CACHE_NONDETERMINISTIC", "") in ("1", "true")

            def wrap(model: Any) -> Any:
                return CachingModel(model, self.cache, self.mode,
                                    cache_nondeterministic=everything)

        self.registry = ModelRegistry(store, wrap=wrap)
        if self.mode == "replay":
            self.registry.fallback = self._replay_stand_in

    def _replay_stand_in(self, name: str) -> Any:
        style = "openai"
        for identity in self.cache.layer_identities() if self.cache else []:
            if identity.get("connection") == name and identity.get("provider") == "azure_openai":
                style = "azure_openai"
        return CachingModel(ReplayOnlyModel(name, style), self.cache, self.mode)

    def finish(self) -> int | None:
        """In record mode, write the cassette: the entries used now plus those it held."""
        if self.cache is None:
            return None
        written = None
        if self.mode == "record" and self.cassette:
            recorded = list(self.cache.keys_used())
            keys = recorded
            if self.cassette.is_file():  # keep what the cassette held; re-recorded entries win
                self.cache.load_cassette(self.cassette)
                self.cache.drop_from_layer(recorded)
                keys = [*self.cache.layer_keys(), *recorded]
            written = self.cache.export_cassette(self.cassette, keys)
        self.cache.close()
        return written

    @property
    def stats(self) -> dict[str, int]:
        return self.cache.stats.to_dict() if self.cache else {}
