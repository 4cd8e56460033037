"""Chat, completion and embedding models behind one interface."""

from ._base import ChatModel, ChatResponse, CompletionResponse, EmbeddingResponse, Usage

__all__ = ["ChatModel", "ChatResponse", "CompletionResponse", "EmbeddingResponse", "Usage"]
