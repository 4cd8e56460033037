"""Connection objects as tools receive them: promptflow's class names, fields and behaviour.

Every connection is a mapping of its ``configs`` and ``secrets`` (as in promptflow 1.18.5):
attribute access (``conn.api_key``), item access (``conn["api_key"]``), ``keys()``, iteration,
``dict(conn)`` / ``**conn`` (configs then secrets), ``conn.configs`` and ``conn.secrets``.
pfkit's own options (``max_concurrency``, ``timeout`` ...) are readable as attributes but are not
part of the mapping, so ``dict(conn)`` is what promptflow gives.

Every secret value is registered with :mod:`pfkit._secrets` the moment a connection object
holds it, so it is masked in every output, record and error, whoever raised it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _secrets

MASK = "******"


def _register(value: Any) -> None:
    if isinstance(value, str):
        _secrets.register(value)


class _Field:
    """A property stored in ``configs`` or ``secrets`` (promptflow's typed fields)."""

    def __init__(self, store: str, default: Any = None) -> None:
        self.store = store
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self.store).get(self.name, self.default)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.store == "secrets":
            _register(value)
        getattr(obj, self.store)[self.name] = value


class _Alias:
    """Another name for a field (``api_base`` / ``base_url``), readable and writable."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.target, value)


class _Connection:
    """Base: a named mapping of configs and secrets. ``repr`` never shows secret values.

    ``TYPE`` is the connection file's ``type:`` (``open_ai``); the instance's ``type`` is
    promptflow's name for it (``OpenAI``), as promptflow's objects have."""

    TYPE = "connection"
    PF_TYPE = "_NOT_SET"

    def __init__(self, name: str | None = None, module: str = "promptflow.connections",
                 configs: dict | None = None, secrets: dict | None = None,
                 **options: Any) -> None:
        self.name = name
        self.type = self.PF_TYPE
        self.class_name = f"{self.PF_TYPE}Connection"
        self.module = module
        self.configs = dict(configs or {})
        self.secrets = dict(secrets or {})
        for value in self.secrets.values():
            _register(value)
        # pfkit's options (limits, retries, timeout) and fields promptflow does not define
        self._options = dict(options)

    # -- promptflow's mapping behaviour ---------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self.configs) + list(self.secrets)

    def __getitem__(self, item: str) -> Any:
        if item in self.secrets:
            return self.secrets[item]
        if item in self.configs:
            return self.configs[item]
        raise KeyError(f"Key {item!r} not found in connection {self.name!r}.")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(set(self.keys()))

    def __contains__(self, item: object) -> bool:
        return item in self.secrets or item in self.configs

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in dict.fromkeys(self.keys())]

    def values(self) -> list[Any]:
        return [v for _, v in self.items()]

    def is_secret(self, item: str) -> bool:
        return item in self.secrets

    # -- pfkit's options ------------------------------------------------------------------------

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def __getattr__(self, item: str) -> Any:
        # only reached when normal lookup fails; guard the stores (copy/pickle look them up
        # before __init__ ran)
        if item.startswith("_") or item in ("configs", "secrets"):
            raise AttributeError(item)
        options = self.__dict__.get("_options") or {}
        if item in options:
            return options[item]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name')!r} has no "
                             f"attribute {item!r}")

    def _fields(self) -> dict[str, Any]:
        return {**self.configs, **self.secrets, **self._options}

    def __repr__(self) -> str:
        secrets = {k: MASK for k in self.secrets}
        return (f"{type(self).__name__}(name={self.name!r}, configs={self.configs}, "
                f"secrets={secrets})")

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and self.name == other.name  # type: ignore[attr-defined]
                and self.configs == other.configs and self.secrets == other.secrets)  # type: ignore[attr-defined]

    __hash__ = object.__hash__


class _StrongTypeConnection(_Connection):
    api_key = _Field("secrets")


class OpenAIConnection(_StrongTypeConnection):
    TYPE = "open_ai"
    PF_TYPE = "OpenAI"
    organization = _Field("configs")
    base_url = _Field("configs")
    api_base = _Alias("base_url")

    def __init__(self, api_key: str | None = None, organization: str | None = None,
                 base_url: str | None = None, **kwargs: Any) -> None:
        if base_url in ("", "_"):
            base_url = None  # promptflow's rule: empty means the default api.openai.com
        super().__init__(configs={"organization": organization, "base_url": base_url},
                         secrets={"api_key": api_key}, **kwargs)


class AzureOpenAIConnection(_StrongTypeConnection):
    TYPE = "azure_open_ai"
    PF_TYPE = "AzureOpenAI"
    api_base = _Field("configs")
    api_type = _Field("configs")
    api_version = _Field("configs")
    auth_mode = _Field("configs", "key")
    resource_id = _Field("configs")
    base_url = _Alias("api_base")

    def __init__(self, api_base: str | None = None, api_key: str | None = None,
                 api_type: str = "azure", api_version: str = "2024-02-01",
                 auth_mode: str = "key", resource_id: str | None = None, **kwargs: Any) -> None:
        configs = {"api_base": api_base, "api_type": api_type, "api_version": api_version,
                   "auth_mode": auth_mode, "resource_id": resource_id}
        secrets = {"api_key": api_key} if auth_mode == "key" else {}
        super().__init__(configs=configs, secrets=secrets, **kwargs)


class ServerlessConnection(_StrongTypeConnection):
    TYPE = "serverless"
    PF_TYPE = "Serverless"
    api_base = _Field("configs")
    base_url = _Alias("api_base")

    def __init__(self, api_key: str | None = None, api_base: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(configs={"api_base": api_base}, secrets={"api_key": api_key}, **kwargs)


class SerpConnection(_StrongTypeConnection):
    TYPE = "serp"
    PF_TYPE = "Serp"

    def __init__(self, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(secrets={"api_key": api_key}, **kwargs)


class CognitiveSearchConnection(_StrongTypeConnection):
    TYPE = "cognitive_search"
    PF_TYPE = "CognitiveSearch"
    api_base = _Field("configs")
    api_version = _Field("configs")

    def __init__(self, api_key: str | None = None, api_base: str | None = None,
                 api_version: str = "2023-11-01", **kwargs: Any) -> None:
        super().__init__(configs={"api_base": api_base, "api_version": api_version},
                         secrets={"api_key": api_key}, **kwargs)


class AzureContentSafetyConnection(_StrongTypeConnection):
    TYPE = "azure_content_safety"
    PF_TYPE = "AzureContentSafety"
    endpoint = _Field("configs")
    api_version = _Field("configs")
    api_type = _Field("configs")

    def __init__(self, api_key: str | None = None, endpoint: str | None = None,
                 api_version: str = "2023-10-01", api_type: str = "Content Safety",
                 **kwargs: Any) -> None:
        super().__init__(configs={"endpoint": endpoint, "api_version": api_version,
                                  "api_type": api_type}, secrets={"api_key": api_key}, **kwargs)


class FormRecognizerConnection(AzureContentSafetyConnection):
    TYPE = "form_recognizer"
    PF_TYPE = "FormRecognizer"

    def __init__(self, api_key: str | None = None, endpoint: str | None = None,
                 api_version: str = "2023-07-31", api_type: str = "Form Recognizer",
                 **kwargs: Any) -> None:
        super().__init__(api_key=api_key, endpoint=endpoint, api_version=api_version,
                         api_type=api_type, **kwargs)


class LocalConnection(_Connection):
    """pfkit's embedded model: ``model_path`` (a GGUF file) and ``n_ctx`` are optional."""

    TYPE = "local"
    PF_TYPE = "Local"
    model_path = _Field("configs")
    n_ctx = _Field("configs")

    def __init__(self, model_path: str | None = None, n_ctx: Any = None, **kwargs: Any) -> None:
        super().__init__(configs={"model_path": model_path, "n_ctx": n_ctx}, **kwargs)


