"""Batch runs over datasets: the run store, execution, resume."""

from ._api import Run, acreate_run, create_run, get_run
from ._batch import DEFAULT_CONCURRENCY, RunRequest
from ._store import RunStore

__all__ = ["DEFAULT_CONCURRENCY", "Run", "RunRequest", "RunStore", "acreate_run", "create_run",
           "get_run"]
