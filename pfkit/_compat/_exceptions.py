"""``promptflow.exceptions`` and ``promptflow.tools.exception`` for tool scripts.

promptflow's exceptions take ``message=`` (or ``message_format=`` with fields) and keyword
arguments; here they are pfkit errors, so a tool raising one fails its node with that message.
The llm helpers raise pfkit's own template errors, which are re-exported under promptflow's
names (``JinjaTemplateError``, ``ChatAPIInvalidRole``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..errors import ExecutionError
from ..nodes import _llm, _templates


class ErrorTarget(str, Enum):
    EXECUTOR = "Executor"
    TOOL = "Tool"
    FLOW_EXECUTOR = "FlowExecutor"
    NODE_EXECUTOR = "NodeExecutor"
    UNKNOWN = "Unknown"


def _message(message: str | None, message_format: str | None, fields: dict[str, Any]) -> str:
    if message:
        return str(message)
    if message_format:
        try:
            return message_format.format(**fields)
        except (KeyError, IndexError, ValueError):
            return message_format
    return ""


class PromptflowException(ExecutionError):
    default_code = "SystemError"

    def __init__(self, message: str = "", message_format: str = "", target: Any = None,
                 module: str | None = None, **kwargs: Any) -> None:
        super().__init__(_message(message, message_format, kwargs) or type(self).__name__)
        self.target = target
        self.module = module
        self.message_format = message_format

    @property
    def message_parameters(self) -> dict[str, Any]:
        return {}


class UserErrorException(PromptflowException):
    category = "UserError"
    default_code = "UserError"


class SystemErrorException(PromptflowException):
    default_code = "SystemError"


class ValidationException(UserErrorException):
    pass


class ToolValidationError(UserErrorException):
    pass


class LLMError(UserErrorException):
    pass


class ChatAPIInvalidFunctions(ToolValidationError):
    pass


class ChatAPIInvalidTools(ToolValidationError):
    pass


class ChatAPIFunctionRoleInvalidFormat(ToolValidationError):
    pass


class ChatAPIToolRoleInvalidFormat(ToolValidationError):
    pass


class InvalidConnectionType(ToolValidationError):
    pass


class ParseConnectionError(ToolValidationError):
    pass


class ListDeploymentsError(UserErrorException):
    pass


class FunctionCallNotSupportedInStreamMode(UserErrorException):
    pass


class ExceedMaxRetryTimes(UserErrorException):
    pass


class WrappedOpenAIError(UserErrorException):
    pass


def public_names() -> dict[str, Any]:
    return {name: value for name, value in globals().items()
            if isinstance(value, type) and issubclass(value, (Exception, Enum))
            and not name.startswith("_") and name not in ("ExecutionError", "Enum")}


def tool_exceptions() -> dict[str, Any]:
    names = public_names()
    names["JinjaTemplateError"] = _templates.JinjaTemplateError
    names["ChatAPIInvalidRole"] = _templates.ChatAPIInvalidRole
    names["LLMParameterError"] = _llm.LLMParameterError
    return names

