"""Public test helpers: fakes users can use in their own tests too.

* :class:`EchoModel`: an in-process model that answers with the request it got.
* :class:`TestServer`: an OpenAI-compatible HTTP server (echo answers by default) with
  scripted / rule-based responders, latency and fault injection, for tests that go through
  the real ``openai`` client; :class:`TestServerProcess` runs it in a child process (for
  benchmarks, so the server does not share the GIL with the code being measured).
"""

from ._echo import EchoModel
from ._server import (
    Counters,
    Fault,
    Faults,
    RecordedRequest,
    Reply,
    RuleResponder,
    ScriptedResponder,
    TestServer,
    TestServerProcess,
    echo_responder,
)

__all__ = [
    "Counters",
    "EchoModel",
    "Fault",
    "Faults",
    "RecordedRequest",
    "Reply",
    "RuleResponder",
    "ScriptedResponder",
    "TestServer",
    "TestServerProcess",
    "echo_responder",
]
