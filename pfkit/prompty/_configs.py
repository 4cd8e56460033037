"""promptflow's model configuration objects (``promptflow.core.OpenAIModelConfiguration`` and
``AzureOpenAIModelConfiguration``): init values of flex flows and prompty overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


def _register(*values: Any) -> None:
    from .._secrets import register

    register(*values)


@dataclass
class OpenAIModelConfiguration:
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    organization: str | None = None
    connection: str | None = None
    type: str = "openai"

    def __post_init__(self) -> None:
        _register(self.api_key)

    @classmethod
    def from_connection(cls, connection: Any, model: str | None = None) -> OpenAIModelConfiguration:
        return cls(model=model, base_url=getattr(connection, "base_url", None),
                   api_key=getattr(connection, "api_key", None),
                   organization=getattr(connection, "organization", None))

    def to_configuration(self) -> dict[str, Any]:
        """The prompty ``model.configuration`` this object stands for."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __repr__(self) -> str:  # never the key
        return (f"OpenAIModelConfiguration(model={self.model!r}, base_url={self.base_url!r}, "
                f"connection={self.connection!r})")


@dataclass
class AzureOpenAIModelConfiguration:
    azure_deployment: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    api_key: str | None = None
    connection: str | None = None
    type: str = "azure_openai"

    def __post_init__(self) -> None:
        _register(self.api_key)

    @classmethod
    def from_connection(cls, connection: Any, azure_deployment: str | None = None
                        ) -> AzureOpenAIModelConfiguration:
        return cls(azure_deployment=azure_deployment,
                   azure_endpoint=getattr(connection, "api_base", None),
                   api_version=getattr(connection, "api_version", None),
                   api_key=getattr(connection, "api_key", None))

    def to_configuration(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __repr__(self) -> str:
        return (f"AzureOpenAIModelConfiguration(azure_deployment={self.azure_deployment!r}, "
                f"azure_endpoint={self.azure_endpoint!r}, connection={self.connection!r})")


for _cls in (OpenAIModelConfiguration, AzureOpenAIModelConfiguration):
    _cls.__module__ = "promptflow.core"
