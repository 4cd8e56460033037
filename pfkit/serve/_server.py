"""Running the app with uvicorn: one process, or several workers that each load the flow once.

The workers are uvicorn's (``workers=N``): each imports :func:`worker_app`, which reads the
serving settings from ``$PFKIT_SERVE_CONFIG`` (set by :func:`serve`). Shutdown (SIGTERM, Ctrl-C)
stops accepting connections and finishes the requests in flight (up to ``graceful_timeout``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError

CONFIG_ENV = "PFKIT_SERVE_CONFIG"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _settings(source: str | Path, *, variant: str | None, connections: Mapping[str, str] | None,
              environment: Mapping[str, str] | None, api_keys_file: str | Path | None,
              timeout: float, max_body_bytes: int, feedback_file: str | Path | None,
              allow_outside_paths: bool) -> dict[str, Any]:
    return {"source": str(Path(source).expanduser().resolve()), "variant": variant,
            "connections": dict(connections or {}), "environment": dict(environment or {}),
            "api_keys_file": str(api_keys_file) if api_keys_file else None,
            "timeout": timeout, "max_body_bytes": max_body_bytes,
            "feedback_file": str(feedback_file) if feedback_file else None,
            "allow_outside_paths": allow_outside_paths}


def _app_from(settings: Mapping[str, Any]) -> Any:
    """The app of a process that serves this one flow (so the flow's context stays applied
    between requests: ``resident``)."""
    from ._app import app

    return app(settings["source"], resident=True, variant=settings.get("variant"),
               connections=settings.get("connections"), environment=settings.get("environment"),
               api_keys_file=settings.get("api_keys_file"), timeout=settings["timeout"],
               max_body_bytes=settings["max_body_bytes"],
               feedback_file=settings.get("feedback_file"),
               allow_outside_paths=settings.get("allow_outside_paths", False))


def worker_app() -> Any:
    """The app of one uvicorn worker (``uvicorn --factory pfkit.serve._server:worker_app``)."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"${CONFIG_ENV} is not set: start the server with pfkit flow serve")
    from .._runtime import claim_process

    claim_process()  # a worker process pfkit flow serve started
    return _app_from(json.loads(raw))


def serve(source: str | Path, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          variant: str | None = None, connections: Mapping[str, str] | None = None,
          environment: Mapping[str, str] | None = None,
          api_keys_file: str | Path | None = None, timeout: float = 300.0,
          max_body_bytes: int = 10 * 1024 * 1024, feedback_file: str | Path | None = None,
          allow_outside_paths: bool = False, graceful_timeout: float | None = None,
          access_log: bool = False, log_level: str = "info",
          announce: Callable[[str], None] | None = None) -> None:
    """Serve a flow until interrupted (``pfkit flow serve``). The flow is loaded (and checked)
    here first, so a broken flow fails before the port opens."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("serving needs the serve extra (starlette, uvicorn, prometheus-client)",
                        code="MissingDependency",
                        hint="pip install 'pfkit[serve]'") from None
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}", code="UsageError")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0..65535, got {port}", code="UsageError")
    settings = _settings(source, variant=variant, connections=connections,
                         environment=environment, api_keys_file=api_keys_file, timeout=timeout,
                         max_body_bytes=max_body_bytes, feedback_file=feedback_file,
                         allow_outside_paths=allow_outside_paths)
    application = _app_from(settings)  # loads the flow: errors surface before the port opens
    server = application.state.pfkit
    say = announce or (lambda text: print(text, file=sys.stderr, flush=True))
    if host not in LOOPBACK and not server.options.api_keys:
        say(f"pfkit: warning: serving on {host} without API keys: anyone who can reach this "
            "address can call the flow (set PFKIT_API_KEYS or --api-keys-file)")
    shown = f"[{host}]" if ":" in host else host
    say(f"pfkit: serving flow '{server.flow.name}' on http://{shown}:{port} with {workers} "
        f"worker{'s' if workers > 1 else ''} (docs: /docs, OpenAPI: /swagger.json"
        f"{', API keys required' if server.options.api_keys else ''})")
    options: dict[str, Any] = dict(host=host, port=port, log_level=log_level,
                                   access_log=access_log, proxy_headers=False,
                                   server_header=False,
                                   timeout_graceful_shutdown=graceful_timeout or timeout)
    if workers == 1:
        uvicorn.run(application, **options)
        return
    os.environ[CONFIG_ENV] = json.dumps(settings)
    uvicorn.run("pfkit.serve._server:worker_app", factory=True, workers=workers, **options)


__all__ = ["CONFIG_ENV", "serve", "worker_app"]
