"""The summary files a local run writes at the end (``flow_outputs/output.jsonl``,
``inputs.jsonl``) and how the writer batches line records: the same files, byte for byte, as
decoding every record and encoding its parts again; records whole and node files first."""

from __future__ import annotations

import asyncio
import base64
import json
import math

import pytest

from pfkit.nodes._images import images_to_files
from pfkit.runs._local_store import LineFile, LocalRunStore, _summary_texts
from pfkit.runs._records import RunRecord
from pfkit.runs._runner import FinishedLine, dumps

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()

CASES = [  # (status, inputs, outputs)
    ("Completed", {"text": "a b c"}, {"words": 3, "label": "short: 3 words"}),
    ("Completed", {}, {}),
    ("Completed", {"x": 1}, {}),
    ("Completed", {}, {"y": [1, 2, {"z": None}]}),
    ("Failed", {"text": "boom"}, {}),
    ("Canceled", {}, {}),
    ("Completed", {"q": 'quote " and \\ backslash', "u": "é ü 日本 \u2028 \x00 \t"},
     {"a": 'x", "outputs": {"b": 1}', "nan": math.nan, "inf": -math.inf, "big": 10**30,
      "f": 0.1, "neg": -0.0}),
    ("Completed", {"line_number": 99, "x": 1}, {"y": 1}),        # inputs key is overridden
    ("Completed", {"x": 1}, {"line_number": 7, "y": 2}),         # outputs key wins
    ("Failed", {"line_number": 5}, {}),
    ("Completed", {"x": '"line_number"'}, {"y": "the \"line_number\" text"}),
    ("Completed", {"img": {"data:image/png;base64": PNG}},
     {"pic": {"data:image/png;base64": PNG}, "list": [{"data:image/png;base64": PNG}]}),
    ("Completed", {"x": 1}, {"s": "data:image/png;base64 is only text here"}),
    ("Completed", {"deep": [[[[{"a": [{}]}]]]]}, {"deep": {"b": [[], {}, ""]}}),
]


def record_text(number: int, status: str, inputs: dict, outputs: dict) -> str:
    return dumps({"line_number": number, "status": status, "inputs": inputs,
                  "outputs": outputs, "error": None if status == "Completed" else
                  {"message": "no"}, "start_time": 1.0, "end_time": 2.0, "duration": 1.0,
                  "nodes": {"n": status}, "aggregation_inputs": {"${n.output}": 1}})


def expected_files(records: dict[int, str], folder) -> tuple[str, str]:
    """What the summary files held when each record was decoded and its parts encoded."""
    out, ins = [], []
    for number in sorted(records):
        rec = json.loads(records[number])
        if rec["status"] == "Completed":
            outputs = images_to_files(rec["outputs"], folder)
            out.append(dumps({"line_number": number, **outputs}) + "\n")
        ins.append(dumps({**rec["inputs"], "line_number": number}) + "\n")
    return "".join(out), "".join(ins)


def assert_summary_files(folder, records: dict[int, str], reference) -> None:
    """The run folder's summary files are what decoding and encoding each record gives."""
    reference.mkdir()
    out, ins = expected_files(records, reference)
    assert (folder / "flow_outputs" / "output.jsonl").read_text(encoding="utf-8") == out
    assert (folder / "inputs.jsonl").read_text(encoding="utf-8") == ins


def finished(number: int, text: str) -> FinishedLine:
    node = dumps({"line_number": number, "status": "Completed", "inputs": {}, "output": number,
                  "error": None, "duration": 0.0})
    return FinishedLine(number, json.loads(text)["status"], text, {"n": node}, None, {}, None,
                        None)


def test_summary_files_are_what_decoding_and_encoding_each_record_gives(tmp_path):
    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")
    records = {}
    order = list(range(len(CASES)))[::-1]  # finished out of order, one line twice
    for number in [*order, 0]:
        status, inputs, outputs = CASES[number]
        records[number] = record_text(number, status, inputs, outputs)
        writer.write_line(finished(number, records[number]))
    writer.finish({}, None, {})
    folder = store.run_dir("r")
    reference = tmp_path / "reference"
    assert_summary_files(folder, records, reference)
    images = sorted(p.name for p in (folder / "flow_outputs").iterdir() if p.suffix == ".png")
    assert images == sorted(p.name for p in reference.iterdir()) and images


def test_records_are_cut_as_written_only_when_the_shape_is_pfkit_s():
    assert _summary_texts(record_text(3, "Completed", {"a": 1}, {"b": 2}), 3) == (
        "Completed", '{"a": 1, "line_number": 3}', '{"line_number": 3, "b": 2}')
    assert _summary_texts(record_text(3, "Failed", {}, {}), 3) == (
        "Failed", '{"line_number": 3}', None)
    # another key order, another number, a line_number key, an image: decoded instead
    assert _summary_texts(dumps({"status": "Completed", "line_number": 3, "inputs": {},
                                 "outputs": {}}), 3) is None
    assert _summary_texts(record_text(3, "Completed", {}, {}), 4) is None
    assert _summary_texts(record_text(3, "Completed", {"line_number": 1}, {}), 3) is None
    assert _summary_texts(record_text(3, "Completed", {}, {"i": {"data:image/png;base64": PNG}}),
                          3) is None
    assert _summary_texts('{"line_number": 3, "status": "Completed", "inputs": [1], '
                          '"outputs": {}}', 3) is None
    assert _summary_texts('{"line_number": 3, "status": "Completed", "inputs": {"a": ', 3) is None


