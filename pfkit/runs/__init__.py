"""Batch runs over datasets: the run store, execution, resume."""

from ._api import Run, acreate_run, create_run, get_run
from ._batch import DEFAULT_CONCURRENCY, RunRequest
from ._local_store import LocalRunStore
from ._memory_store import InMemoryRunStore
from ._records import LineRecord, RunRecord
from ._runner import FinishedLine, InProcessRunner, LineRunner
from ._store_api import RunExists, RunNotFound, RunStore, RunWriter, StoreWriteError

__all__ = ["DEFAULT_CONCURRENCY", "FinishedLine", "InMemoryRunStore", "InProcessRunner",
           "LineRecord", "LineRunner", "LocalRunStore", "Run", "RunExists", "RunNotFound",
           "RunRecord", "RunRequest", "RunStore", "RunWriter", "StoreWriteError", "acreate_run",
           "create_run", "get_run"]
