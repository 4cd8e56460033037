"""Running the lines of a batch: the LineRunner seam, and the in-process runner.

A runner takes ``(line_number, inputs or PfkitError)`` items and hands each finished line, as a
:class:`FinishedLine` (records already encoded), to a sink on the caller's event loop. The
in-process runner below runs lines as tasks on this loop; the worker-process runner
(``pfkit.runs._workers``) runs them in child processes. Both build records with
:func:`finished_line`, so both write identical records.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .._secrets import dumps_scrubbed, scrub, scrub_value
from ..engine import COMPLETED, FAILED, AggregationInputs, LineResult, execute_line
from ..errors import PfkitError

YIELD_EVERY = 16  # lines a worker runs before it yields to the event loop
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class FinishedLine:
    line_number: int
    status: str                         # Completed / Failed / Canceled
    record_json: str                    # the line record, JSON text, as written to the store
    node_json: dict[str, str]           # node name -> node record JSON text
    error: dict[str, Any] | None        # the line's error (scrubbed), None when Completed
    outputs: dict[str, Any]             # for --stream printing and in-memory consumers
    aggregation_values: dict[str, Any] | None   # what aggregation nodes read from this line
    usage: dict[str, Any] | None        # token usage summary (prompt/completion/total, by_model)


class LineRunner(Protocol):
    async def run(self, items: Iterator[tuple[int, dict[str, Any] | PfkitError]],
                  sink: Callable[[FinishedLine], None]) -> None:
        """Run every item; call sink(line) once per item, in completion order, on the
        caller's event loop. An item that is a PfkitError is a line that failed before it
        ran (bad row). Never raises for a failing line; an internal error inside a line is a
        failed line with its error. Cancellation (Ctrl-C) stops promptly; lines not sunk are
        simply not recorded (resume re-runs them)."""


def dumps(value: Any) -> str:
    """JSON for records: UTF-8 kept, NaN/Infinity as promptflow writes them, images as their
    base64 dict, other odd values repr'd."""
    return _encode_json(value)


def _odd_value(value: Any) -> Any:
    from ..nodes._images import json_default

    return json_default(value)


# json.dumps with these options builds an encoder per call; one encoder (stateless between
# calls) gives the same text
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=True, default=_odd_value).encode


def _usage_summary(usage: Any) -> dict[str, Any] | None:
    if not usage:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "by_model": {model: [p, c] for model, (p, c) in usage.by_model.items()}}


def _line_dict(result: LineResult, aggregation_values: dict[str, Any] | None,
               usage: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "line_number": result.line_number,
        "status": result.status,
        "inputs": result.inputs,
        "outputs": result.outputs,
        "error": result.error,
        "start_time": result.start_time,
        "end_time": result.end_time,
        "duration": result.duration,
        "nodes": {name: run.status for name, run in result.node_runs.items()},
    }
    if usage:
        record["usage"] = usage.to_dict(prices={})
    if aggregation_values is not None:
        record["aggregation_inputs"] = aggregation_values
    return record


def _node_dict(result: LineResult, name: str, run: Any) -> dict[str, Any]:
    return {"line_number": result.line_number, "status": run.status, "inputs": run.inputs,
            "output": run.output, "error": run.error, "duration": run.duration,
            **({"usage": run.usage.to_dict(prices={})} if run.usage else {})}


def _encode(value: Any) -> str:
    """Scrubbed JSON text of a record; raises when the value cannot be encoded (a value that
    contains itself, nesting too deep, an integer too long to print...)."""
    return dumps_scrubbed(value, dumps)


def _unwritable(what: str, exc: BaseException) -> dict[str, Any]:
    detail = scrub(f"{type(exc).__name__}: {exc}")[:2000]
    return {"code": "UnwritableRecord", "category": "SystemError",
            "message": f"the {what} cannot be written as JSON ({detail})",
            "hint": "Return plain JSON values (no value that contains itself, no nesting deeper "
                    "than a few hundred levels, no integers of thousands of digits)."}


def _minimal_line(line_number: int, error: dict[str, Any], start: float, end: float,
                  nodes: dict[str, str]) -> str:
    """A line record that can always be written: no inputs, no outputs, the error."""
    try:
        error_json = _encode(error)
        json.loads(error_json)
    except (ValueError, TypeError, RecursionError, OverflowError):
        error_json = dumps({"code": "UnwritableRecord", "message": "the line's error cannot be written"})
    return dumps({"line_number": line_number, "status": FAILED, "inputs": {}, "outputs": {},
                  "error": json.loads(error_json), "start_time": start, "end_time": end,
                  "duration": max(0.0, end - start), "nodes": nodes})


