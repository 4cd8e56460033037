"""Images: promptflow's ``Image`` (bytes with a mime type), image inputs, and the path policy.

* :class:`PFBytes` / :class:`Image` behave as ``promptflow.contracts.multimedia``'s: ``bytes``
  subclasses with ``_mime_type``, ``source_url``, ``to_base64()``, ``str(img) == "Image(<sha1[:8]>)"``.
  Tool scripts get them for ``image`` flow inputs and may return them.
* A flow input of type ``image`` (``{"data:image/png;path": "cat.png"}``, ``;url`` or ``;base64``
  forms, a data URL, an http(s) URL or a file path) becomes an :class:`Image`. In a chat template,
  ``![image]({{img}})`` (or ``{{img}}`` alone on a line) turns into an ``image_url`` content part.
* Untrusted input never chooses a file or an address: a path resolves only inside the allowed
  folders (the data file's folder for data rows, the flow folder for flow inputs, plus
  ``PFKIT_IMAGE_ROOTS``), symlinks included; a URL must be http(s) and, unless
  ``PFKIT_ALLOW_PRIVATE_IMAGE_URLS=1``, must not name a loopback, link-local, private or
  reserved address. pfkit never fetches image URLs itself: they are passed to the model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_KEY = re.compile(r"^data:(image/[A-Za-z0-9.+*-]+);(path|url|base64)$")
_BASE64 = re.compile(r"^([A-Za-z0-9+/]{4})*(([A-Za-z0-9+/]{2})*(==|[A-Za-z0-9+/]=)?)?$")
ROOTS_ENV = "PFKIT_IMAGE_ROOTS"
PRIVATE_URLS_ENV = "PFKIT_ALLOW_PRIVATE_IMAGE_URLS"
_SUFFIX_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                "webp": "image/webp", "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff",
                "ico": "image/x-icon"}
_MIME_EXTENSION = {"image/jpeg": "jpg", "image/x-icon": "ico", "image/*": None}


class ImageInputError(ValueError):
    """An image input that cannot (or may not) be read; the message says why."""


class PFBytes(bytes):
    """Bytes with a mime type (``promptflow.contracts.multimedia.PFBytes``)."""

    def __new__(cls, value: bytes, *args: Any, **kwargs: Any) -> PFBytes:
        return super().__new__(cls, value)

    def __init__(self, value: bytes, mime_type: str, source_url: str | None = None) -> None:
        super().__init__()
        self._hash = hashlib.sha1(value).hexdigest()[:8]
        self._mime_type = mime_type.lower()
        self._source_url = source_url

    @property
    def source_url(self) -> str | None:
        return self._source_url

    def to_base64(self, with_type: bool = False) -> str:
        data = base64.b64encode(self).decode("utf-8")
        return f"data:{self._mime_type};base64,{data}" if with_type else data


def sniff_mime(data: bytes) -> str | None:
    """The image type from the first bytes (what promptflow's ``filetype`` guess gives for the
    common formats), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "image/x-icon"
    return None


class Image(PFBytes):
    """An image (``promptflow.contracts.multimedia.Image``). Its text in a template is
    ``Image(<hash>)``, which the chat parser turns into an ``image_url`` part."""

    def __init__(self, value: bytes, mime_type: str | None = None,
                 source_url: str | None = None) -> None:
        if mime_type is None:
            mime_type = sniff_mime(bytes(value[:16])) or "image/*"
        super().__init__(value, mime_type, source_url)

    def __str__(self) -> str:
        return f"Image({self._hash})"

    def __repr__(self) -> str:
        return f"Image({self._hash})"

    def serialize(self, encoder: Any = None) -> Any:
        return str(self) if encoder is None else encoder(self)

    @property
    def url(self) -> str:
        """What the model gets: the source URL (checked like an input URL: an image a tool
        made may not point the model at a private address), else a ``data:`` URL."""
        if self._source_url:
            return check_image_url(self._source_url)
        return self.to_base64(with_type=True)

    def to_dict(self) -> dict[str, str]:
        """The base64 form of the image (``{"data:image/png;base64": "..."}``)."""
        if self._source_url:
            return {f"data:{self._mime_type};url": self._source_url}
        return {f"data:{self._mime_type};base64": self.to_base64()}


def extension_for(mime_type: str) -> str | None:
    if mime_type in _MIME_EXTENSION:
        return _MIME_EXTENSION[mime_type]
    kind = mime_type.partition("/")[2]
    return kind or None


# -- the path and URL policy ---------------------------------------------------------------------