class CustomConnection(_Connection):
    """``configs`` and ``secrets`` dicts; their keys are also attributes."""

    TYPE = "custom"
    PF_TYPE = "Custom"

    def __init__(self, secrets: dict | None = None, configs: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(secrets=secrets, configs=configs, **kwargs)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_") or item in ("configs", "secrets"):
            raise AttributeError(item)
        secrets = self.__dict__.get("secrets") or {}
        if item in secrets:
            return secrets[item]
        configs = self.__dict__.get("configs") or {}
        if item in configs:
            return configs[item]
        return super().__getattr__(item)

    def _convert_to_custom_strong_type(self, module: Any = None, to_class: Any = None) -> Any:
        """promptflow's conversion to a user's ``CustomStrongTypeConnection`` subclass."""
        cls = to_class
        if isinstance(to_class, str):
            import importlib

            mod = importlib.import_module(module) if isinstance(module, str) else module
            cls = getattr(mod, to_class)
        if not (isinstance(cls, type) and issubclass(cls, CustomStrongTypeConnection)):
            raise ValueError(f"cannot convert to {to_class!r}: not a CustomStrongTypeConnection")
        return cls(configs=dict(self.configs), secrets=dict(self.secrets), name=self.name)


def _is_secret_annotation(annotation: Any) -> bool:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return str(name).rsplit(".", 1)[-1] == "Secret"


def _strong_fields(cls: type) -> dict[str, bool]:
    """The annotated fields of a CustomStrongTypeConnection subclass: name -> is secret."""
    cached = cls.__dict__.get("_pfkit_fields")
    if cached is not None:
        return cached
    found: dict[str, bool] = {}
    for klass in reversed(cls.__mro__):
        if klass in _STRONG_BASES or not issubclass(klass, CustomStrongTypeConnection):
            continue
        for name, annotation in klass.__dict__.get("__annotations__", {}).items():
            found[name] = _is_secret_annotation(annotation)
    type.__setattr__(cls, "_pfkit_fields", found)
    return found


class CustomStrongTypeConnection(_Connection):
    """Base for user connection classes with typed fields::

        class MyConnection(CustomStrongTypeConnection):
            api_key: Secret
            api_url: str = "https://example.com"

    Fields annotated ``Secret`` live in ``secrets``, the others in ``configs``; an absent config
    falls back to the class default."""

    TYPE = "custom"
    PF_TYPE = "Custom"

    def __init__(self, secrets: dict | None = None, configs: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(secrets=secrets, configs=configs, **kwargs)
        self.custom_type = type(self).__name__

    def __getattribute__(self, item: str) -> Any:
        if not item.startswith("_"):
            fields = _strong_fields(type(self))
            if item in fields:
                store = object.__getattribute__(self, "secrets" if fields[item] else "configs")
                if item in store:
                    return store[item]
        return object.__getattribute__(self, item)

    def __setattr__(self, key: str, value: Any) -> None:
        fields = _strong_fields(type(self)) if not key.startswith("_") else {}
        if key in fields and "configs" in self.__dict__:
            if fields[key]:
                _register(value)
                self.secrets[key] = value
            else:
                self.configs[key] = value
            return
        object.__setattr__(self, key, value)


_STRONG_BASES = (CustomStrongTypeConnection,)

# promptflow's class name -> class, for `from promptflow.connections import ...`
CONNECTION_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (OpenAIConnection, AzureOpenAIConnection, ServerlessConnection, CustomConnection,
                CustomStrongTypeConnection, SerpConnection, CognitiveSearchConnection,
                AzureContentSafetyConnection, FormRecognizerConnection)
}


def is_connection_type(annotation: Any) -> bool:
    """An annotation naming a connection class (pfkit's, promptflow's or a user subclass)."""
    return isinstance(annotation, type) and annotation.__name__.endswith("Connection") and (
        issubclass(annotation, _Connection) or annotation.__module__.startswith("promptflow")
    )
