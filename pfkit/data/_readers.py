"""Datasets for batch runs: stream rows from jsonl, json, csv, tsv, parquet, folders and Hugging Face.

``open_dataset(source)`` checks the source and returns a lazy :class:`Dataset`; rows are read only
when it is iterated, one at a time, so memory stays flat however large the file is. Only ``.json``
is parsed whole (its text is held in memory; the rows are still decoded one by one).

Values follow promptflow 1.18.5, which reads data with pandas using ``dtype=object``:

* jsonl / json: values as JSON gives them (numbers stay int/float, ``null`` is ``None``).
* csv / tsv: **every value is a string** and empty cells are ``""`` (promptflow reads csv with
  ``dtype=object, keep_default_na=False``; the flow inputs' types convert them later, so
  ``"3"`` feeds an ``int`` input as 3). ``NA``/``null`` stay the strings they are. A row
  shorter than the header gets ``""`` for the missing cells, a longer one is an error.
  Blank lines are skipped. Duplicate header names become ``a``, ``a.1``, ... and empty ones
  ``Unnamed: <position>``, as pandas names them.
* parquet: native Python values (``int``, ``float``, ``list``, ``dict``, ``datetime``, ``None``
  for nulls) where pandas would give numpy scalars, arrays and NaN.

Deliberate differences from promptflow's pandas reading (pfkit never invents values):

* jsonl / json: a key missing from a row stays missing (pandas fills NaN), so the column mapping
  uses the input's default or fails that line; ``null`` is ``None`` (pandas: NaN); columns named
  like dates (``timestamp``, ``*_at``) are not turned into timestamps.
* ``.json`` holding one object is one row (pandas would read a column-oriented object).
* A folder: only the supported files directly in it, sorted by name (promptflow walks
  sub-folders in directory order and tries unknown files as jsonl).
* A single file with an unsupported extension is an error (promptflow tries it as jsonl).

Image cells (``{"data:image/png;path": "a.png"}``, at any depth in a cell) are resolved relative
to the folder of the data file and must stay inside it (or inside ``PFKIT_IMAGE_ROOTS``): a path
elsewhere (``/etc/passwd``, ``../x``, a symlink out) fails the lines that read it as an image.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import Location
from ._errors import DataError

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
HF_DISK_MARKERS: tuple[str, ...] = ("dataset_info.json", "state.json", "dataset_dict.json")
HF_PREFIX = "hf:"

_BOM = b"\xef\xbb\xbf"
_IMAGE_PATH_KEY = re.compile(r"^data:image/[^;]+;path$")
_JSON_WS = re.compile(r"[ \t\n\r]*")
_PARQUET_BATCH = 1024
_HF_BATCH = 1024
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: ``index`` is the 0-based line number across the whole dataset (or the row's
    own ``line_number`` when the data has that column), ``origin``
    where it came from (``data.jsonl:12``: file name and 1-based line, or record number for
    parquet and Hugging Face data)."""

    index: int
    data: dict[str, Any]
    origin: str


class _Part(Protocol):
    """One readable unit of a dataset (a file, or a Hugging Face dataset)."""

    label: str

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]: ...

    def columns(self) -> list[str]: ...

    def count(self) -> int: ...


class Dataset:
    """A lazy, re-iterable sequence of :class:`Row`; every iteration reads the source again."""

    def __init__(self, source: str, parts: list[_Part]) -> None:
        self.source = source
        self._parts = parts

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}, parts={len(self._parts)})"

    @property
    def parts(self) -> tuple[str, ...]:
        """The labels of the files (or datasets) read, in order."""
        return tuple(part.label for part in self._parts)

    def __iter__(self) -> Iterator[Row]:
        index = 0
        numbered: bool | None = None  # the data has a line_number column (decided on row 1)
        seen = _NumberSet()
        for part in self._parts:
            for line, data in part.records():
                origin = f"{part.label}:{line}"
                if numbered is None:
                    numbered = LINE_NUMBER_COLUMN in data
                if numbered:
                    number = _line_number_of(data, part, line, seen)
                    seen.add(number)
                    yield Row(number, data, origin)
                else:
                    yield Row(index, data, origin)
                index += 1

    def columns(self) -> list[str]:
        """Column names: the csv header, else the keys of each part's first row (a union, in
        order, for folders). Reads only the start of each file."""
        names: dict[str, None] = {}
        for part in self._parts:
            names.update(dict.fromkeys(part.columns()))
        return list(names)

    def count(self) -> int:
        """The number of rows, without keeping rows in memory (may scan the files once)."""
        return sum(part.count() for part in self._parts)


