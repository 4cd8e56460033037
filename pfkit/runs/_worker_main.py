"""The worker process of :class:`~pfkit.runs._workers.WorkerRunner`.

Started by the parent as ``python -c "from pfkit.runs._worker_main import main; main()"`` with
pipes on stdin and stdout. It binds the flow once, then runs the lines it is sent concurrently
on its own event loop and sends their records back (encoded by the same
:func:`~pfkit.runs._runner.finished_line` as the in-process runner). It never writes to the run
folder: the parent writes every record.

The protocol pipes are moved off file descriptors 0 and 1 at once, so a tool that prints or
reads stdin cannot corrupt them (its prints go to stderr). The worker ignores Ctrl-C (the
parent decides when workers stop) and exits as soon as the parent is gone: end of file on its
pipe, or a changed parent pid (checked by a thread, so a tool holding the event loop does not
delay it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

from .. import _runtime
from . import _worker_protocol as wire

PARENT_CHECK_EVERY = 0.25  # seconds


def _take_protocol_fds() -> tuple[int, int]:
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # prints of tools go to stderr
    return proto_in, proto_out


def _watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_EVERY)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="pfkit-parent-watch", daemon=True).start()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in, proto_out = _take_protocol_fds()
    hello = wire.read_frame(proto_in)
    if not hello or hello[0] != "hello":
        os._exit(2)
    info = hello[1]
    _watch_parent(info["parent_pid"])
    if os.getppid() != info["parent_pid"]:
        os._exit(3)
    for entry in info["sys_path"]:  # so the parent's importable callables unpickle here
        if entry not in sys.path:
            sys.path.append(entry)
    from .. import _secrets

    _secrets.register(*info["secrets"])
    try:
        init = wire.read_frame(proto_in)
    except Exception as exc:  # noqa: BLE001 - e.g. a models factory that does not import here
        _send_load_error(proto_out, exc)
        os._exit(1)
    if not init or init[0] != "init":
        os._exit(2)
    _, spec, concurrency, timeout, slot, workers, outputs = init
    _share_connection_limits(slot, workers)
    _runtime.claim_process()
    code = asyncio.run(_serve(spec, concurrency, timeout, proto_in, proto_out, outputs))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _send_load_error(proto_out: int, exc: BaseException) -> None:
    from .._secrets import scrub_value
    from ..errors import error_dict

    try:
        data = scrub_value(error_dict(exc))
        wire.write_all(proto_out, wire.frame(("load_error", data)))
    except OSError:
        pass


def _share(value: int | None, slot: int, workers: int) -> int | None:
    if not value:
        return value
    base, extra = divmod(int(value), workers)
    return max(1, base + (1 if slot < extra else 0))


def _share_connection_limits(slot: int, workers: int) -> None:
    """One budget per connection for the whole run: each of ``workers`` processes gets its
    share of a connection's ``max_concurrency``, ``requests_per_minute`` and
    ``tokens_per_minute`` (at least 1 of each), so together they stay within the limits."""
    if workers <= 1:
        return
    from ..providers import _limits, _registry

    read = _registry.options_of

    def options_of(conn: Any) -> Any:
        options, limits = read(conn)
        return options, _limits.Limits(
            max_concurrency=_share(limits.max_concurrency, slot, workers),
            requests_per_minute=_share(limits.requests_per_minute, slot, workers),
            tokens_per_minute=_share(limits.tokens_per_minute, slot, workers))

    _registry.options_of = options_of


def _load(spec: Any) -> tuple[Any, Any]:
    """The flow, bound once as the parent bound it (the same loader, the session's models for
    the run's cache mode and cassette), with the run's extra environment; and the model layer
    whose cache counters and recorded keys go back to the parent at the end."""
    from ..providers._lazy import CASSETTE_NAME
    from ..spec import resolve_flow_file

    flow_file = resolve_flow_file(spec.flow)
    cassette = spec.cassette or flow_file.parent / CASSETTE_NAME
    layer = None
    try:
        from ..engine import load_executable
        from ..session import Session
    except ImportError:  # pragma: no cover - an older engine
        from .._flows import load_bound_flow as load_executable
        from ..providers._lazy import LazyModelSession

        def new_layer() -> Any:
            return LazyModelSession(spec.cache, cassette)
    else:
        def new_layer() -> Any:
            return Session.default().model_layer(spec.cache, cassette)
    if spec.models is not None:
        models, connections = spec.models()
    else:
        layer = new_layer()
        models, connections = layer, layer.connection
    flow = load_executable(flow_file, variant=spec.variant, models=models,
                           connections=connections,
                           connection_overrides=dict(spec.connection_overrides),
                           **({"init": dict(spec.init)} if getattr(spec, "init", None) else {}))
    if spec.environment:
        with_environment = getattr(flow, "with_environment", None)
        if callable(with_environment):
            flow = with_environment(dict(spec.environment))
        else:
            flow.environment = {**flow.environment, **spec.environment}
    return flow, layer


def _flow_scope(flow: Any) -> Any:
    """Around a worker's lines: the process exists for this one flow, so the flow's folder
    and environment stay applied from the first line to the last (``engine.resident``) instead
    of being switched in and out around every line. (A bare bound flow of an older engine gets
    them for the whole batch the old way.)"""
    from contextlib import ExitStack

    stack = ExitStack()
    if hasattr(flow, "arun"):
        from ..engine import resident

        stack.enter_context(resident(flow))
    elif getattr(flow, "working_dir", None) is not None:
        from .._flows import flow_environment
        from ..engine import working_directory

        stack.enter_context(working_directory(flow.working_dir))
        stack.enter_context(flow_environment(flow))
    return stack


class _Reader(asyncio.Protocol):
    def __init__(self, on_message: Any) -> None:
        self.buffer = wire.FrameBuffer()
        self.on_message = on_message

    def data_received(self, data: bytes) -> None:
        for message in self.buffer.feed(data):
            self.on_message(message)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_message(None)


async def _serve(spec: Any, concurrency: int, timeout: float | None, proto_in: int,
                 proto_out: int, outputs: bool = True) -> int:
    from ._runner import InProcessRunner, internal_failure

    try:
        flow, session = _load(spec)
        runner = InProcessRunner(flow, concurrency=concurrency, timeout=timeout,
                                 outputs=outputs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        _send_load_error(proto_out, exc)
        return 1

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    finished: list[tuple] = []
    flush_pending = False
    stopping = False
    low_water = [runner.concurrency, 16]

    def send(message: Any) -> None:
        try:
            wire.write_all(proto_out, wire.frame(message))
        except OSError:  # the parent is gone
            os._exit(3)

    def flush() -> None:
        nonlocal flush_pending
        flush_pending = False
        if finished:
            batch = finished[:]
            finished.clear()
            try:
                data = wire.frame(("done", batch))
            except Exception:  # noqa: BLE001 - one odd entry must not lose the others
                data = wire.frame(("done", [wire.sendable(entry) for entry in batch]))
            try:
                wire.write_all(proto_out, data)
            except OSError:  # the parent is gone
                os._exit(3)

    def on_message(message: Any) -> None:
        nonlocal stopping
        if message is None:
            if not stopping:
                os._exit(3)  # end of file without "stop": the parent is gone
            return
        kind = message[0]
        if kind == "lines":
            lines = message[1]
            for item in lines:
                queue.put_nowait(item)
            # flush when no more than a batch is left to run, or a batch of results is ready
            low_water[:] = [max(runner.concurrency, len(lines)), max(16, len(lines))]
        elif kind == "secrets":  # registered by the parent after this worker started
            from .. import _secrets

            _secrets.register(*message[1])
        elif kind == "stop":
            stopping = True
            for _ in range(runner.concurrency):
                queue.put_nowait(None)

    async def work() -> None:
        nonlocal flush_pending
        done = 0
        while True:
            item = await queue.get()
            if item is None:
                return
            line_number, inputs = item
            try:
                result = await runner._run_line(line_number, inputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an internal error fails one line
                result = internal_failure(line_number, inputs, exc)
            finished.append(wire.encode_line(runner._finish(result)))
            # Results go back at once when this worker is about to need more lines (and
            # always for slow lines, whose queue is short); quick lines go back in frames of
            # about one batch, so that each message wakes the parent for many lines.
            if not flush_pending and (queue.qsize() <= low_water[0]
                                      or len(finished) >= low_water[1]):
                flush_pending = True
                loop.call_soon(flush)
            done += 1
            if done % 16 == 0:
                await asyncio.sleep(0)

    with _flow_scope(flow):
        await loop.connect_read_pipe(lambda: _Reader(on_message),
                                     os.fdopen(proto_in, "rb", buffering=0))
        send(("ready", os.getpid()))
        await asyncio.gather(*(work() for _ in range(runner.concurrency)))
        flush()
    stats: dict[str, Any] = {"cache_stats": {}, "cache_keys": []}
    if session is not None:  # the model layer; its cassette is the parent's to write
        stats["cache_stats"] = dict(session.stats)
        caching = getattr(session, "_cache_session", None) or getattr(session, "_session", None)
        cache = getattr(caching, "cache", None)
        if cache is not None:
            stats["cache_keys"] = cache.keys_used()
            cache.close()  # writes pending hit counts; the parent writes any cassette
    provider = sys.modules.get("pfkit.providers._openai")  # only if a model was used
    if provider is not None:
        try:
            await provider.close_loop_clients()
        except Exception:  # noqa: BLE001 - closing is best effort; the process ends anyway
            pass
    send(("stats", stats))
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
