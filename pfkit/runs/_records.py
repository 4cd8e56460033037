"""Typed run and line records: what every run store keeps, whatever its storage.

Both are plain dataclasses with ``to_dict``/``from_dict``; ``to_dict`` gives the JSON shape that
``pfkit run show`` prints (promptflow's field names). Fields a newer or older version wrote and
this one does not know are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any

# 1: the first record; 2: owner, heartbeat, fingerprints, status_detail
SCHEMA_VERSION = 2

NOT_STARTED, PREPARING, RUNNING = "NotStarted", "Preparing", "Running"
COMPLETED, FAILED, CANCELED = "Completed", "Failed", "Canceled"
ACTIVE = (PREPARING, RUNNING)  # a live process owns the run (or did, and died)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    """The record's field names but ``extra`` (dataclasses.fields() is slow per record)."""
    return tuple(f.name for f in fields(cls) if f.name != "extra")


@functools.cache
def _name_set(cls: type) -> frozenset[str]:
    return frozenset(_names(cls))


def _split(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = _name_set(cls)
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


@dataclass(slots=True)
class RunRecord:
    name: str
    status: str = PREPARING
    created_on: float = 0.0
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None
    flow_path: str | None = None
    flow_name: str | None = None
    data: str | None = None
    run: str | None = None  # the base run of an evaluation run
    resume_from: str | None = None
    variant: dict[str, str] | None = None
    column_mapping: dict[str, Any] = field(default_factory=dict)
    group: str | None = None  # the --all-variants group
    output_path: str | None = None
    error: dict[str, Any] | None = None
    archived: bool = False
    properties: dict[str, Any] = field(default_factory=lambda: {"system_metrics": {}})
    # why the status is what it is, in words, when it is not obvious (a process that is gone)
    status_detail: str | None = None
    # the process that runs it: {"host", "pid", "started"} (process start time, seconds)
    owner: dict[str, Any] | None = None
    heartbeat: float | None = None  # last sign of life of the owner (epoch seconds)
    # what the run ran on: {"data": {...}, "flow": {...}} (see pfkit.runs._fingerprint)
    fingerprints: dict[str, Any] | None = None
    aggregation_error: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _names(type(self))}
        if data["aggregation_error"] is None:
            del data["aggregation_error"]
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known, extra = _split(cls, data)
        if not isinstance(known.get("properties"), dict):
            known["properties"] = {"system_metrics": {}}
        known.setdefault("schema_version", 1)
        return cls(**known, extra=extra)

    @property
    def system_metrics(self) -> dict[str, Any]:
        return self.properties.setdefault("system_metrics", {})


@dataclass(slots=True)
class LineRecord:
    line_number: int
    status: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    duration: float = 0.0
    nodes: dict[str, str] = field(default_factory=dict)  # node -> status
    usage: dict[str, Any] | None = None
    aggregation_inputs: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _names(type(self))}
        for optional in ("usage", "aggregation_inputs"):
            if data[optional] is None:
                del data[optional]
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineRecord:
        known, extra = _split(cls, data)
        if not isinstance(known.get("inputs"), dict):
            known["inputs"] = {}
        if not isinstance(known.get("outputs"), dict):
            known["outputs"] = {}
        return cls(**known, extra=extra)
