"""The run store interface: what runs, evaluation and the CLI need from wherever runs are kept.

:class:`RunStore` is a protocol; :class:`~pfkit.runs.LocalRunStore` (SQLite registry and run
folders) and :class:`~pfkit.runs.InMemoryRunStore` implement it, and
``tests/test_store_contract.py`` checks both against the same contract. Records are typed
(:class:`RunRecord`, :class:`LineRecord`); lines are written through a :class:`RunWriter`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._names import unsafe_name_reason
from ..errors import PfkitError, UserError
from ._records import LineRecord, RunRecord
from ._runner import FinishedLine


class RunNotFound(UserError):
    default_code = "RunNotFound"


class RunExists(UserError):
    default_code = "RunExists"


class InvalidRunName(UserError):
    default_code = "InvalidRunName"


class StoreWriteError(PfkitError):
    """The store could not write (a full disk, a read-only or vanished folder)."""

    default_code = "StoreWriteFailed"


def check_run_name(name: Any, what: str = "run name") -> str:
    """``name`` when it can name a run (it becomes a folder); else a clear error."""
    reason = unsafe_name_reason(name)
    if reason is not None:
        raise InvalidRunName(
            f"{what} {name!r} cannot be used: {reason}",
            hint="Run names are 1-200 letters, digits, '_', '-' and '.', starting with a letter, "
                 "a digit or '_' (e.g. my_run-2).")
    return name


@runtime_checkable
class RunWriter(Protocol):
    """Writes one run's lines and summary; one writer per run, owned by the run's process."""

    def write_line(self, line: FinishedLine) -> None:
        """Append one finished line (its node records first). Raises StoreWriteError."""

    def log(self, message: str) -> None:
        """One line of the run's log (scrubbed of secrets)."""

    def save_snapshot(self, source_dir: Path, resolved_yaml: str,
                      file_name: str = "flow.dag.yaml") -> None:
        """The flow as it ran (``resolved_yaml`` written as ``file_name`` in it)."""

    def finish(self, metrics: dict[str, Any], errors: dict[str, Any] | None,
               meta: dict[str, Any]) -> None:
        """Summary records (outputs in line order, inputs, metrics, errors); closes the writer."""

    def close(self) -> None:
        """Stop writing (and the heartbeat); safe to call twice."""


@runtime_checkable
class RunStore(Protocol):
    def create(self, record: RunRecord) -> None:
        """Add a new run, atomically: raises RunExists (touching nothing) when the name is
        taken. Records the calling process as the run's owner."""

    def get(self, name: str) -> RunRecord:
        """The run's record (raises RunNotFound). A run whose owner process is gone is
        corrected to Canceled first (see ``status_detail``)."""

    def exists(self, name: str) -> bool: ...

    def save(self, record: RunRecord) -> None:
        """Replace the record of an existing run (the run's own process updating it)."""

    def update(self, name: str, **fields: Any) -> RunRecord:
        """Change some fields of a run's record and return it."""

    def list(self, *, max_results: int | None = 50, archived: str = "exclude",
             group: str | None = None) -> list[RunRecord]:
        """Newest first. ``archived``: exclude, include or only."""

    def delete(self, name: str) -> None: ...

    def open_writer(self, name: str) -> RunWriter: ...

    def lines(self, name: str) -> Iterator[LineRecord]:
        """The last record of each line, in line order (a resumed run may hold a line twice)."""

    def line_dicts(self, name: str) -> Iterator[dict[str, Any]]:
        """The same records as :meth:`lines`, as the JSON objects written (no typed records:
        for readers of many lines, such as evaluation)."""

    def finished_lines(self, name: str, *, status: str | None = None) -> Iterator[FinishedLine]:
        """Lines as written (record and node records, encoded), in line order: what resuming
        copies into the new run."""

    def metrics(self, name: str) -> dict[str, Any]: ...

    def location(self, name: str | None = None) -> str:
        """Where the store (or a run) is kept, in words for messages (a path, a URL)."""

    def run_path(self, name: str) -> Path | None:
        """A folder with the run's files, when the store has one (None otherwise)."""
