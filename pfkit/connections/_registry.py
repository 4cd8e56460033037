"""Connection types by name (the ``type:`` of a connection file): one registry, no if/elif.

A later provider registers its type with :func:`register_connection_type`; its models are
registered separately, in :mod:`pfkit.providers._registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._types import (
    AzureContentSafetyConnection,
    AzureOpenAIConnection,
    CognitiveSearchConnection,
    CustomConnection,
    FormRecognizerConnection,
    LocalConnection,
    OpenAIConnection,
    SerpConnection,
    ServerlessConnection,
)


@dataclass(frozen=True, slots=True)
class ConnectionType:
    """How a connection file of one ``type`` becomes a connection object."""

    name: str
    cls: type
    secret_fields: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    config_fields: tuple[str, ...] = ()  # typed, non-secret fields the class takes
    url_fields: tuple[str, ...] = ()  # fields that must be http(s) URLs when given
    model: bool = False  # an LLM connection: accepts pfkit's limit and retry options
    creatable: bool = True  # offered by `pfkit connection create`
    extra_fields: tuple[str, ...] = field(default=())  # further fields accepted as they are

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.config_fields, *self.secret_fields)


CONNECTION_TYPES: dict[str, ConnectionType] = {}


def register_connection_type(ctype: ConnectionType) -> None:
    CONNECTION_TYPES[ctype.name] = ctype


for _ctype in (
    ConnectionType("open_ai", OpenAIConnection, ("api_key",), ("api_key",),
                   ("organization", "base_url"), ("base_url",), model=True),
    ConnectionType("azure_open_ai", AzureOpenAIConnection, ("api_key",), ("api_key", "api_base"),
                   ("api_base", "api_type", "api_version", "auth_mode", "resource_id"), ("api_base",),
                   model=True),
    ConnectionType("serverless", ServerlessConnection, ("api_key",), ("api_key", "api_base"),
                   ("api_base",), ("api_base",), model=True),
    ConnectionType("local", LocalConnection, (), (), ("model_path", "n_ctx"), model=True,
                   creatable=True),
    ConnectionType("custom", CustomConnection),
    ConnectionType("serp", SerpConnection, ("api_key",), ("api_key",)),
    ConnectionType("cognitive_search", CognitiveSearchConnection, ("api_key",),
                   ("api_key", "api_base"), ("api_base", "api_version"), ("api_base",)),
    ConnectionType("azure_content_safety", AzureContentSafetyConnection, ("api_key",),
                   ("api_key", "endpoint"), ("endpoint", "api_version", "api_type"), ("endpoint",)),
    ConnectionType("form_recognizer", FormRecognizerConnection, ("api_key",),
                   ("api_key", "endpoint"), ("endpoint", "api_version", "api_type"), ("endpoint",)),
):
    register_connection_type(_ctype)


def connection_type(name: object) -> ConnectionType | None:
    return CONNECTION_TYPES.get(name) if isinstance(name, str) else None
