"""A model session that costs nothing until a node needs a model: flows with only python nodes
never import the provider, cache or openai stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CASSETTE_NAME = "pfkit.cassette.jsonl"  # beside the flow: recorded model calls, committed


class LazyModelSession:
    """Stands where a :class:`~pfkit.providers._session.ModelSession` would, creating it on the
    first model or connection lookup. ``bind`` calls it as the model resolver."""

    def __init__(self, cache_mode: str | None = None, cassette: str | Path | None = None) -> None:
        self.cache_mode = cache_mode
        self.cassette = Path(cassette) if cassette else None
        self._session: Any = None
        if cache_mode not in (None, "off"):
            self.session  # noqa: B018 - an invalid mode or a missing cassette is reported now

    @property
    def session(self) -> Any:
        if self._session is None:
            from ._session import ModelSession

            self._session = ModelSession(self.cache_mode, self.cassette)
        return self._session

    def __call__(self, name: str, node: Any = None) -> Any:
        return self.session.registry(name, node)

    def connection(self, name: str) -> Any:
        return self.session.registry.connection(name)

    def finish(self) -> int | None:
        return self._session.finish() if self._session is not None else None

    @property
    def stats(self) -> dict[str, int]:
        return self._session.stats if self._session is not None else {}