def allowed_roots(extra: Iterable[Path | str] = ()) -> list[Path]:
    """The folders image files may be read from: ``extra`` plus ``PFKIT_IMAGE_ROOTS``."""
    roots = [Path(p) for p in extra if p]
    roots += [Path(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(os.path.realpath(r)) for r in roots]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def check_image_path(raw: str, base_dir: Path | None, roots: list[Path]) -> Path:
    """The real path of an image file, refused unless it lies inside one of ``roots``."""
    path = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    real = Path(os.path.realpath(path))
    if not _inside(real, roots):
        where = ", ".join(str(r) for r in roots) or "none"
        raise ImageInputError(
            f"image path '{raw}' is outside the folders images may be read from ({where}); "
            f"put the image beside the data (or the flow), or add its folder to {ROOTS_ENV}")
    if not real.is_file():
        raise ImageInputError(f"image file '{raw}' does not exist")
    return real


def _blocked_address(host: str) -> str | None:
    import socket

    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None  # unresolvable here: the model provider resolves it, not us
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        if (address.is_loopback or address.is_link_local or address.is_private
                or address.is_reserved or address.is_multicast or address.is_unspecified):
            return str(address)
    return None


def check_image_url(url: str) -> str:
    """An http(s) URL on a public address (unless ``PFKIT_ALLOW_PRIVATE_IMAGE_URLS=1``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ImageInputError(f"image URL '{url}' is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImageInputError(f"image URL '{url}' must be an http(s) URL")
    if os.environ.get(PRIVATE_URLS_ENV, "").lower() in ("1", "true", "yes"):
        return url
    host = parts.hostname
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        blocked: str | None = host
    else:
        blocked = _blocked_address(host)
    if blocked:
        raise ImageInputError(
            f"image URL '{url}' points to a loopback, link-local or private address ({blocked}); "
            f"set {PRIVATE_URLS_ENV}=1 to allow such addresses")
    return url


# -- image inputs ----------------------------------------------------------------------------------


class CheckedImagePath(dict):
    """A data row's ``{"data:image/png;path": "/abs/a.png"}`` already checked by the data reader
    (inside the data file's folder): read as it is."""


class RefusedImagePath(dict):
    """A data row's image path refused by the data reader; reading it raises ``reason``."""

    def __init__(self, value: dict, reason: str) -> None:
        super().__init__(value)
        self.reason = reason


def _from_file(path: Path, mime: str | None) -> Image:
    """``mime`` from a dict key is kept as it is (``image/*`` too, as promptflow does); without
    one the bytes tell, then the file suffix."""
    data = path.read_bytes()
    if mime is None and sniff_mime(data[:16]) is None:
        mime = _SUFFIX_MIME.get(path.suffix.lower().lstrip("."))
    return Image(data, mime_type=mime)


def _from_base64(text: str, mime: str | None) -> Image:
    payload = text.split(",")[-1]
    if not _BASE64.match(payload):
        raise ImageInputError("invalid base64 image data")
    try:
        data = base64.b64decode(payload)
    except (binascii.Error, ValueError):
        raise ImageInputError("invalid base64 image data") from None
    return Image(data, mime_type=mime)


def _from_url(url: str, mime: str | None) -> Image:
    check_image_url(url)
    image = Image(b"", mime_type=mime or "image/*", source_url=url)
    image._hash = hashlib.sha1(url.encode()).hexdigest()[:8]  # distinct text per URL
    return image


def to_image(value: Any, base_dir: Path | None = None, roots: Iterable[Path | str] | None = None
             ) -> Any:
    """An image from any of promptflow's forms. A path must resolve inside ``roots`` (default:
    ``base_dir``) or ``PFKIT_IMAGE_ROOTS``. Raises :class:`ImageInputError`."""
    if isinstance(value, PFBytes):
        return value
    if isinstance(value, RefusedImagePath):
        raise ImageInputError(value.reason)
    folders = allowed_roots(roots if roots is not None else ([base_dir] if base_dir else []))
    if isinstance(value, dict):
        if len(value) != 1:
            raise ImageInputError('an image is a dict with one key like "data:image/png;path"')
        key, item = next(iter(value.items()))
        match = _KEY.match(str(key))
        if not match or not isinstance(item, str):
            raise ImageInputError(
                'an image is a dict like {"data:image/<type>;path|base64|url": "<value>"}, '
                f"got key {str(key)[:60]!r}")
        mime, kind = match.groups()
        if kind == "url":
            return _from_url(item, mime)
        if kind == "base64":
            return _from_base64(item, mime)
        if isinstance(value, CheckedImagePath):
            return _from_file(Path(item), mime)
        return _from_file(check_image_path(item, base_dir, folders), mime)
    if isinstance(value, str):
        if not value:
            raise ImageInputError("the image input is empty")
        if value.startswith("data:image/") and "," in value:
            return _from_base64(value, None)
        if value.lower().startswith(("http://", "https://")) or re.match(r"^[a-zA-Z][\w+.-]*://", value):
            return _from_url(value, None)
        if _BASE64.match(value) and len(value) >= 16 and not Path(value).suffix:
            return _from_base64(value, None)
        return _from_file(check_image_path(value, base_dir, folders), None)
    raise ImageInputError(f"an image input must be a string or a dict, not {type(value).__name__}")


def find_images(value: Any, found: dict[str, Image] | None = None) -> dict[str, Image]:
    """Every Image inside a value (dicts and lists searched), by its text."""
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


def load_nested_images(value: Any, base_dir: Path | None, roots: Iterable[Path | str] | None = None
                       ) -> Any:
    """Image dicts inside list/object inputs become Images (promptflow loads them too)."""
    if isinstance(value, list):
        return [load_nested_images(v, base_dir, roots) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and _KEY.match(str(next(iter(value)))):
            return to_image(value, base_dir, roots)
        return {k: load_nested_images(v, base_dir, roots) for k, v in value.items()}
    return value


def persist_images(value: Any, folder: Path, relative_to: Path | None = None) -> Any:
    """``value`` with every Image replaced by promptflow's file reference: an image with a source
    URL by ``{"data:<mime>;url": url}``, others saved into ``folder`` as ``<uuid>.<ext>`` and
    referenced by ``{"data:<mime>;path": "<path relative to relative_to>"}``."""
    import uuid

    if isinstance(value, Image):
        if value.source_url:
            return {f"data:{value._mime_type};url": value.source_url}
        ext = extension_for(value._mime_type)
        name = str(uuid.uuid4()) + (f".{ext}" if ext else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(bytes(value))
        target = folder / name
        shown = os.path.relpath(target, relative_to) if relative_to else str(target)
        return {f"data:{value._mime_type};path": Path(shown).as_posix()}
    if isinstance(value, dict):
        return {k: persist_images(v, folder, relative_to) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [persist_images(v, folder, relative_to) for v in value]
    return value


def has_images(value: Any) -> bool:
    if isinstance(value, PFBytes):
        return True
    if isinstance(value, dict):
        return any(has_images(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_images(v) for v in value)
    return False


def flow_test_outputs(flow_dir: Path, outputs: Any) -> tuple[Any, Any]:
    """What ``flow test`` writes and prints for outputs holding images, as promptflow does:
    ``.promptflow/flow.output.json`` references copies in ``.promptflow/intermediate/`` by paths
    relative to the flow folder; the printed outputs reference ``.promptflow/output/`` copies by
    absolute path. Outputs without images are returned unchanged (twice)."""
    if not has_images(outputs):
        return outputs, outputs
    folder = flow_dir / ".promptflow"
    try:
        saved = persist_images(outputs, folder / "intermediate", flow_dir)
        printed = persist_images(outputs, Path(os.path.abspath(folder / "output")))
    except OSError:  # a read-only flow folder: images shown by their text
        return outputs, outputs
    return saved, printed


def json_default(value: Any) -> Any:
    """``json.dumps`` default for records: an image keeps its data (``{"data:image/png;base64":
    ...}``, or its URL), so it can feed a later run; other odd values become their ``repr``."""
    if isinstance(value, Image):
        return value.to_dict()
    if isinstance(value, PFBytes):
        return {f"data:{value._mime_type};base64": value.to_base64()}
    return repr(value)


def contains_image_dict(value: Any, depth: int = 16) -> bool:
    """Whether a list/object input holds an image dict (looked for ``depth`` levels down)."""
    if depth <= 0:
        return False
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(next(iter(value)), str) and _KEY.match(next(iter(value))):
            return True
        return any(contains_image_dict(v, depth - 1) for v in value.values())
    if isinstance(value, list):
        return any(contains_image_dict(v, depth - 1) for v in value)
    return False


_BASE64_KEY = re.compile(r"^data:(image/[A-Za-z0-9.+*-]+);base64$")


def images_to_files(value: Any, folder: Path) -> Any:
    """A record's image dicts (``{"data:image/png;base64": ...}``) saved as files in ``folder``
    and referenced as promptflow's run outputs do: ``{"data:image/png;path": "<name>.png"}``,
    the path relative to ``folder``. Files are named by content, so writing twice is harmless."""
    if isinstance(value, list):
        return [images_to_files(v, folder) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        key, data = next(iter(value.items()))
        match = _BASE64_KEY.match(str(key))
        if match and isinstance(data, str):
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                return value
            mime = match.group(1)
            ext = extension_for(mime)
            name = hashlib.sha1(raw).hexdigest()[:16] + (f".{ext}" if ext else "")
            target = folder / name
            if not target.exists():
                target.write_bytes(raw)
            return {f"data:{mime};path": name}
    return {k: images_to_files(v, folder) for k, v in value.items()}
