"""``model.configuration`` of a prompty -> a pfkit model (the provider layer: cached, limited and
observed like an llm node's).

Spellings:

* ``connection: NAME`` (any ``type``): the pfkit connection ``NAME`` (``pfkit connection
  create``); ``type: local`` or ``connection: local``: pfkit's embedded local model;
* ``type: openai`` with ``api_key``, ``base_url``, ``organization``, ``model``;
* ``type: azure_openai`` with ``azure_endpoint``, ``api_key``, ``api_version``,
  ``azure_deployment``;
* an empty configuration: ``AZURE_OPENAI_ENDPOINT`` / ``AZURE_OPENAI_API_KEY`` /
  ``OPENAI_API_VERSION`` when set, else ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``.

``${env:VAR}`` values are resolved when the file is read; keys are registered as secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import UserError

LOCAL = "local"


def config_type(configuration: Mapping[str, Any]) -> str:
    ctype = configuration.get("type")
    if ctype:
        return str(ctype)
    if configuration.get("connection") == LOCAL:
        return LOCAL
    if configuration.get("azure_endpoint") or configuration.get("azure_deployment"):
        return "azure_openai"
    if not configuration.get("connection") and os.environ.get("AZURE_OPENAI_ENDPOINT") and \
            not configuration.get("base_url"):
        return "azure_openai"
    return "openai"


def model_name(configuration: Mapping[str, Any]) -> str | None:
    return configuration.get("azure_deployment") or configuration.get("model") or \
        configuration.get("deployment_name")


def _wrap_like(resolver: Any) -> Any:
    """The cache wrapper of a session's model layer, when ``resolver`` is one."""
    caching = getattr(resolver, "_caching", None)
    if not callable(caching):
        return None
    try:
        return caching().registry.wrap
    except Exception:  # noqa: BLE001 - no cache: the model as it is
        return None


def resolve_model(configuration: Mapping[str, Any], resolver: Any = None, *,
                  where: str = "") -> Any:
    """The model for a prompty's configuration. ``resolver(name, node)`` resolves connection
    names (a flow's models, a session's model layer); without one, the default session's."""
    from ..providers._observed import observed

    ctype = config_type(configuration)
    name = configuration.get("connection")
    if ctype == LOCAL:
        name = LOCAL
    if resolver is None:
        from ..session import Session

        resolver = Session.default().model_layer()
    if name:
        try:
            return resolver(str(name), None)
        except UserError as exc:
            raise type(exc)(f"{where}model.configuration.connection '{name}': {exc.message}",
                            code=exc.code, hint=exc.hint, location=exc.location) from None
    from ..connections._types import AzureOpenAIConnection, OpenAIConnection
    from ..providers._registry import model_from_connection

    if ctype == "azure_openai":
        endpoint = configuration.get("azure_endpoint") or os.environ.get("AZURE_OPENAI_ENDPOINT")
        key = configuration.get("api_key") or os.environ.get("AZURE_OPENAI_API_KEY")
        version = configuration.get("api_version") or os.environ.get("OPENAI_API_VERSION") \
            or "2024-02-01"
        if not endpoint:
            raise UserError(f"{where}model.configuration has no azure_endpoint",
                            code="InvalidModelConfiguration",
                            hint="Add  azure_endpoint: ${env:AZURE_OPENAI_ENDPOINT}  or name a "
                                 "pfkit connection with  connection: NAME.")
        conn = AzureOpenAIConnection(api_base=endpoint, api_key=key, api_version=version,
                                     name="prompty-azure")
    else:
        key = configuration.get("api_key") or os.environ.get("OPENAI_API_KEY")
        base = configuration.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not key:
            raise UserError(f"{where}model.configuration has no api_key",
                            code="InvalidModelConfiguration",
                            hint="Add  api_key: ${env:OPENAI_API_KEY}  or name a pfkit "
                                 "connection with  connection: NAME (type: local for the "
                                 "embedded model).")
        conn = OpenAIConnection(api_key=key, base_url=base,
                                organization=configuration.get("organization"),
                                name="prompty-openai")
    model = model_from_connection(conn.name, conn)
    wrap = _wrap_like(resolver)
    if wrap is not None:
        model = wrap(model)
    return observed(model)