LINE_NUMBER_COLUMN = "line_number"


class _NumberSet:
    """The line numbers seen so far: a bitmap (an eighth of a byte a line) for the usual
    numbers, a set for huge ones, so a million-line dataset costs well under a megabyte."""

    _BITMAP_LIMIT = 1 << 27

    def __init__(self) -> None:
        self._bits = bytearray()
        self._big: set[int] = set()

    def __contains__(self, number: int) -> bool:
        if number >= self._BITMAP_LIMIT:
            return number in self._big
        byte = number >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (number & 7)))

    def add(self, number: int) -> None:
        if number >= self._BITMAP_LIMIT:
            self._big.add(number)
            return
        byte = number >> 3
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        self._bits[byte] |= 1 << (number & 7)


def _line_number_of(data: dict[str, Any], part: _Part, line: int, seen: _NumberSet) -> int:
    """A row's own line number (promptflow numbers lines from a ``line_number`` column when the
    data has one, e.g. evaluation data aligned with a base run): a non-negative integer (``3``,
    ``3.0`` or ``"3"``), present in every row, never repeated."""
    path = Path(getattr(part, "path", part.label))
    if LINE_NUMBER_COLUMN not in data:
        raise _invalid(path, line, "this row has no 'line_number' but the first row has one",
                       "Give every row a line_number, or none (lines are then numbered from 0).")
    value = data[LINE_NUMBER_COLUMN]
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 0:
        raise _invalid(path, line, f"line_number {value!r} is not a non-negative integer",
                       "line_number must be a whole number such as 0, 1, 2 (the base run's "
                       "line numbers for evaluation data).")
    if number in seen:
        raise _invalid(path, line, f"line_number {number} appears twice (again on this row)",
                       "Each row needs its own line_number (promptflow would silently keep only "
                       "the last of these rows).")
    return number


# --------------------------------------------------------------------------- opening sources


def open_dataset(source: str | Path) -> Dataset:
    """Open ``source``: a data file, a folder of data files, a Hugging Face ``save_to_disk``
    folder, or ``hf:NAME[:SPLIT]`` (a dataset in the local Hugging Face cache; never downloads).

    Nothing but the folder listing (or the Hugging Face dataset's memory map) is read here.
    """
    text = os.fspath(source)
    if isinstance(source, str):
        for prefix, opener in SCHEME_READERS.items():
            if text.startswith(prefix):
                return opener(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {text}", code="DataNotFound",
                        location=Location(file=text),
                        hint="Check the --data path (relative paths start at the current folder).")
    if path.is_dir():
        if is_hf_disk_folder(path):
            return Dataset(text, [_load_hf_from_disk(path, None, text)])
        return Dataset(text, _folder_parts(path, text))
    return Dataset(text, [_file_part(path)])


