"""Connections: named endpoints and secrets that llm nodes and tools use."""

from ._types import (
    AzureOpenAIConnection,
    CustomConnection,
    CustomStrongTypeConnection,
    OpenAIConnection,
    ServerlessConnection,
)

__all__ = [
    "AzureOpenAIConnection", "CustomConnection", "CustomStrongTypeConnection",
    "OpenAIConnection", "ServerlessConnection",
]
