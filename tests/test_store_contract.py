"""The run store contract: every RunStore (the local SQLite + folders store, the in-memory one)
passes the same tests, so another store (PostgreSQL, a service) only has to pass them too."""

from __future__ import annotations

import json
import time

import pytest

from pfkit import _secrets
from pfkit.runs import (
    FinishedLine,
    InMemoryRunStore,
    LineRecord,
    LocalRunStore,
    RunExists,
    RunNotFound,
    RunRecord,
    RunStore,
)
from pfkit.runs._store_api import InvalidRunName


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> RunStore:
    if request.param == "local":
        made = LocalRunStore(tmp_path / "home")
        yield made
        made.close()
    else:
        yield InMemoryRunStore()


def record(name: str, **fields) -> RunRecord:
    return RunRecord(name=name, created_on=fields.pop("created_on", time.time()), **fields)


def line(number: int, status: str = "Completed", **outputs) -> FinishedLine:
    rec = {"line_number": number, "status": status, "inputs": {"x": number}, "outputs": outputs,
           "error": None if status == "Completed" else {"message": "boom"},
           "start_time": 1.0, "end_time": 2.0, "duration": 1.0, "nodes": {"n": status},
           "aggregation_inputs": {"${n.output}": number}}
    node = {"line_number": number, "status": status, "inputs": {}, "output": number}
    return FinishedLine(number, status, json.dumps(rec), {"n": json.dumps(node)}, rec["error"],
                        outputs, rec["aggregation_inputs"], None)


def test_it_is_a_run_store(store):
    assert isinstance(store, RunStore)


def test_create_then_get_keeps_every_field(store):
    made = record("a", tags={"k": "v"}, variant={"n": "v1"}, fingerprints={"data": None})
    made.extra["from_a_newer_version"] = [1, 2]
    store.create(made)
    got = store.get("a")
    assert got.tags == {"k": "v"} and got.variant == {"n": "v1"}
    assert got.extra["from_a_newer_version"] == [1, 2]
    assert got.owner and got.owner["pid"] and got.heartbeat
    assert store.exists("a") and not store.exists("b")
    assert RunRecord.from_dict(got.to_dict()).to_dict() == got.to_dict()


def test_create_is_refused_for_a_taken_name_and_changes_nothing(store):
    store.create(record("a", description="first", status="Running"))
    before = store.get("a").to_dict()
    with pytest.raises(RunExists):
        store.create(record("a", description="second", status="Failed"))
    assert store.get("a").to_dict() == before


@pytest.mark.parametrize("bad", [".", "..", "../x", "a/b", "", "x" * 201, "-a"])
def test_unsafe_names_are_refused(store, bad):
    with pytest.raises(InvalidRunName):
        store.create(record(bad))
    with pytest.raises(InvalidRunName):
        store.get(bad)
    with pytest.raises(InvalidRunName):
        store.delete(bad)


def test_missing_runs(store):
    with pytest.raises(RunNotFound):
        store.get("nope")
    with pytest.raises(RunNotFound):
        store.save(record("nope"))
    with pytest.raises(RunNotFound):
        store.update("nope", archived=True)


def test_update_and_list(store):
    for i, name in enumerate(["old", "mid", "new"]):
        store.create(record(name, created_on=100.0 + i, status="Completed",
                            group="g" if name != "old" else None))
    store.update("mid", archived=True)
    assert [r.name for r in store.list()] == ["new", "old"]
    assert [r.name for r in store.list(archived="include")] == ["new", "mid", "old"]
    assert [r.name for r in store.list(archived="only")] == ["mid"]
    assert [r.name for r in store.list(archived="include", group="g")] == ["new", "mid"]
    assert [r.name for r in store.list(max_results=1)] == ["new"]


def test_lines_are_read_back_in_order_last_record_wins(store):
    store.create(record("r", status="Running"))
    writer = store.open_writer("r")
    for item in (line(2, y=4), line(0, y=0), line(1, "Failed"), line(1, y=1)):
        writer.write_line(item)
    writer.log("started")
    writer.finish({"accuracy": 0.5}, None, {"batch_size": 3})
    lines = list(store.lines("r"))
    assert all(isinstance(r, LineRecord) for r in lines)
    assert [(r.line_number, r.status, r.outputs) for r in lines] == [
        (0, "Completed", {"y": 0}), (1, "Completed", {"y": 1}), (2, "Completed", {"y": 4})]
    assert store.metrics("r") == {"accuracy": 0.5}
    assert [LineRecord.from_dict(d) for d in store.line_dicts("r")] == lines
    finished = list(store.finished_lines("r", status="Completed"))
    assert [f.line_number for f in finished] == [0, 1, 2]
    assert json.loads(finished[2].node_json["n"])["output"] == 2
    assert finished[0].aggregation_values == {"${n.output}": 0}


def test_finished_lines_written_again_are_identical(store):
    """Resuming copies lines from one run to another through the same writer call."""
    store.create(record("a", status="Running"))
    writer = store.open_writer("a")
    writer.write_line(line(0, y="é"))
    writer.finish({}, None, {})
    store.create(record("b", status="Running"))
    copy = store.open_writer("b")
    for item in store.finished_lines("a"):
        copy.write_line(item)
    copy.finish({}, None, {})
    assert [r.to_dict() for r in store.lines("b")] == [r.to_dict() for r in store.lines("a")]


def test_a_running_run_cannot_be_deleted_a_finished_one_can(store):
    store.create(record("live", status="Running"))
    with pytest.raises(Exception, match="still running"):
        store.delete("live")
    store.update("live", status="Completed")
    store.delete("live")
    with pytest.raises(RunNotFound):
        store.get("live")


def test_records_and_logs_never_hold_secrets(store):
    _secrets.register("contract-secret-123")
    try:
        store.create(record("s", description="key contract-secret-123", status="Running"))
        assert "contract-secret-123" not in json.dumps(store.get("s").to_dict())
        store.update("s", error={"message": "bad contract-secret-123"})
        assert "contract-secret-123" not in json.dumps(store.get("s").to_dict())
        writer = store.open_writer("s")
        writer.log("using contract-secret-123")
        writer.finish({"m": "contract-secret-123"}, {"run": {"message": "contract-secret-123"}}, {})
        assert "contract-secret-123" not in json.dumps(store.metrics("s"))
        path = store.run_path("s")
        if path is not None:
            for file in path.rglob("*"):
                if file.is_file():
                    assert b"contract-secret-123" not in file.read_bytes()
        else:
            assert all("contract-secret-123" not in m for m in store.logs("s"))
    finally:
        _secrets._reset_for_tests()


def test_line_record_round_trip_keeps_unknown_fields():
    data = {"line_number": 3, "status": "Failed", "inputs": {"a": 1}, "outputs": {},
            "error": {"message": "x"}, "start_time": 1.0, "end_time": 2.0, "duration": 1.0,
            "nodes": {}, "new_field": True}
    assert LineRecord.from_dict(data).to_dict() == data
