"""The dataset layer: readers for every format, errors with file and line, column mapping rules,
base-run joining and flat memory while streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pfkit.data import (
    SUPPORTED_EXTENSIONS,
    ColumnMapping,
    DataError,
    LineInputError,
    Row,
    _readers,
    open_dataset,
    pair_with_base,
)
from pfkit.errors import InputError, UserError
from pfkit.spec._models import InputDef


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def jsonl(path: Path, rows: list[Any]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def rows_of(source: str | Path) -> list[Row]:
    return list(open_dataset(source))


def datas(source: str | Path) -> list[dict[str, Any]]:
    return [r.data for r in open_dataset(source)]


def raises_data_error(source: str | Path, code: str = "InvalidData") -> DataError:
    with pytest.raises(DataError) as info:
        list(open_dataset(source))
    assert info.value.code == code
    assert isinstance(info.value, UserError)
    return info.value


# =========================================================================== jsonl


def test_jsonl_rows_keep_json_types_and_order(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [
        {"q": "a", "n": 1, "f": 1.5, "none": None, "l": [1, 2], "d": {"k": "v"}, "b": True},
        {"q": "b"},
    ])
    rows = rows_of(path)
    assert [r.index for r in rows] == [0, 1]
    assert rows[0].data == {"q": "a", "n": 1, "f": 1.5, "none": None, "l": [1, 2],
                            "d": {"k": "v"}, "b": True}
    assert rows[1].data == {"q": "b"}  # missing keys stay missing (no NaN)
    assert [r.origin for r in rows] == ["data.jsonl:1", "data.jsonl:2"]


def test_jsonl_skips_blank_lines_which_do_not_count(tmp_path):
    path = write(tmp_path / "data.jsonl", '\n{"q": 1}\n\n   \n\t\r\n{"q": 2}\r\n\n{"q": 3}')
    rows = rows_of(path)
    assert [r.data["q"] for r in rows] == [1, 2, 3]
    assert [r.index for r in rows] == [0, 1, 2]
    assert [r.origin for r in rows] == ["data.jsonl:2", "data.jsonl:6", "data.jsonl:8"]
    assert open_dataset(path).count() == 3


def test_jsonl_accepts_a_utf8_bom(tmp_path):
    path = write(tmp_path / "data.jsonl", b'\xef\xbb\xbf{"q": "\xc3\xa9"}\n{"q": "b"}\n')
    assert datas(path) == [{"q": "é"}, {"q": "b"}]
    assert open_dataset(path).columns() == ["q"]


def test_jsonl_bom_only_first_line_is_blank(tmp_path):
    path = write(tmp_path / "data.jsonl", b'\xef\xbb\xbf\n{"q": 1}\n')
    assert open_dataset(path).count() == 1
    assert [r.origin for r in rows_of(path)] == ["data.jsonl:2"]


def test_jsonl_invalid_json_names_file_and_line(tmp_path):
    lines = [json.dumps({"q": i}) for i in range(6)] + ['{"q": 7 "a": 1}', '{"q": 8}']
    path = write(tmp_path / "data.jsonl", "\n".join(lines) + "\n")
    err = raises_data_error(path)
    assert err.location.file == str(path)
    assert err.location.line == 7
    assert err.message == "not valid JSON (Expecting ',' delimiter)"
    assert str(err).startswith(f"{path}:7: not valid JSON (Expecting ',' delimiter)")
    assert "column 9" in err.hint


def test_jsonl_rows_before_the_bad_line_are_streamed_first(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"q": 1}\n{"q": 2}\nnot json\n')
    seen = []
    with pytest.raises(DataError) as info:
        for row in open_dataset(path):
            seen.append(row.data["q"])
    assert seen == [1, 2]
    assert info.value.location.line == 3


@pytest.mark.parametrize("line, kind", [("[1, 2]", "an array"), ('"text"', "a string"),
                                        ("3", "a number"), ("null", "null")])
def test_jsonl_line_that_is_not_an_object(tmp_path, line, kind):
    path = write(tmp_path / "data.jsonl", '{"q": 1}\n' + line + "\n")
    err = raises_data_error(path)
    assert (err.location.file, err.location.line) == (str(path), 2)
    assert err.message == f"expected a JSON object, got {kind}"
    assert err.hint


def test_jsonl_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "data.jsonl", b'{"q": 1}\n{"q": "\xff"}\n')
    err = raises_data_error(path)
    assert err.location.line == 2
    assert "UTF-8" in err.hint


def test_jsonl_columns_and_count_do_not_parse_every_row(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"a": 1, "b": 2}\n{"c": 3}\nbroken\n')
    dataset = open_dataset(path)
    assert dataset.columns() == ["a", "b"]  # first row only, the broken line is never read
    assert dataset.count() == 3  # counting does not validate


def test_empty_jsonl_has_no_rows(tmp_path):
    path = write(tmp_path / "data.jsonl", "")
    dataset = open_dataset(path)
    assert list(dataset) == []
    assert dataset.count() == 0
    assert dataset.columns() == []


def test_dataset_is_reiterable(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [{"q": 1}, {"q": 2}])
    dataset = open_dataset(path)
    assert [r.data for r in dataset] == [r.data for r in dataset] == [{"q": 1}, {"q": 2}]


# =========================================================================== json


def test_json_array_of_objects_with_line_origins(tmp_path):
    path = write(tmp_path / "data.json", '[\n  {"q": 1},\n  {"q": 2,\n   "n": [1, 2]}\n]\n')
    rows = rows_of(path)
    assert [r.data for r in rows] == [{"q": 1}, {"q": 2, "n": [1, 2]}]
    assert [r.origin for r in rows] == ["data.json:2", "data.json:3"]
    dataset = open_dataset(path)
    assert dataset.count() == 2
    assert dataset.columns() == ["q"]


def test_json_single_object_is_one_row(tmp_path):
    path = write(tmp_path / "data.json", '{"q": "only", "n": 1}')
    assert datas(path) == [{"q": "only", "n": 1}]
    assert open_dataset(path).count() == 1


def test_json_with_bom_and_empty_array(tmp_path):
    assert datas(write(tmp_path / "a.json", b'\xef\xbb\xbf[{"q": 1}]')) == [{"q": 1}]
    assert datas(write(tmp_path / "b.json", "[ ]")) == []
    assert datas(write(tmp_path / "c.json", "")) == []


def test_json_item_not_an_object(tmp_path):
    path = write(tmp_path / "data.json", '[\n {"q": 1},\n "text"\n]')
    err = raises_data_error(path)
    assert (err.location.file, err.location.line) == (str(path), 3)
    assert "item 2 is not a JSON object" in err.message


@pytest.mark.parametrize("text, line, reason", [
    ('[\n{"q": 1}\n{"q": 2}\n]', 3, "Expecting ',' delimiter"),
    ('[\n{"q": 1},\n{"q": }\n]', 3, "Expecting value"),
    ('[\n{"q": 1}\n]\n]', 4, "Extra data"),
    ('[\n{"q": 1},\n', 3, "Expecting value"),
])
def test_json_malformed_names_the_line(tmp_path, text, line, reason):
    path = write(tmp_path / "data.json", text)
    err = raises_data_error(path)
    assert (err.location.file, err.location.line) == (str(path), line)
    assert err.message == f"not valid JSON ({reason})"


# =========================================================================== csv / tsv


def test_csv_values_are_strings_like_promptflow(tmp_path):
    path = write(tmp_path / "data.csv", 'q,n,f,e,na\nhello,1,1.50,,NA\n"a, b",007,x,"",null\n')
    assert datas(path) == [
        {"q": "hello", "n": "1", "f": "1.50", "e": "", "na": "NA"},
        {"q": "a, b", "n": "007", "f": "x", "e": "", "na": "null"},
    ]


def test_csv_origins_follow_physical_lines(tmp_path):
    path = write(tmp_path / "data.csv", 'q,a\n"multi\nline",1\n\nx,2\r\ny,3')
    rows = rows_of(path)
    assert [r.data for r in rows] == [{"q": "multi\nline", "a": "1"}, {"q": "x", "a": "2"},
                                      {"q": "y", "a": "3"}]
    assert [r.origin for r in rows] == ["data.csv:2", "data.csv:5", "data.csv:6"]
    assert [r.index for r in rows] == [0, 1, 2]
    assert open_dataset(path).count() == 3


def test_csv_short_row_gets_empty_strings(tmp_path):
    path = write(tmp_path / "data.csv", "a,b,c\n1\n")
    assert datas(path) == [{"a": "1", "b": "", "c": ""}]


def test_csv_row_with_too_many_fields(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\n1,2\n3,4\n5,6,7\n")
    err = raises_data_error(path)
    assert (err.location.file, err.location.line) == (str(path), 4)
    assert err.message == "row has 3 fields but the header has 2"
    assert "Quote" in err.hint


def test_csv_header_names_like_pandas(tmp_path):
    path = write(tmp_path / "data.csv", "a,b,a,,a\n1,2,3,4,5\n")
    assert open_dataset(path).columns() == ["a", "b", "a.1", "Unnamed: 3", "a.2"]
    assert datas(path) == [{"a": "1", "b": "2", "a.1": "3", "Unnamed: 3": "4", "a.2": "5"}]


def test_csv_bom_header(tmp_path):
    path = write(tmp_path / "data.csv", b"\xef\xbb\xbfquestion,answer\nq,a\n")
    assert open_dataset(path).columns() == ["question", "answer"]
    assert datas(path) == [{"question": "q", "answer": "a"}]


def test_csv_columns_read_only_the_header(tmp_path):
    path = write(tmp_path / "data.csv", "a,b\n1,2,3,4\n")  # the bad row is never read
    assert open_dataset(path).columns() == ["a", "b"]


def test_csv_header_only_and_empty_file(tmp_path):
    header_only = open_dataset(write(tmp_path / "h.csv", "a,b\n"))
    assert (list(header_only), header_only.count(), header_only.columns()) == ([], 0, ["a", "b"])
    empty = open_dataset(write(tmp_path / "e.csv", ""))
    assert (list(empty), empty.count(), empty.columns()) == ([], 0, [])


def test_csv_long_cells_are_read(tmp_path):
    text = "x" * 300_000  # beyond the csv module's default field limit
    path = write(tmp_path / "data.csv", f"q\n{text}\n")
    assert datas(path) == [{"q": text}]


def test_csv_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "data.csv", b"q\nok\n\xff\xfe\n")
    err = raises_data_error(path)
    assert err.location.line == 3


def test_tsv(tmp_path):
    path = write(tmp_path / "data.tsv", 'q\tn\na, b\t1\n"tab\tin"\t\n')
    assert datas(path) == [{"q": "a, b", "n": "1"}, {"q": "tab\tin", "n": ""}]
    err = raises_data_error(write(tmp_path / "bad.tsv", "a\tb\n1\t2\t3\n"))
    assert err.location.line == 2
    assert "tabs" in err.hint


# =========================================================================== sources


def test_missing_file_is_data_not_found(tmp_path):
    with pytest.raises(DataError) as info:
        open_dataset(tmp_path / "nope.jsonl")
    assert info.value.code == "DataNotFound"
    assert info.value.location.file == str(tmp_path / "nope.jsonl")


def test_unsupported_extension_lists_supported_ones(tmp_path):
    with pytest.raises(DataError) as info:
        open_dataset(write(tmp_path / "data.txt", "x"))
    assert info.value.code == "UnsupportedDataFormat"
    for ext in SUPPORTED_EXTENSIONS:
        assert ext in info.value.hint


def test_extension_is_case_insensitive(tmp_path):
    assert datas(write(tmp_path / "DATA.JSONL", '{"q": 1}\n')) == [{"q": 1}]


def test_folder_concatenates_supported_files_sorted_by_name(tmp_path):
    folder = tmp_path / "data"
    jsonl(folder / "b.jsonl", [{"q": "b1"}, {"q": "b2"}])
    write(folder / "a.csv", "q,extra\na1,x\n")
    write(folder / "c.json", '[{"q": "c1"}]')
    write(folder / "notes.txt", "ignored")
    write(folder / "README.md", "ignored")
    jsonl(folder / "sub" / "0.jsonl", [{"q": "nested, ignored"}])
    dataset = open_dataset(folder)
    rows = list(dataset)
    assert [r.data["q"] for r in rows] == ["a1", "b1", "b2", "c1"]
    assert [r.index for r in rows] == [0, 1, 2, 3]
    assert [r.origin for r in rows] == ["a.csv:2", "b.jsonl:1", "b.jsonl:2", "c.json:1"]
    assert dataset.count() == 4
    assert dataset.columns() == ["q", "extra"]
    assert dataset.parts == ("a.csv", "b.jsonl", "c.json")
    assert dataset.source == str(folder)


def test_folder_errors_name_the_file(tmp_path):
    folder = tmp_path / "data"
    jsonl(folder / "a.jsonl", [{"q": 1}])
    write(folder / "b.jsonl", '{"q": 2}\n{oops}\n')
    err = raises_data_error(folder)
    assert (err.location.file, err.location.line) == (str(folder / "b.jsonl"), 2)


def test_empty_folder_is_an_error(tmp_path):
    folder = tmp_path / "data"
    write(folder / "notes.txt", "no data here")
    with pytest.raises(DataError) as info:
        open_dataset(folder)
    assert info.value.code == "DataNotFound"
    assert ".jsonl" in info.value.hint


# =========================================================================== images


def test_image_paths_resolve_against_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "sub"
    absolute = str(tmp_path / "abs.png")
    jsonl(data_dir / "data.jsonl", [{
        "image": {"data:image/png;path": "imgs/a.png"},
        "images": [{"data:image/jpeg;path": "../b.jpg"}, "text"],
        "absolute": {"data:image/png;path": absolute},
        "url": {"data:image/png;url": "https://example.com/c.png"},
        "two_keys": {"data:image/png;path": "x.png", "other": 1},
        "text": "imgs/a.png",
    }])
    data = datas(Path("sub") / "data.jsonl")[0]
    assert data["image"] == {"data:image/png;path": str(data_dir / "imgs" / "a.png")}
    assert data["images"] == [{"data:image/jpeg;path": str(tmp_path / "b.jpg")}, "text"]
    assert data["absolute"] == {"data:image/png;path": absolute}
    assert data["url"] == {"data:image/png;url": "https://example.com/c.png"}
    assert data["two_keys"] == {"data:image/png;path": "x.png", "other": 1}
    assert data["text"] == "imgs/a.png"


def test_image_paths_in_a_folder_dataset(tmp_path):
    folder = tmp_path / "data"
    write(folder / "a.json", '[{"img": {"data:image/png;path": "a.png"}}]')
    assert datas(folder) == [{"img": {"data:image/png;path": str(folder / "a.png")}}]


# =========================================================================== parquet


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    path = write(tmp_path / "data.parquet", b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError) as info:
        open_dataset(path)
    assert info.value.code == "MissingDependency"
    assert "pip install pyarrow" in info.value.hint


def test_parquet_streams_batches(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "data.parquet"
    table = pa.table({"q": [f"q{i}" for i in range(7)], "n": [1, 2, None, 4, 5, 6, 7],
                      "l": [[i] for i in range(7)]})
    pq.write_table(table, path, row_group_size=3)
    monkeypatch.setattr(_readers, "_PARQUET_BATCH", 2)
    dataset = open_dataset(path)
    rows = list(dataset)
    assert [r.data["q"] for r in rows] == [f"q{i}" for i in range(7)]
    assert rows[2].data == {"q": "q2", "n": None, "l": [2]}
    assert [r.origin for r in rows][:2] == ["data.parquet:1", "data.parquet:2"]
    assert dataset.count() == 7
    assert dataset.columns() == ["q", "n", "l"]


def test_invalid_parquet_file(tmp_path):
    pytest.importorskip("pyarrow.parquet")
    path = write(tmp_path / "data.parquet", b"not parquet at all")
    err = raises_data_error(path)
    assert err.location.file == str(path)
    assert "parquet" in err.message


# =========================================================================== Hugging Face


def test_hf_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError) as info:
        open_dataset("hf:squad")
    assert info.value.code == "MissingDependency"
    assert "pip install 'pfkit[hf]'" in info.value.hint
    folder = tmp_path / "saved"
    write(folder / "dataset_info.json", "{}")
    write(folder / "state.json", "{}")
    with pytest.raises(DataError) as info:
        open_dataset(folder)
    assert info.value.code == "MissingDependency"


def test_hf_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"q": ["a", "b", "c"], "n": [1, 2, 3]}).save_to_disk(str(folder))
    dataset = open_dataset(folder)
    assert [r.data for r in dataset] == [{"q": "a", "n": 1}, {"q": "b", "n": 2},
                                         {"q": "c", "n": 3}]
    assert [r.origin for r in dataset][0] == "saved:1"
    assert dataset.count() == 3
    assert dataset.columns() == ["q", "n"]


def test_hf_dataset_dict_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    train = datasets.Dataset.from_dict({"q": ["t1", "t2"]})
    test = datasets.Dataset.from_dict({"q": ["x1"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    assert datas(folder) == [{"q": "t1"}, {"q": "t2"}]
    assert datas(f"hf:{folder}:test") == [{"q": "x1"}]
    with pytest.raises(DataError) as info:
        open_dataset(f"hf:{folder}:nope")
    assert "test" in info.value.message and "train" in info.value.message


def test_hf_name_loads_locally_and_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw"
    jsonl(raw / "train.jsonl", [{"q": "a"}, {"q": "b"}])
    dataset = open_dataset(f"hf:{raw}")
    assert [r.data for r in dataset] == [{"q": "a"}, {"q": "b"}]
    assert dataset.count() == 2


def test_hf_name_not_cached_never_downloads(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = datasets.config.HF_HUB_OFFLINE
    with pytest.raises(DataError) as info:
        open_dataset("hf:pfkit-test-nobody/no-such-dataset:validation")
    assert info.value.code == "DataNotFound"
    assert "never downloads" in info.value.hint
    assert "HF_HUB_OFFLINE" not in os.environ  # offline mode is only forced during the load
    assert datasets.config.HF_HUB_OFFLINE == before


def test_plain_sources_import_no_heavy_packages(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [{"q": 1}])
    write(tmp_path / "data.csv", "q\n1\n")
    code = (
        "import sys\n"
        "from pfkit.data import open_dataset, ColumnMapping\n"
        f"list(open_dataset({str(path)!r})); list(open_dataset({str(tmp_path / 'data.csv')!r}))\n"
        "heavy = [m for m in ('pyarrow', 'datasets', 'pandas', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# =========================================================================== streaming


@pytest.mark.slow  # tracemalloc makes every allocation slow: about 8 s
def test_iterating_a_large_jsonl_keeps_memory_flat(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(200_000):
            handle.write(f'{{"question": "question number {i} padded {"x" * 40}", "n": {i}}}\n')
    size = path.stat().st_size
    dataset = open_dataset(path)
    tracemalloc.start()
    try:
        total = 0
        last = None
        for row in dataset:
            total += 1
            last = row
        counted = dataset.count()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == counted == 200_000
    assert last is not None and last.index == 199_999 and last.origin == "big.jsonl:200000"
    assert size > 15_000_000
    assert peak < size / 50, f"peak {peak} bytes while streaming a {size}-byte file"


# =========================================================================== column mapping


def inputs(**defs: Any) -> dict[str, InputDef]:
    """InputDefs from name=type or name=(type, default)."""
    result = {}
    for name, spec in defs.items():
        if isinstance(spec, tuple):
            result[name] = InputDef(name=name, type=spec[0], default=spec[1])
        else:
            result[name] = InputDef(name=name, type=spec)
    return result


def test_default_mapping_reads_same_named_columns():
    mapping = ColumnMapping.build(inputs(question="string", context="string"), None)
    row = {"question": "q", "context": "c", "other": 1}
    assert mapping.resolve(row, line_number=0) == {"question": "q", "context": "c"}


def test_input_with_default_keeps_it_even_if_the_data_has_the_column():
    mapping = ColumnMapping.build(inputs(question="string", lang=("string", "en")), {})
    assert mapping.resolve({"question": "q", "lang": "fr"}, line_number=0) == {
        "question": "q", "lang": "en"}


def test_explicit_mapping_overrides_the_default():
    mapping = ColumnMapping.build(inputs(question="string", lang=("string", "en")),
                                  {"lang": "${data.language}", "question": "${data.q}"})
    assert mapping.resolve({"q": "x", "language": "fr"}, line_number=0) == {
        "question": "x", "lang": "fr"}


def test_null_default_reads_the_data_like_promptflow():
    mapping = ColumnMapping.build(inputs(x=("string", None)), None)
    assert mapping.resolve({"x": "from data"}, line_number=0) == {"x": "from data"}
    assert mapping.resolve({}, line_number=0) == {"x": None}  # missing: the default


def test_literal_values():
    mapping = ColumnMapping.build(
        inputs(a="string", b="int", c="object", d="string", e="string"),
        {"a": "plain text", "b": 5, "c": {"k": [1]}, "d": "${data.x} and more", "e": "$data.x"})
    assert mapping.resolve({}, line_number=0) == {
        "a": "plain text", "b": 5, "c": {"k": [1]}, "d": "${data.x} and more", "e": "$data.x"}


def test_dotted_column_name_is_read_literally():
    mapping = ColumnMapping.build(inputs(x="string"), {"x": "${data.a.b}"})
    assert mapping.resolve({"a.b": "flat", "a": {"b": "nested"}}, line_number=0) == {"x": "flat"}
    with pytest.raises(LineInputError):
        mapping.resolve({"a": {"b": "nested"}}, line_number=0)


def test_line_number_key_is_ignored_and_not_returned():
    mapping = ColumnMapping.build(inputs(q="string"), {"line_number": "${data.n}"})
    result = mapping.resolve({"q": "x", "n": 3, "line_number": 9}, line_number=2)
    assert result == {"q": "x"}


def test_extra_mapping_keys_pass_through():
    mapping = ColumnMapping.build(inputs(q="string"), {"extra": "${data.e}", "tag": "v1"})
    assert mapping.resolve({"q": "x", "e": 1}, line_number=0) == {"q": "x", "extra": 1,
                                                                  "tag": "v1"}


def test_run_outputs_and_run_inputs():
    mapping = ColumnMapping.build(
        inputs(answer="string", question="string", truth="string"),
        {"answer": "${run.outputs.answer}", "question": "${run.inputs.question}",
         "truth": "${data.ground_truth}"})
    assert mapping.uses_base_run
    result = mapping.resolve({"ground_truth": "t"}, line_number=1,
                             run_outputs={"answer": "a", "line_number": 1},
                             run_inputs={"question": "q", "line_number": 1})
    assert result == {"answer": "a", "question": "q", "truth": "t"}


@pytest.mark.parametrize("value", ["${foo.x}", "${data}", "${data.}", "${run.outputs}",
                                   "${run.x}", "${inputs.x}"])
def test_malformed_reference_is_rejected_at_build(value):
    with pytest.raises(DataError) as info:
        ColumnMapping.build(inputs(x="string"), {"x": value})
    assert info.value.code == "InvalidColumnMapping"
    assert info.value.location.field == "column_mapping.x"


def test_check_unknown_column_lists_available_and_suggests():
    mapping = ColumnMapping.build(inputs(question="string"), {"question": "${data.questoin}"})
    with pytest.raises(DataError) as info:
        mapping.check(["question", "answer"], None, None)
    err = info.value
    assert err.code == "ColumnNotFound"
    assert "'questoin'" in err.message and "question, answer" in err.message
    assert "${data.question}" in err.hint


def test_check_unknown_base_run_column():
    mapping = ColumnMapping.build(inputs(a="string"), {"a": "${run.outputs.answr}"})
    with pytest.raises(DataError) as info:
        mapping.check(["x"], ["answer", "line_number"], ["question"])
    assert info.value.code == "ColumnNotFound"
    assert "base run's outputs" in info.value.message
    assert "${run.outputs.answer}" in info.value.hint
    mapping.check(["x"], ["answr"], [])


def test_check_run_reference_without_base_run():
    mapping = ColumnMapping.build(inputs(a="string"), {"a": "${run.inputs.q}"})
    with pytest.raises(DataError) as info:
        mapping.check(["q"], None, None)
    assert info.value.code == "BaseRunRequired"
    assert "--run" in info.value.hint


def test_check_data_reference_without_data():
    mapping = ColumnMapping.build(inputs(a="string"), {"a": "${data.q}"})
    with pytest.raises(DataError) as info:
        mapping.check(None, ["answer"], ["q"])
    assert info.value.code == "DataRequired"


def test_missing_column_of_a_pass_through_key():
    mapping = ColumnMapping.build(inputs(), {"extra": "${data.e}"})
    with pytest.raises(LineInputError) as info:
        mapping.resolve({}, line_number=0)
    assert "'extra' (not a flow input)" in info.value.message


def test_check_skips_implicit_mappings_but_reports_them():
    mapping = ColumnMapping.build(inputs(question="string", context="string",
                                         lang=("string", "en")), {"context": "${data.ctx}"})
    mapping.check(["ctx"], None, None)  # 'question' is implicit: not an error here
    assert mapping.missing_default_columns(["ctx"]) == ["question"]
    assert mapping.missing_default_columns(["ctx", "question"]) == []


def test_missing_column_uses_the_default():
    mapping = ColumnMapping.build(inputs(q="string", k=("int", 3)), {"k": "${data.k}"})
    assert mapping.resolve({"q": "x"}, line_number=0) == {"q": "x", "k": 3}
    assert mapping.resolve({"q": "x", "k": "7"}, line_number=0) == {"q": "x", "k": "7"}


def test_missing_column_without_default_fails_the_line():
    mapping = ColumnMapping.build(inputs(question="string"), None)
    with pytest.raises(LineInputError) as info:
        mapping.resolve({"other": 1}, line_number=4, origin="data.jsonl:5")
    err = info.value
    assert isinstance(err, InputError)
    assert err.code == "InputNotFound"
    assert err.message == ("line 4: column 'question' is missing from the data, and flow input "
                           "'question' has no default")
    assert (err.location.file, err.location.line, err.location.row) == ("data.jsonl", 5, 4)
    assert err.location.field == "inputs.question"


def test_missing_mapped_column_names_the_mapping():
    mapping = ColumnMapping.build(inputs(answer="string"), {"answer": "${run.outputs.out}"})
    with pytest.raises(LineInputError) as info:
        mapping.resolve({}, line_number=2, run_outputs={"other": 1})
    assert "column 'out' is missing from the base run's outputs" in info.value.message
    assert "${run.outputs.out}" in info.value.message


def test_defaults_are_copied_per_line():
    mapping = ColumnMapping.build(inputs(history=("list", [])), None)
    first = mapping.resolve({}, line_number=0)
    first["history"].append("mutated")
    assert mapping.resolve({}, line_number=1) == {"history": []}


def test_mapping_over_a_dataset(tmp_path):
    path = write(tmp_path / "data.csv", "q,gt\nwhat,1\nwhy,2\n")
    dataset = open_dataset(path)
    mapping = ColumnMapping.build(inputs(question="string", truth="int"),
                                  {"question": "${data.q}", "truth": "${data.gt}"})
    mapping.check(dataset.columns(), None, None)
    resolved = [mapping.resolve(r.data, line_number=r.index, origin=r.origin) for r in dataset]
    assert resolved == [{"question": "what", "truth": "1"}, {"question": "why", "truth": "2"}]


# =========================================================================== base-run joining


def test_pair_with_base_drops_lines_missing_from_the_base_run(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [{"q": i} for i in range(5)])
    base_outputs = {0: {"answer": "a0"}, 2: {"answer": "a2"}, 4: {}}
    base_inputs = {i: {"question": f"q{i}", "line_number": i} for i in range(4)}
    pairs = list(pair_with_base(open_dataset(path), base_outputs, base_inputs))
    assert [row.index for row, _, _ in pairs] == [0, 2, 4]
    assert pairs[0][1:] == ({"answer": "a0"}, {"question": "q0", "line_number": 0})
    assert pairs[2][1:] == ({}, None)


# =========================================================================== line_number column
# promptflow 1.18.5 (checked by running `pf run create` on such data): a data file with a
# `line_number` column numbers its lines from it (gaps kept: 5, 2, 9 run as lines 5, 2, 9 and
# output.jsonl is sorted by them); evaluation data is paired with the base run's lines by it.
# promptflow silently keeps the last of two rows with the same line_number, turns a row missing
# it into line NaN, and fails the whole run on a string one; pfkit refuses these rows clearly.


def test_line_number_column_numbers_the_lines(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [{"x": "a", "line_number": 5},
                                           {"x": "b", "line_number": 2},
                                           {"x": "c", "line_number": 9}])
    assert [(r.index, r.data["x"]) for r in rows_of(path)] == [(5, "a"), (2, "b"), (9, "c")]


def test_line_number_column_in_csv_and_integral_floats(tmp_path):
    csv_path = write(tmp_path / "d.csv", "x,line_number\na,4\nb,2\n")
    assert [r.index for r in rows_of(csv_path)] == [4, 2]
    floats = jsonl(tmp_path / "f.jsonl", [{"x": 1, "line_number": 1.0}, {"x": 2, "line_number": 3}])
    assert [r.index for r in rows_of(floats)] == [1, 3]


def test_line_numbers_far_apart_and_huge(tmp_path):
    numbers = [0, 7, 8, 9_999_999, 2**40, 3]
    path = jsonl(tmp_path / "data.jsonl", [{"line_number": n} for n in numbers])
    assert [r.index for r in rows_of(path)] == numbers
    again = jsonl(tmp_path / "again.jsonl", [{"line_number": 2**40}, {"line_number": 2**40}])
    with pytest.raises(DataError, match="appears twice"):
        rows_of(again)


def test_data_without_line_number_counts_from_zero(tmp_path):
    path = jsonl(tmp_path / "data.jsonl", [{"x": 1}, {"x": 2, "line_number": 7}])
    assert [r.index for r in rows_of(path)] == [0, 1]


@pytest.mark.parametrize("rows, message", [
    ([{"line_number": 1}, {"line_number": 1}], "line_number 1 appears twice"),
    ([{"line_number": 1}, {"x": 1}], "this row has no 'line_number'"),
    ([{"line_number": "seven"}], "line_number 'seven' is not a non-negative integer"),
    ([{"line_number": 1.5}], "line_number 1.5 is not"),
    ([{"line_number": -1}], "line_number -1 is not"),
    ([{"line_number": True}], "line_number True is not"),
])
def test_bad_line_numbers_are_refused_naming_the_row(tmp_path, rows, message):
    path = jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(DataError) as info:
        rows_of(path)
    err = info.value
    assert message in err.message
    assert err.location.file.endswith("data.jsonl") and err.location.line == len(rows)


def test_line_number_column_aligns_evaluation_data_with_the_base_run(tmp_path):
    # the base run's successful lines are 0, 2 and 3; the evaluation data names its lines
    path = jsonl(tmp_path / "eval.jsonl", [{"truth": "t3", "line_number": 3},
                                           {"truth": "t1", "line_number": 1},
                                           {"truth": "t0", "line_number": 0}])
    base_outputs = {0: {"answer": "a0"}, 2: {"answer": "a2"}, 3: {"answer": "a3"}}
    pairs = list(pair_with_base(open_dataset(path), base_outputs, {}))
    assert [(row.index, row.data["truth"], out["answer"]) for row, out, _ in pairs] == [
        (3, "t3", "a3"), (0, "t0", "a0")]


def test_batch_run_uses_the_line_number_column(make_flow, tmp_path, monkeypatch):
    import pfkit

    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    flow = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: string}
outputs:
  y: {type: string, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${inputs.x}"}
""", "a.py": "from promptflow.core import tool\n\n@tool\ndef a(x: str) -> str:\n    return 'got ' + x\n"})
    data = jsonl(tmp_path / "data.jsonl", [{"x": "a", "line_number": 5},
                                           {"x": "b", "line_number": 2}])
    run = pfkit.run(flow, data)
    assert sorted((line["line_number"], line["outputs"]["y"]) for line in run.lines()) == [
        (2, "got b"), (5, "got a")]


def test_readers_are_a_registry_by_suffix_and_scheme(tmp_path):
    from pfkit.data import register_reader, register_scheme
    from pfkit.data._readers import SCHEME_READERS, SUFFIX_READERS, Dataset, _JsonlPart

    assert set(SUPPORTED_EXTENSIONS) <= set(SUFFIX_READERS) and "hf:" in SCHEME_READERS
    lines = tmp_path / "rows.ndjson"
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    register_reader(".ndjson", _JsonlPart)
    register_scheme("mem:", lambda text: Dataset(text, [_JsonlPart(lines)]))
    try:
        assert [row.data for row in open_dataset(lines)] == [{"a": 1}, {"a": 2}]
        assert [row.data["a"] for row in open_dataset("mem:anything")] == [1, 2]
    finally:
        del SUFFIX_READERS[".ndjson"], SCHEME_READERS["mem:"]
    with pytest.raises(DataError, match="unsupported data file type"):
        open_dataset(lines)
