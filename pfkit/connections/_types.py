"""Connection objects as tools receive them (promptflow-compatible class names and fields)."""

from __future__ import annotations

from typing import Any


class _Connection:
    """Base: a named bag of configs and secrets. ``repr`` never shows secret values."""

    TYPE = "connection"
    SECRET_FIELDS: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, **fields: Any) -> None:
        self.name = name
        for key, value in fields.items():
            setattr(self, key, value)

    def _fields(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "name"}

    def __repr__(self) -> str:
        shown = {k: ("******" if k in self.SECRET_FIELDS else v) for k, v in self._fields().items()}
        return f"{type(self).__name__}(name={self.name!r}, {shown})"


class OpenAIConnection(_Connection):
    TYPE = "open_ai"
    SECRET_FIELDS = ("api_key",)

    def __init__(self, api_key: str | None = None, organization: str | None = None,
                 base_url: str | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, api_key=api_key, organization=organization,
                         base_url=base_url, **kwargs)


class AzureOpenAIConnection(_Connection):
    TYPE = "azure_open_ai"
    SECRET_FIELDS = ("api_key",)

    def __init__(self, api_key: str | None = None, api_base: str | None = None,
                 api_type: str = "azure", api_version: str = "2024-02-01",
                 name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, api_key=api_key, api_base=api_base, api_type=api_type,
                         api_version=api_version, **kwargs)


class ServerlessConnection(_Connection):
    TYPE = "serverless"
    SECRET_FIELDS = ("api_key",)

    def __init__(self, api_key: str | None = None, api_base: str | None = None,
                 name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, api_key=api_key, api_base=api_base, **kwargs)


class CustomConnection(_Connection):
    """``configs`` and ``secrets`` dicts with dict-like and attribute access to both."""

    TYPE = "custom"

    def __init__(self, configs: dict | None = None, secrets: dict | None = None,
                 name: str | None = None, **kwargs: Any) -> None:
        self.name = name
        self.configs = dict(configs or {})
        self.secrets = dict(secrets or {})
        self.configs.update(kwargs)

    def __getitem__(self, key: str) -> Any:
        if key in self.secrets:
            return self.secrets[key]
        return self.configs[key]

    def __contains__(self, key: str) -> bool:
        return key in self.secrets or key in self.configs

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, key: str) -> Any:
        if key in ("configs", "secrets", "name"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        return (f"CustomConnection(name={self.name!r}, configs={self.configs}, "
                f"secrets={ {k: '******' for k in self.secrets} })")


class CustomStrongTypeConnection(CustomConnection):
    """Base for user connection classes with typed fields."""


CONNECTION_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (OpenAIConnection, AzureOpenAIConnection, ServerlessConnection, CustomConnection,
                CustomStrongTypeConnection)
}


def is_connection_type(annotation: Any) -> bool:
    """An annotation naming a connection class (pfkit's, promptflow's or a user subclass)."""
    return isinstance(annotation, type) and annotation.__name__.endswith("Connection") and (
        issubclass(annotation, _Connection) or annotation.__module__.startswith("promptflow")
    )