def test_lines_finished_in_one_turn_of_the_loop_are_written_together(tmp_path):
    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")
    lines_file = store.run_dir("r") / "lines.jsonl"
    node_file = store.run_dir("r") / "node_outputs" / "n.jsonl"

    async def main():
        for number in range(5):
            writer.write_line(finished(number, record_text(number, "Completed", {}, {})))
        held = lines_file.read_text()
        await asyncio.sleep(0)
        return held

    assert asyncio.run(main()) == ""  # held until the loop's next turn
    assert len(lines_file.read_text().splitlines()) == 5
    assert len(node_file.read_text().splitlines()) == 5
    writer.write_line(finished(5, record_text(5, "Completed", {}, {})))  # no loop: at once
    assert len(lines_file.read_text().splitlines()) == 6
    writer.finish({}, None, {})
    assert [n for n, _ in LineFile(lines_file).iter_raw()] == list(range(6))


def test_a_write_that_fails_on_the_loop_is_raised_by_the_next_write_and_by_finish(tmp_path):
    import errno

    from pfkit.runs._store_api import StoreWriteError

    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")

    class Full:
        def __init__(self, inner):
            self.inner = inner

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    writer._lines = Full(writer._lines)

    async def main():
        writer.write_line(finished(0, record_text(0, "Completed", {}, {})))
        await asyncio.sleep(0)
        with pytest.raises(StoreWriteError, match="no space left"):
            writer.write_line(finished(1, record_text(1, "Completed", {}, {})))

    asyncio.run(main())
    with pytest.raises(StoreWriteError, match="--resume-from r"):
        writer.finish({}, None, {})


def test_a_writer_reopened_on_written_lines_and_odd_text_keep_every_record(tmp_path):
    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    first = store.open_writer("r")
    first.write_line(finished(1, record_text(1, "Completed", {"x": "a"}, {"y": "é"})))
    first.close()
    again = store.open_writer("r")  # the offsets of earlier records are not its own
    lone = record_text(0, "Completed", {"x": "\ud800"}, {"y": "b\\\udfff"})
    again.write_line(finished(0, lone))
    again.write_line(finished(2, record_text(2, "Failed", {}, {})))
    again.finish({}, None, {})
    lines = dict(LineFile(store.run_dir("r") / "lines.jsonl").iter_sorted())
    assert sorted(lines) == [0, 1, 2]
    assert lines[0]["inputs"] == {"x": "\ud800"} and lines[0]["outputs"] == {"y": "b\\\udfff"}
    outputs = (store.run_dir("r") / "flow_outputs" / "output.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in outputs] == [{"line_number": 0, "y": "b\\\udfff"},
                                               {"line_number": 1, "y": "é"}]


def _write_all(writer, numbers: list[int]) -> dict[int, str]:
    records = {}
    for number in numbers:
        status, inputs, outputs = CASES[number % len(CASES)]
        records[number] = record_text(number, status, inputs, outputs)
        writer.write_line(finished(number, records[number]))
    return records


def test_summary_files_are_written_as_lines_finish_in_line_order(tmp_path, monkeypatch):
    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")
    # lines finish out of order (as concurrent lines and workers give them), line 9 never
    records = _write_all(writer, [2, 0, 1, 5, 3, 4, 8, 7, 6, 10, 13, 11, 12])
    folder = store.run_dir("r")
    summary = writer._summary
    assert summary is not None and summary.active
    summary._out.flush()
    # lines 0-8 are written already; 10-13 wait for line 9, which never comes
    early = tmp_path / "early"
    early.mkdir()
    assert (folder / "flow_outputs" / "output.jsonl").read_text(encoding="utf-8") == \
        expected_files({n: text for n, text in records.items() if n < 9}, early)[0]

    def no_pass(*args):
        raise AssertionError("lines.jsonl was read again at the end")

    monkeypatch.setattr(LineFile, "iter_raw", no_pass)
    writer.finish({}, None, {})
    reference = tmp_path / "reference"
    assert_summary_files(folder, records, reference)


def test_summary_files_fall_back_to_one_pass_when_too_many_lines_wait(tmp_path, monkeypatch):
    from pfkit.runs import _local_store

    monkeypatch.setattr(_local_store, "SUMMARY_HOLD", 3)
    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")
    # a resumed run writes its reused lines first: here every line but 0 comes before it
    records = _write_all(writer, [1, 2, 3, 4, 5, 6, 0])
    assert not writer._summary.active
    writer.finish({}, None, {})
    folder = store.run_dir("r")
    reference = tmp_path / "reference"
    assert_summary_files(folder, records, reference)


def test_a_summary_file_that_cannot_be_flushed_at_the_end_fails_finish(tmp_path):
    import errno

    from pfkit.runs._store_api import StoreWriteError

    store = LocalRunStore(tmp_path / "home")
    store.create(RunRecord(name="r", status="Running"))
    writer = store.open_writer("r")
    _write_all(writer, [0, 1, 2])

    class FullAtClose:
        def __init__(self, inner):
            self.inner = inner

        def close(self):
            self.inner.close()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.inner, name)

    writer._summary._out = FullAtClose(writer._summary._out)
    with pytest.raises(StoreWriteError, match="no space left"):
        writer.finish({}, None, {})
