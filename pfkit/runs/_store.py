"""The run store's names in one place (the store itself: ``_store_api`` for the interface,
``_local_store`` for SQLite and run folders, ``_memory_store`` for memory)."""

from ._local_store import LineFile, LocalRunStore, LocalRunWriter, copy_snapshot, read_line_records
from ._memory_store import InMemoryRunStore
from ._records import (
    CANCELED,
    COMPLETED,
    FAILED,
    NOT_STARTED,
    PREPARING,
    RUNNING,
    SCHEMA_VERSION,
    LineRecord,
    RunRecord,
)
from ._runner import dumps
from ._store_api import (
    InvalidRunName,
    RunExists,
    RunNotFound,
    RunStore,
    RunWriter,
    StoreWriteError,
    check_run_name,
)

__all__ = ["CANCELED", "COMPLETED", "FAILED", "NOT_STARTED", "PREPARING", "RUNNING",
           "SCHEMA_VERSION", "InMemoryRunStore", "InvalidRunName", "LineFile", "LineRecord",
           "LocalRunStore", "LocalRunWriter", "RunExists", "RunNotFound", "RunRecord", "RunStore",
           "RunWriter", "StoreWriteError", "check_run_name", "copy_snapshot", "dumps",
           "read_line_records"]
