"""Serving a flow as an HTTP endpoint, building a deployable folder, and the evaluation gate.

* :func:`app` - the ASGI app (Starlette) for a flow folder or an ExecutableFlow, to mount in
  your own service or run with uvicorn; :func:`serve` runs it (``pfkit flow serve``).
* :func:`build` - a Docker-ready folder (``pfkit flow build --format docker``).
* :func:`check_gate` - refuse a candidate whose evaluation misses a threshold or is significantly
  worse than a baseline (``pfkit gate``, ``--gate`` on build and serve).

starlette, uvicorn and prometheus-client (the ``serve`` extra) are imported only when used.
"""

from ._app import DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, FlowServer, ServedApp, app, format_event
from ._auth import ApiKeys
from ._build import build
from ._gate import (
    GateRefused,
    GateReport,
    Threshold,
    check_gate,
    enforce_gate,
    parse_threshold,
)
from ._server import serve

__all__ = ["ApiKeys", "DEFAULT_MAX_BODY", "DEFAULT_TIMEOUT", "FlowServer", "GateRefused",
           "GateReport", "ServedApp", "Threshold", "app", "build", "check_gate", "enforce_gate",
           "format_event", "parse_threshold", "serve"]
