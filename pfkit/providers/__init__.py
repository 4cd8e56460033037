"""Chat, completion and embedding models behind one interface."""

from ._base import ChatModel, ChatResponse, CompletionResponse, Usage

__all__ = ["ChatModel", "ChatResponse", "CompletionResponse", "Usage"]
