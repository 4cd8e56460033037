"""Connections: named endpoints and secrets that llm nodes and tools use.

The classes carry promptflow's names and behaviour (``from promptflow.connections import
OpenAIConnection`` in a tool script gets these when promptflow is not installed).
"""

from ._check import check_connection_type
from ._registry import ConnectionType, register_connection_type
from ._types import (
    AzureContentSafetyConnection,
    AzureOpenAIConnection,
    CognitiveSearchConnection,
    CustomConnection,
    CustomStrongTypeConnection,
    FormRecognizerConnection,
    LocalConnection,
    OpenAIConnection,
    SerpConnection,
    ServerlessConnection,
)

__all__ = [
    "AzureContentSafetyConnection", "AzureOpenAIConnection", "CognitiveSearchConnection",
    "CustomConnection", "CustomStrongTypeConnection", "FormRecognizerConnection",
    "LocalConnection", "OpenAIConnection", "SerpConnection", "ServerlessConnection",
    "ConnectionType", "check_connection_type", "register_connection_type",
]