def finished_line(result: LineResult, aggregation_values: dict[str, Any] | None = None,
                  *, outputs: bool = True) -> FinishedLine:
    """The records of one engine line result, encoded (and scrubbed of secrets). A line whose
    record cannot be encoded becomes a failed line whose minimal record says why: the record
    of a line can always be written. ``outputs=False``: ``FinishedLine.outputs`` is left
    empty (its record holds them; for a sink that reads only records)."""
    usage = result.usage
    node_json: dict[str, str] = {}
    failure: dict[str, Any] | None = None
    for name, run in result.node_runs.items():
        try:
            node_json[name] = _encode(_node_dict(result, name, run))
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            failure = failure or _unwritable(f"record of node '{name}'", exc)
            failure.setdefault("location", {"node": name})
            node_json[name] = dumps({"line_number": result.line_number, "status": FAILED,
                                     "inputs": {}, "output": None,
                                     "error": _unwritable(f"record of node '{name}'", exc),
                                     "duration": run.duration})
    status, error, values = result.status, result.error, result.outputs
    record_json = ""
    if failure is None:
        try:
            record_json = _encode(_line_dict(result, aggregation_values, usage))
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            failure = _unwritable("line's record", exc)
    if failure is not None:
        if error is None:
            error = failure
        status, values, aggregation_values = FAILED, {}, None
        record_json = _minimal_line(result.line_number, error, result.start_time,
                                    result.end_time, {n: r.status for n, r in
                                                      result.node_runs.items()})
        error = json.loads(record_json)["error"]
    else:
        error = scrub_value(error) if error is not None else None
        try:
            values = scrub_value(values) if outputs else {}
        except RecursionError:
            values = {}
    return FinishedLine(result.line_number, status, record_json, node_json,
                        error if status != COMPLETED else None, values,
                        aggregation_values if status == COMPLETED else None,
                        _usage_summary(usage) if failure is None else _safe_usage(usage))


def _safe_usage(usage: Any) -> dict[str, Any] | None:
    try:
        return _usage_summary(usage)
    except Exception:  # noqa: BLE001 - usage is a summary; never let it lose the line
        return None


def internal_failure(line_number: int, inputs: Any, exc: BaseException) -> LineResult:
    """A line that stopped on an error of pfkit itself (or of Python: RecursionError,
    MemoryError): a failed line with the error, never a lost one."""
    now = time.time()
    if isinstance(exc, PfkitError):
        error = exc.to_dict()
    else:
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames)
        message = str(exc)
        if len(message) > 2000:
            message = message[:2000] + "..."
        error = {"code": "InternalError", "category": "SystemError",
                 "message": f"internal error while running line {line_number}: "
                            f"{type(exc).__name__}: {message}",
                 "exception": type(exc).__name__, "where": where,
                 "hint": "The line is recorded as failed; the run goes on. Please report this "
                         "with the line's data if it is not caused by the data itself."}
    safe_inputs = inputs if isinstance(inputs, dict) else {}
    return LineResult(line_number, FAILED, safe_inputs, {}, {}, error, now, now, exc)


def input_failure(line_number: int, exc: PfkitError) -> LineResult:
    now = time.time()
    return LineResult(line_number, FAILED, {}, {}, {}, exc.to_dict(), now, now, exc)


class InProcessRunner:
    """Lines as tasks on the caller's event loop: ``concurrency`` workers pull items from the
    shared iterator. A sink that raises (the store cannot write) stops the run: the error is
    raised after the other workers are cancelled."""

    def __init__(self, flow: Any, *, concurrency: int = DEFAULT_CONCURRENCY,
                 timeout: float | None = None, observers: Any = None,
                 outputs: bool = True) -> None:
        self.flow = flow
        self.outputs = outputs  # FinishedLine.outputs filled (False: the sink reads records)
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.observers = observers
        if hasattr(flow, "aggregation_collector"):  # an ExecutableFlow
            self._extractor = flow.aggregation_collector() if flow.has_aggregation else None
        else:  # a BoundFlow
            self._extractor = AggregationInputs(flow) if flow.aggregation_nodes else None

    async def _run_line(self, line_number: int, inputs: dict[str, Any]) -> LineResult:
        arun = getattr(self.flow, "arun", None)
        if arun is not None:
            return await arun(inputs, line_number=line_number, timeout=self.timeout,
                              observers=self.observers)
        return await execute_line(self.flow, inputs, line_number=line_number,
                                  timeout=self.timeout)

    def _finish(self, result: LineResult) -> FinishedLine:
        values = None
        if self._extractor is not None and result.status == COMPLETED:
            try:
                values = self._extractor.extract(result)
            except Exception as exc:  # noqa: BLE001 - becomes the line's error
                return finished_line(internal_failure(result.line_number, result.inputs, exc))
        try:
            return finished_line(result, values, outputs=self.outputs)
        except Exception as exc:  # noqa: BLE001 - the record of a line can always be written
            return finished_line(internal_failure(result.line_number, {}, exc))

    async def run(self, items: Iterator[tuple[int, dict[str, Any] | PfkitError]],
                  sink: Callable[[FinishedLine], None]) -> None:
        failed: list[BaseException] = []
        source = iter(items)

        def next_item() -> tuple[int, Any] | None:
            try:
                return next(source)
            except StopIteration:
                return None

        async def worker() -> None:
            done = 0
            while not failed:
                item = next_item()
                if item is None:
                    return
                line_number, value = item
                if isinstance(value, PfkitError):
                    result = input_failure(line_number, value)
                else:
                    try:
                        result = await self._run_line(line_number, value)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - an internal error fails one line
                        result = internal_failure(line_number, value, exc)
                sink(self._finish(result))
                done += 1
                if done % YIELD_EVERY == 0:
                    # Lines of quick sync tools never suspend: hand the loop back now and then,
                    # so the other workers, signal handlers and timer clean-up get their turn.
                    await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(worker()) for _ in range(self.concurrency)]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        failed.append(task.exception())
                if failed:
                    break
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            raise failed[0]


__all__ = ["FinishedLine", "InProcessRunner", "LineRunner", "finished_line", "internal_failure"]
