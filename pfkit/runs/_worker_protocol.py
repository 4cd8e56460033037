"""The wire between a run and its worker processes: length-prefixed pickle frames over pipes.

Each frame is a 4-byte big-endian length and a pickle. Both ends are pfkit of the same
installation (the parent starts the child with its own interpreter), so pickle is the format:
it is the fastest for the dicts of inputs and records that cross, and it carries pfkit's own
values (images) as they are. Only the parent and its own children speak it; nothing else
reads or writes these pipes.

Messages (tuples, first item the kind):

parent -> worker   ("hello", {"sys_path", "secrets", "parent_pid"})   first, builtins only
                   ("init", spec, concurrency, timeout, slot, workers, outputs)
                   ("secrets", [value, ...])   secrets the parent learnt after the hello
                   ("lines", [(line_number, inputs), ...])
                   ("stop",)                                           after the last results
worker -> parent   ("ready", pid) | ("load_error", error_dict)
                   ("done", [entry, ...])       entries: see :func:`encode_line`
                   ("stats", {"cache_stats": {...}, "cache_keys": [...]})   then the worker exits
"""

from __future__ import annotations

import os
import pickle
from typing import Any

HEADER = 4
MAX_FRAME = 2**32 - 1
PROTOCOL = pickle.HIGHEST_PROTOCOL


def frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=PROTOCOL)
    if len(payload) > MAX_FRAME:
        raise ValueError(f"a worker message of {len(payload)} bytes is too large")
    return len(payload).to_bytes(HEADER, "big") + payload


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking file descriptor."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from a blocking file descriptor; None at end of file."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    """One message from a blocking file descriptor; None at end of file."""
    header = read_exactly(fd, HEADER)
    if header is None:
        return None
    payload = read_exactly(fd, int.from_bytes(header, "big"))
    if payload is None:
        return None
    return pickle.loads(payload)


class FrameBuffer:
    """Bytes as they arrive from a non-blocking pipe, split into messages."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        end = len(buffer)
        while end - start >= HEADER:
            size = int.from_bytes(buffer[start:start + HEADER], "big")
            if end - start - HEADER < size:
                break
            begin = start + HEADER
            messages.append(pickle.loads(memoryview(buffer)[begin:begin + size]))
            start = begin + size
        if start:
            del buffer[:start]
        return messages


def encode_line(line: Any) -> tuple:
    """A :class:`~pfkit.runs._runner.FinishedLine` as it crosses the pipe. Records are JSON
    text already; outputs and aggregation values (arbitrary objects a tool returned) travel
    as a pickle of their own, so one value that cannot be pickled, or unpickled on the other
    side, costs only that line's objects: they are then read back from the record's JSON.
    Nothing travels (``b""``) when the line has neither: a run whose parent reads only the
    records (``outputs`` false in "init") leaves them empty."""
    payload: bytes | None = b""  # nothing to carry
    if line.outputs or line.aggregation_values is not None:
        try:
            payload = pickle.dumps((line.outputs, line.aggregation_values), protocol=PROTOCOL)
        except Exception:  # noqa: BLE001 - any object may refuse pickling; JSON is the fallback
            payload = None
    return (line.line_number, line.status, line.record_json, line.node_json, line.error,
            line.usage, payload)


def sendable(entry: tuple) -> tuple:
    """``entry`` if it pickles; otherwise the line as failed, with a record that says why (a
    line's record can always be sent, so the parent never waits for a line that is lost)."""
    try:
        pickle.dumps(entry, protocol=PROTOCOL)
        return entry
    except Exception as exc:  # noqa: BLE001 - any value may refuse pickling
        import json
        import time

        number = entry[0]
        error = {"code": "UnsendableRecord", "category": "SystemError",
                 "message": f"the records of line {number} could not be sent from its worker "
                            f"process ({type(exc).__name__})"}
        now = time.time()
        record = json.dumps({"line_number": number, "status": "Failed", "inputs": {},
                             "outputs": {}, "error": error, "start_time": now, "end_time": now,
                             "duration": 0.0, "nodes": {}})
        return (number, "Failed", record, {}, error, None, b"")


def decode_line(entry: tuple, finished_line_type: Any) -> Any:
    number, status, record_json, node_json, error, usage, payload = entry
    outputs: Any = {}
    values: Any = None
    if payload:
        try:
            outputs, values = pickle.loads(payload)
        except Exception:  # noqa: BLE001 - e.g. a tool's class that the parent cannot import
            payload = None
    if payload is None and status == "Completed":  # read back from the record
        import json

        record = json.loads(record_json)
        outputs = record.get("outputs") or {}
        values = record.get("aggregation_inputs")
    return finished_line_type(number, status, record_json, node_json, error, outputs, values,
                              usage)
