"""The text of a message's content, one helper for every place that needs it (the cache's
excerpts, token estimates, the local model's prompt, the test server's echo)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def content_text(content: Any, *, sep: str = " ",
                 other: Callable[[Any], str] | None = None) -> str:
    """The text of ``content``: a string as it is; a list of content parts (or strings) joined
    with ``sep``; None as "". Non-text parts (images, audio) are skipped, or given to ``other``
    (which returns their text, or raises when the caller cannot take them)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str) and \
                    part.get("type", "text") == "text":
                parts.append(part["text"])
            elif other is not None:
                parts.append(other(part))
        return sep.join(parts)
    return str(content)


def request_text(request: Mapping[str, Any], *, sep: str = " ") -> str:
    """All the text a request sends: every message's content, the prompt, the embedding input."""
    texts = [content_text(m.get("content"), sep=sep) for m in request.get("messages") or []
             if isinstance(m, Mapping)]
    for key in ("prompt", "input"):
        value = request.get(key)
        if value is not None:
            texts.append(content_text(value, sep=sep))
    return sep.join(t for t in texts if t)
