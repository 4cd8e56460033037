"""A content-addressed cache of model calls with record/replay, stored in SQLite.

The pieces, each in its own module:

* :mod:`._cache_keys` - :func:`cache_key`, request normalisation, cache modes;
* :mod:`._cache_store` - :class:`ResponseCache`, the SQLite file (WAL) plus cassette layers;
* :mod:`._cassette` - reading and writing JSONL cassettes;
* :mod:`._caching_model` - :class:`CachingModel`, wrapping any ChatModel, and
  :class:`ReplayMissError`.

Modes (:data:`CACHE_MODES`, chosen with ``--cache`` or ``PFKIT_CACHE``): ``off``, ``read_write``,
``record``, ``replay``. This module re-exports the public names.
"""

from __future__ import annotations

from ._cache_keys import (
    CACHE_ENV_VAR,
    CACHE_MODES,
    KEY_VERSION,
    KINDS,
    cache_key,
    canonical_json,
    is_nondeterministic,
    normalise_request,
    resolve_cache_mode,
    strip_secrets,
)
from ._cache_store import SCHEMA_VERSION, CacheStats, ResponseCache
from ._caching_model import (
    CachingModel,
    CachingModelStats,
    ReplayMissError,
    chat_from_dict,
    chat_to_dict,
    completion_from_dict,
    completion_to_dict,
    embedding_from_dict,
    embedding_to_dict,
    stream_items,
    stream_to_dict,
)

__all__ = [
    "CACHE_ENV_VAR", "CACHE_MODES", "KEY_VERSION", "KINDS", "SCHEMA_VERSION", "CacheStats",
    "CachingModel", "CachingModelStats", "ReplayMissError", "ResponseCache", "cache_key",
    "canonical_json", "chat_from_dict", "chat_to_dict", "completion_from_dict",
    "completion_to_dict", "embedding_from_dict", "embedding_to_dict", "is_nondeterministic",
    "normalise_request", "resolve_cache_mode", "stream_items", "stream_to_dict", "strip_secrets",
]
