"""Chat, completion and embedding models behind one interface.

A new provider plugs in with :func:`register_model_factory` (models for its connection type)
and :func:`pfkit.connections.register_connection_type` (the type itself).
"""

from typing import Any

from ._base import ChatModel, ChatResponse, CompletionResponse, EmbeddingResponse, Usage

__all__ = ["ChatModel", "ChatResponse", "CompletionResponse", "EmbeddingResponse", "Usage",
           "register_model_factory"]


def __getattr__(name: str) -> Any:  # the registry (and its provider modules) on first use
    if name == "register_model_factory":
        from ._registry import register_model_factory

        return register_model_factory
    raise AttributeError(name)
