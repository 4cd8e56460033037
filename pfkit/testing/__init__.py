"""Public test helpers: fakes users can use in their own tests too.

* :class:`EchoModel`: an in-process model that answers with the request it got.
* :class:`TestServer`: an OpenAI-compatible HTTP server (echo answers by default) with
  scripted / rule-based responders, logprobs, latency and fault injection, for tests that go
  through the real ``openai`` client; :class:`TestServerProcess` runs it in a child process
  (for benchmarks, so the server does not share the GIL with the code being measured).

The server's parts: ``_app`` (the aiohttp application and routes), ``_openai_api`` (request
checks and OpenAI answer shapes), ``_logprobs``, ``_responders``, ``_faults``, ``_stats``
(counters and the request log), ``_server`` (:class:`TestServer`) and ``_process``.
aiohttp is imported only when a server starts.
"""

from ._echo import EchoModel
from ._faults import Fault, Faults
from ._process import TestServerProcess
from ._responders import Reply, Responder, RuleResponder, ScriptedResponder, echo_responder
from ._server import TestServer, is_loopback_host
from ._stats import Counters, RecordedRequest

__all__ = [
    "Counters",
    "EchoModel",
    "Fault",
    "Faults",
    "RecordedRequest",
    "Reply",
    "Responder",
    "RuleResponder",
    "ScriptedResponder",
    "TestServer",
    "TestServerProcess",
    "echo_responder",
    "is_loopback_host",
]
