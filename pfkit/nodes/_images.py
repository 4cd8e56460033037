"""Image inputs for vision chat models.

A flow input of type ``image`` (``{"data:image/png;path": "cat.png"}``, ``;url`` or ``;base64``
forms, a data URL, an http(s) URL or a file path) becomes an :class:`Image`. In a chat template,
``![image]({{img}})`` (or ``{{img}}`` alone on a line) turns into an ``image_url`` content part.
URLs are passed to the model as they are: pfkit itself never fetches them (no SSRF).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);(path|url|base64)$")


class Image(str):
    """The text of an image in a template is a unique placeholder token; the content part sent
    to the model is built from ``url`` (a web URL or a ``data:`` URL)."""

    __slots__ = ("url",)

    def __new__(cls, url: str) -> Image:
        token = "pfkit-image-" + hashlib.sha256(url.encode()).hexdigest()[:16]
        obj = super().__new__(cls, token)
        obj.url = url
        return obj

    def to_dict(self) -> dict[str, str]:
        if self.url.startswith("data:"):
            mime = self.url[5:self.url.index(";")]
            return {f"data:{mime};base64": self.url.split(",", 1)[1]}
        return {"data:image/*;url": self.url}


def _from_file(path: Path) -> Image:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return Image(f"data:{mime};base64,{data}")


def to_image(value: Any, base_dir: Path | None = None) -> Any:
    """An image from any of promptflow's forms; other values are returned unchanged."""
    if isinstance(value, Image):
        return value
    if isinstance(value, dict) and len(value) == 1:
        key, item = next(iter(value.items()))
        match = _KEY.match(str(key))
        if match and isinstance(item, str):
            mime, kind = match.groups()
            if kind == "url":
                return Image(item)
            if kind == "base64":
                return Image(f"data:{mime};base64,{item}")
            path = Path(item)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_file():
                raise ValueError(f"image file {path} does not exist")
            return _from_file(path)
    if isinstance(value, str):
        if value.startswith(("data:image/", "http://", "https://")):
            return Image(value)
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp") and path.is_file():
            return _from_file(path)
    raise ValueError(f"cannot read an image from {value!r}")


def find_images(value: Any, found: dict[str, Image] | None = None) -> dict[str, Image]:
    """Every Image inside a value (dicts and lists searched), by placeholder token."""
    found = {} if found is None else found
    if isinstance(value, Image):
        found[str(value)] = value
    elif isinstance(value, dict):
        for item in value.values():
            find_images(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            find_images(item, found)
    return found
