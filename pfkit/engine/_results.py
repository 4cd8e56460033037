"""What running a line or an aggregation produces. Plain records, cheap to create."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMPLETED = "Completed"
FAILED = "Failed"
BYPASSED = "Bypassed"
CANCELED = "Canceled"


@dataclass(slots=True)
class NodeRun:
    node: str
    status: str
    inputs: dict[str, Any] | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    usage: Any = None  # a UsageRecorder when the node called a model

    @property
    def duration(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "node": self.node, "status": self.status, "inputs": self.inputs,
            "output": self.output, "error": self.error, "start_time": self.start_time,
            "end_time": self.end_time, "duration": self.duration,
        }
        if self.usage:
            data["usage"] = self.usage.to_dict()
        return data


@dataclass(slots=True)
class LineResult:
    line_number: int
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    node_runs: dict[str, NodeRun]
    error: dict[str, Any] | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    @property
    def duration(self) -> float:
        return max(0.0, self.end_time - self.start_time)

    def node_statuses(self) -> dict[str, str]:
        return {name: run.status for name, run in self.node_runs.items()}

    @property
    def usage(self) -> Any:
        """Token usage of every model call in the line (a UsageRecorder), or None."""
        return _sum_usage(self.node_runs)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "line_number": self.line_number, "status": self.status, "inputs": self.inputs,
            "outputs": self.outputs, "error": self.error, "start_time": self.start_time,
            "end_time": self.end_time, "duration": self.duration,
            "node_runs": {k: v.to_dict() for k, v in self.node_runs.items()},
        }
        usage = self.usage
        if usage:
            data["usage"] = usage.to_dict()
        return data


def _sum_usage(node_runs: dict[str, NodeRun]) -> Any:
    total = None
    for run in node_runs.values():
        if run.usage:
            if total is None:
                from ..providers._usage import UsageRecorder

                total = UsageRecorder()
            total.merge(run.usage)
    return total


@dataclass(slots=True)
class AggregationResult:
    status: str
    metrics: dict[str, Any]
    node_runs: dict[str, NodeRun]
    error: dict[str, Any] | None = None
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def outputs(self) -> dict[str, Any]:
        return {k: v.output for k, v in self.node_runs.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "metrics": self.metrics, "error": self.error,
            "node_runs": {k: v.to_dict() for k, v in self.node_runs.items()},
        }
