"""pfkit's error hierarchy: one shape for the CLI, the server and the run store.

Two families:

* :class:`UserError` - the user can fix it (a bad flow file, bad inputs, bad data, a missing
  connection). It names the place (file and line, node, field, data row) and gives a hint.
* :class:`ExecutionError` - something failed while running (a node raised, a provider failed).
  In batch runs these become data on the failed line, not exceptions.

Every error serialises with :meth:`PfkitError.to_dict` to the same JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Location:
    """Where an error is: any subset of file, line, node, field and data row."""

    file: str | None = None
    line: int | None = None
    node: str | None = None
    field: str | None = None
    row: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.node:
            parts.append(f"node '{self.node}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        if self.row is not None:
            parts.append(f"row {self.row}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


class PfkitError(Exception):
    """Base of every error pfkit raises on purpose."""

    category = "SystemError"
    default_code = "PfkitError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: Location | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.location = location or Location()
        self.hint = hint

    def __str__(self) -> str:
        where = str(self.location)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" Hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "category": self.category,
            "code": self.code,
            "message": self.message,
        }
        location = self.location.to_dict()
        if location:
            data["location"] = location
        if self.hint:
            data["hint"] = self.hint
        return data


class UserError(PfkitError):
    """Something the user can fix; the message says where and how."""

    category = "UserError"
    default_code = "UserError"


class FlowValidationError(UserError):
    """The flow file is invalid. Raised before anything runs."""

    default_code = "InvalidFlow"


class InputError(UserError):
    """A flow input is missing or cannot be converted to its declared type."""

    default_code = "InputError"


class ExecutionError(PfkitError):
    """Something failed while a flow ran."""

    category = "ExecutionError"
    default_code = "ExecutionError"


class NodeExecutionError(ExecutionError):
    """A node raised. The message follows promptflow's wording so logs and records match:
    ``Execution failure in '<node>': (<ExceptionType>) <message>``."""

    default_code = "ToolExecutionError"

    def __init__(self, node: str, cause: BaseException) -> None:
        self.node = node
        self.cause = cause
        self.exception_type = type(cause).__name__
        cause_text = str(cause)
        if isinstance(cause, PfkitError):
            cause_text = cause.message
        message = f"Execution failure in '{node}': ({self.exception_type}) {cause_text}"
        super().__init__(message, location=Location(node=node))

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["exception_type"] = self.exception_type
        if isinstance(self.cause, PfkitError):
            data["cause"] = self.cause.to_dict()
        return data


class LineTimeoutError(ExecutionError):
    """A line ran past its timeout; it failed at its time and the run went on."""

    default_code = "LineExecutionTimeoutError"


class InternalLineError(ExecutionError):
    """A line hit an error inside pfkit (hostile data, an output pfkit cannot handle): the line
    failed with this error; the run went on."""

    category = "SystemError"
    default_code = "LineExecutionError"


class InvalidReferenceProperty(PfkitError):
    """A ``${node.output.path}`` reference does not fit the node's output."""

    category = "UserError"
    default_code = "InvalidReferenceProperty"


class FlowOutputError(PfkitError):
    """A flow output is not JSON-serialisable (promptflow's FlowOutputValueInvalid)."""

    category = "UserError"
    default_code = "FlowOutputValueInvalid"


def error_dict(exc: BaseException) -> dict[str, Any]:
    """The one JSON shape of an error, for any exception."""
    if isinstance(exc, PfkitError):
        return exc.to_dict()
    return {
        "category": "SystemError",
        "code": type(exc).__name__,
        "message": f"({type(exc).__name__}) {exc}",
    }


# Errors defined beside the code that raises them, importable from here too. Loaded on first
# access, so ``import pfkit.errors`` stays cheap and imports no provider, store or model code.
_ELSEWHERE = {
    "ReferenceSyntaxError": "pfkit.spec._references",
    "JinjaTemplateError": "pfkit.nodes._templates",
    "TemplateBudgetExceeded": "pfkit.nodes._templates",
    "ChatAPIInvalidRole": "pfkit.nodes._templates",
    "LLMParameterError": "pfkit.nodes._llm",
    "ProviderError": "pfkit.providers._openai",
    "ProviderUserError": "pfkit.providers._openai",
    "ReplayMissError": "pfkit.providers._caching_model",
    "LocalModelError": "pfkit.providers._local",
    "LocalModelUserError": "pfkit.providers._local",
    "LocalModelCrashed": "pfkit.providers._local_probe",
    "ConnectionTypeError": "pfkit.connections._check",
    "ConnectionError_": "pfkit.connections._store",
    "ConnectionSettingError": "pfkit.connections._validate",
    "DataError": "pfkit.data._errors",
    "LineInputError": "pfkit.data._errors",
    "RunNotFound": "pfkit.runs._store_api",
    "RunExists": "pfkit.runs._store_api",
    "InvalidRunName": "pfkit.runs._store_api",
    "StoreWriteError": "pfkit.runs._store_api",
    "RunCanceled": "pfkit.runs._api",
    "PromptyOutputError": "pfkit.prompty._prompty",
    "GateRefused": "pfkit.serve._gate",
}


def __getattr__(name: str) -> Any:
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pfkit.errors' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_ELSEWHERE])


__all__ = [
    "ExecutionError", "FlowOutputError", "FlowValidationError", "InputError", "InternalLineError",
    "InvalidReferenceProperty", "LineTimeoutError", "Location", "NodeExecutionError",
    "PfkitError", "UserError", "error_dict", *_ELSEWHERE,
]