def is_hf_disk_folder(path: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return any((path / marker).is_file() for marker in HF_DISK_MARKERS)


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUFFIX_READERS


def _folder_parts(folder: Path, text: str) -> list[_Part]:
    """Every supported file directly in ``folder``, sorted by name (sub-folders are not read)."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and _supported(p)),
                   key=lambda p: p.name)
    if not files:
        raise DataError(f"folder {text} has no data files", code="DataNotFound",
                        location=Location(file=text),
                        hint=f"Put {_extensions()} files in it (other files are ignored).")
    return [_file_part(p) for p in files]


# Readers by file suffix (a file -> its part) and by source prefix (``hf:NAME`` -> a dataset):
# ``register_reader(".xlsx", factory)`` / ``register_scheme("s3://", opener)`` add more.
SUFFIX_READERS: dict[str, Callable[[Path], Any]] = {}
SCHEME_READERS: dict[str, Callable[[str], Dataset]] = {}


def register_reader(suffix: str, factory: Callable[[Path], Any]) -> None:
    """Read files ending in ``suffix`` with ``factory(path)`` (an object with the part protocol
    of the built-in readers: ``label``, ``count()``, ``columns()``, iteration of rows)."""
    SUFFIX_READERS[suffix.lower()] = factory


def register_scheme(prefix: str, opener: Callable[[str], Dataset]) -> None:
    """Open sources starting with ``prefix`` (e.g. ``hf:``) with ``opener(text)``."""
    SCHEME_READERS[prefix] = opener


def _file_part(path: Path) -> _Part:
    factory = SUFFIX_READERS.get(path.suffix.lower())
    if factory is not None:
        return factory(path)
    raise DataError(f"unsupported data file type '{path.suffix or path.name}'",
                    code="UnsupportedDataFormat", location=Location(file=str(path)),
                    hint=f"Supported: {_extensions()}, a folder of those, or hf:NAME[:SPLIT].")


def _extensions() -> str:
    return ", ".join(SUFFIX_READERS)


# --------------------------------------------------------------------------- shared helpers


def _invalid(path: Path, line: int | None, message: str, hint: str) -> DataError:
    return DataError(message, code="InvalidData", location=Location(file=str(path), line=line),
                     hint=hint)


@contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    try:
        handle = open(path, "rb")  # closed by the with below
    except FileNotFoundError:
        raise DataError(f"data not found: {path}", code="DataNotFound",
                        location=Location(file=str(path)),
                        hint="The file disappeared after the run started.") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})", code="InvalidData",
                        location=Location(file=str(path)),
                        hint="Check the file's permissions.") from None
    with handle:
        yield handle


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) with a leading UTF-8 BOM removed."""
    first = handle.readline()
    if not first:
        return
    yield 1, first[len(_BOM):] if first.startswith(_BOM) else first
    yield from enumerate(handle, 2)


def _is_blank(raw: bytes) -> bool:
    return not raw or raw.isspace()


_decode_json = json.JSONDecoder().decode


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def resolve_image_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with relative image paths (``{"data:image/png;path": "a.png"}`` in any cell, at
    any depth) made absolute against ``folder``. Returns ``data`` itself when nothing changes."""
    changed: dict[str, Any] | None = None
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            new = _resolve_value(value, folder)
            if new is not value:
                changed = changed if changed is not None else dict(data)
                changed[key] = new
    return changed if changed is not None else data


def _resolve_value(value: Any, folder: Path) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if isinstance(key, str) and isinstance(inner, str) and _IMAGE_PATH_KEY.match(key):
                return _checked_image(key, inner, folder)
        return resolve_image_paths(value, folder)
    if isinstance(value, list):
        items = [_resolve_value(item, folder) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _checked_image(key: str, path: str, folder: Path) -> dict[str, str]:
    """An image path from a data row, made absolute against the data file's folder and checked
    to stay inside it (or inside ``PFKIT_IMAGE_ROOTS``), symlinks resolved: data rows never
    choose a file elsewhere on the machine. A refused path fails only the lines that use it."""
    from ..nodes._images import (
        CheckedImagePath,
        ImageInputError,
        RefusedImagePath,
        allowed_roots,
        check_image_path,
    )

    absolute = path if os.path.isabs(path) else os.path.abspath(os.path.join(folder, path))
    try:
        check_image_path(path, folder, allowed_roots([folder]))
    except ImageInputError as exc:
        return RefusedImagePath({key: absolute}, str(exc))
    return CheckedImagePath({key: absolute})


# --------------------------------------------------------------------------- jsonl


class _JsonlPart:
    """JSON Lines: one object per line, blank lines skipped, read line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name
        self.folder = Path(os.path.abspath(path.parent))

    @property
    def _hint(self) -> str:
        return f"Each line of {self.label} must be one JSON object, like {{\"question\": \"...\"}}."

    def _content_lines(self) -> Iterator[tuple[int, bytes]]:
        with _open_binary(self.path) as handle:
            for number, raw in _lines(handle):
                if not _is_blank(raw):
                    yield number, raw

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        # The hot loop of large batch runs: kept flat on purpose.
        folder = self.folder
        with _open_binary(self.path) as handle:
            for number, raw in _lines(handle):
                if not raw or raw.isspace():
                    continue
                try:
                    value = _decode_json(raw.decode("utf-8"))
                except ValueError as exc:
                    raise self._parse_error(number, exc) from None
                if type(value) is not dict:
                    raise _invalid(self.path, number,
                                   f"expected a JSON object, got {_json_kind(value)}", self._hint)
                if b"data:image" in raw:  # cheap test before walking the row for image cells
                    value = resolve_image_paths(value, folder)
                yield number, value

    def _parse_error(self, number: int, exc: ValueError) -> DataError:
        if isinstance(exc, json.JSONDecodeError):
            return _invalid(self.path, number, f"not valid JSON ({exc.msg})",
                            f"{self._hint} The error is at column {exc.colno}.")
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
        return _invalid(self.path, number, f"not UTF-8 text ({reason})", "Save the file as UTF-8.")

    def columns(self) -> list[str]:
        for _, data in self.records():
            return list(data)
        return []

    def count(self) -> int:
        return sum(1 for _ in self._content_lines())


# --------------------------------------------------------------------------- json


class _JsonPart:
    """A JSON file holding an array of objects (or one object: one row).

    The text is read whole (JSON cannot be streamed with the standard library), but items are
    decoded one at a time, so only the text and the current row are in memory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name
        self.folder = Path(os.path.abspath(path.parent))

    def _text(self) -> str:
        with _open_binary(self.path) as handle:
            raw = handle.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise _invalid(self.path, line, f"not UTF-8 text ({exc.reason})",
                           "Save the file as UTF-8.") from None

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for position, (line, value) in enumerate(_json_items(self._text(), self.path), 1):
            if not isinstance(value, dict):
                raise _invalid(self.path, line,
                               f"item {position} is not a JSON object (got {_json_kind(value)})",
                               "A .json data file holds an array of objects, one per row.")
            yield line, resolve_image_paths(value, self.folder)

    def columns(self) -> list[str]:
        for _, data in self.records():
            return list(data)
        return []

    def count(self) -> int:
        return sum(1 for _ in _json_items(self._text(), self.path))


def _skip_ws(text: str, pos: int) -> int:
    match = _JSON_WS.match(text, pos)
    return match.end() if match else pos


def _json_error(text: str, pos: int, path: Path, message: str) -> DataError:
    line = text.count("\n", 0, pos) + 1
    return _invalid(path, line, f"not valid JSON ({message})",
                    "A .json data file holds an array of objects, one per row.")


def _decode_at(decoder: json.JSONDecoder, text: str, pos: int, path: Path) -> tuple[Any, int]:
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _json_error(text, exc.pos, path, exc.msg) from None


def _json_items(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """The rows of a JSON document as (1-based line where each starts, value)."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos == len(text):
        return
    if text[pos] != "[":
        value, end = _decode_at(decoder, text, pos, path)
        _expect_end(text, end, path)
        yield text.count("\n", 0, pos) + 1, value
        return
    pos = _skip_ws(text, pos + 1)
    line, counted = 1 + text.count("\n", 0, pos), pos
    if text.startswith("]", pos):
        _expect_end(text, pos + 1, path)
        return
    while True:
        line, counted = line + text.count("\n", counted, pos), pos
        value, pos = _decode_at(decoder, text, pos, path)
        yield line, value
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("]", pos):
            _expect_end(text, pos + 1, path)
            return
        else:
            raise _json_error(text, pos, path, "Expecting ',' delimiter")


def _expect_end(text: str, pos: int, path: Path) -> None:
    pos = _skip_ws(text, pos)
    if pos != len(text):
        raise _json_error(text, pos, path, "Extra data")


# --------------------------------------------------------------------------- csv / tsv


class _CsvPart:
    """CSV or TSV with a header row; values are strings (promptflow's pandas ``dtype=object``)."""

    def __init__(self, path: Path, delimiter: str) -> None:
        self.path = path
        self.label = path.name
        self.delimiter = delimiter

    @property
    def _kind(self) -> str:
        return "CSV" if self.delimiter == "," else "TSV"

    def _decoded(self, handle: IO[bytes]) -> Iterator[str]:
        for number, raw in _lines(handle):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _invalid(self.path, number, f"not UTF-8 text ({exc.reason})",
                               "Save the file as UTF-8.") from None

    def _records(self, handle: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
        """(1-based line where the record starts, fields), blank lines skipped."""
        csv.field_size_limit(_CSV_FIELD_LIMIT)
        reader = csv.reader(self._decoded(handle), delimiter=self.delimiter)
        end = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _invalid(self.path, reader.line_num, f"not valid {self._kind} ({exc})",
                               "Check the quoting on this line.") from None
            start, end = end + 1, reader.line_num
            if fields:
                yield start, fields

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        with _open_binary(self.path) as handle:
            records = self._records(handle)
            first = next(records, None)
            if first is None:
                return
            names = header_names(first[1])
            for line, fields in records:
                if len(fields) > len(names):
                    raise self._too_many(line, len(fields), len(names))
                if len(fields) < len(names):  # pandas fills missing trailing cells with ""
                    fields = fields + [""] * (len(names) - len(fields))
                yield line, dict(zip(names, fields, strict=True))

    def _too_many(self, line: int, got: int, expected: int) -> DataError:
        sep = "commas" if self.delimiter == "," else "tabs"
        return _invalid(self.path, line,
                        f"row has {got} fields but the header has {expected}",
                        f"Quote values that contain {sep} (\"a, b\"), or add the missing "
                        "column names to the header.")

    def columns(self) -> list[str]:
        with _open_binary(self.path) as handle:
            first = next(self._records(handle), None)
        return header_names(first[1]) if first else []

    def count(self) -> int:
        with _open_binary(self.path) as handle:
            return max(sum(1 for _ in self._records(handle)) - 1, 0)


def header_names(fields: list[str]) -> list[str]:
    """Column names as pandas makes them: empty -> ``Unnamed: i``; repeats -> ``a.1``, ``a.2``."""
    names: list[str] = []
    used: set[str] = set()
    for position, field in enumerate(fields):
        base = field or f"Unnamed: {position}"
        name, suffix = base, 1
        while name in used:
            name, suffix = f"{base}.{suffix}", suffix + 1
        used.add(name)
        names.append(name)
    return names


# --------------------------------------------------------------------------- parquet


def _import_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet data needs pyarrow, which is not installed",
                        code="MissingDependency", hint="pip install pyarrow") from None
    return pq


class _ParquetPart:
    """A parquet file streamed in record batches; origins use the 1-based record number."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name
        self.folder = Path(os.path.abspath(path.parent))
        self._pq = _import_parquet()

    @contextmanager
    def _file(self) -> Iterator[Any]:
        if not self.path.is_file():
            raise DataError(f"data not found: {self.path}", code="DataNotFound",
                            location=Location(file=str(self.path)))
        try:
            handle = self._pq.ParquetFile(str(self.path))
        except Exception as exc:  # pyarrow.ArrowInvalid and friends
            raise _invalid(self.path, None, f"not a valid parquet file ({exc})",
                           "Check that the file was written completely.") from None
        try:
            yield handle
        finally:
            close = getattr(handle, "close", None)
            if close is not None:
                close()

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        with self._file() as handle:
            number = 0
            for batch in handle.iter_batches(batch_size=_PARQUET_BATCH):
                for record in batch.to_pylist():
                    number += 1
                    yield number, resolve_image_paths(record, self.folder)

    def columns(self) -> list[str]:
        with self._file() as handle:
            return list(handle.schema_arrow.names)

    def count(self) -> int:
        with self._file() as handle:
            return int(handle.metadata.num_rows)


# --------------------------------------------------------------------------- Hugging Face


_OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("reading Hugging Face datasets needs the 'datasets' package, "
                        "which is not installed", code="MissingDependency",
                        hint="pip install 'pfkit[hf]'") from None
    return datasets


class _HfPart:
    """A Hugging Face ``datasets.Dataset`` (memory-mapped arrow), read in batches."""

    def __init__(self, dataset: Any, label: str) -> None:
        self._dataset = dataset
        self.label = label

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        number = 0
        for batch in self._dataset.iter(batch_size=_HF_BATCH):
            keys = list(batch)
            for values in zip(*batch.values(), strict=True):
                number += 1
                yield number, dict(zip(keys, values, strict=True))

    def columns(self) -> list[str]:
        return list(self._dataset.column_names)

    def count(self) -> int:
        return int(self._dataset.num_rows)


def _open_hf_source(text: str) -> Dataset:
    """``hf:NAME[:SPLIT]``: a local ``save_to_disk`` folder, or a cached hub dataset."""
    name, _, split = text[len(HF_PREFIX):].partition(":")
    if not name:
        raise DataError(f"'{text}' names no dataset", code="InvalidData",
                        hint="Write hf:NAME or hf:NAME:SPLIT, e.g. hf:squad:validation.")
    folder = Path(name).expanduser()
    if folder.is_dir() and is_hf_disk_folder(folder):
        return Dataset(text, [_load_hf_from_disk(folder, split or None, text)])
    return Dataset(text, [_load_hf_cached(name, split or "train", text)])


def _load_hf_from_disk(path: Path, split: str | None, text: str) -> _HfPart:
    datasets = _import_datasets()
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # the library raises several types for a damaged folder
        raise DataError(f"cannot load the Hugging Face dataset in {path} ({exc})",
                        code="InvalidData", location=Location(file=text),
                        hint="The folder must be written by Dataset.save_to_disk.") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = _pick_split(list(loaded), split, text)
        return _HfPart(loaded[split], f"{path.name}[{split}]")
    if split:
        raise DataError(f"{path} holds a single dataset, not splits; cannot select '{split}'",
                        code="InvalidData", location=Location(file=text),
                        hint=f"Use hf:{path} or just {path}.")
    return _HfPart(loaded, path.name)


def _pick_split(splits: list[str], wanted: str | None, text: str) -> str:
    if wanted is None:
        if "train" in splits or len(splits) != 1:
            wanted = "train"
        else:
            wanted = splits[0]
    if wanted not in splits:
        raise DataError(f"split '{wanted}' not found in {text} (splits: {', '.join(splits)})",
                        code="DataNotFound", location=Location(file=text),
                        hint=f"Pick one: hf:PATH:{splits[0] if splits else 'SPLIT'}.")
    return wanted


def _load_hf_cached(name: str, split: str, text: str) -> _HfPart:
    datasets = _import_datasets()
    with _hf_offline(datasets):
        try:
            loaded = datasets.load_dataset(name, split=split,
                                           download_mode="reuse_dataset_if_exists")
        except Exception as exc:  # offline errors come in many types
            raise DataError(
                f"Hugging Face dataset '{name}' (split '{split}') could not be loaded from the "
                f"local cache ({type(exc).__name__}: {exc})", code="DataNotFound",
                location=Location(file=text),
                hint="pfkit never downloads data sets. Download it once where there is network "
                     f"access (datasets.load_dataset({name!r}, split={split!r})), or pass a "
                     "folder written by save_to_disk.") from None
    return _HfPart(loaded, f"{name}[{split}]")


@contextmanager
def _hf_offline(datasets: Any) -> Iterator[None]:
    """Force the datasets library (and huggingface_hub) offline for the duration of a load."""
    targets: list[tuple[Any, str]] = [(datasets.config, "HF_HUB_OFFLINE"),
                                      (datasets.config, "HF_DATASETS_OFFLINE")]
    try:
        from huggingface_hub import constants as hub_constants

        targets.append((hub_constants, "HF_HUB_OFFLINE"))
    except ImportError:  # pragma: no cover - datasets depends on it
        pass
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr in targets if hasattr(obj, attr)]
    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    try:
        for obj, attr, _ in saved:
            setattr(obj, attr, True)
        os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


register_reader(".jsonl", _JsonlPart)
register_reader(".json", _JsonPart)
register_reader(".csv", lambda path: _CsvPart(path, ","))
register_reader(".tsv", lambda path: _CsvPart(path, "\t"))
register_reader(".parquet", _ParquetPart)
register_scheme(HF_PREFIX, _open_hf_source)
