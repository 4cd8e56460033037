"""Column mapping: which data column (or base-run column, or literal) feeds each flow input.

Rules (promptflow 1.18.5, with per-line errors instead of a failed batch):

* Values: ``${data.COL}``, ``${run.outputs.COL}``, ``${run.inputs.COL}`` or a literal (any
  non-string, or a string that is not exactly ``${...}``). pfkit adds ``${run.line.FIELD}``: a
  field of the base run's line record (``duration``, ``prompt_tokens``, ``completion_tokens``,
  ``total_tokens``, ``model_calls``), for evaluators of latency and token budgets. ``COL`` is a column name taken
  literally: ``${data.a.b}`` reads the column named ``a.b``.
* A ``line_number`` key is ignored (reserved). Keys that are not flow inputs are passed through.
* Flow inputs without a YAML default that are not mapped get ``${data.<input>}`` implicitly;
  inputs with a (non-null) default keep it unless mapped, even when the data has that column.
* A line lacking a mapped column uses the input's default, else that line fails
  (:class:`LineInputError`, code ``InputNotFound``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import Location
from ._errors import DataError, LineInputError
from ._readers import Row

if TYPE_CHECKING:  # pragma: no cover - only for annotations; keeps the import light
    from ..spec._models import InputDef

DATA = "data"
RUN_OUTPUTS = "run.outputs"
RUN_INPUTS = "run.inputs"
RUN_LINE = "run.line"  # pfkit: the base run's line record (duration, token counts)
SOURCES: tuple[str, ...] = (DATA, RUN_OUTPUTS, RUN_INPUTS, RUN_LINE)
LINE_NUMBER = "line_number"

_REFERENCE = re.compile(r"^\$\{([^{}]+)\}$")
_SOURCE_NAMES = {DATA: "the data", RUN_OUTPUTS: "the base run's outputs",
                 RUN_INPUTS: "the base run's inputs", RUN_LINE: "the base run's line records"}
_NO_VALUE: Any = object()


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """A reference to one column of a source (``data``, ``run.outputs`` or ``run.inputs``)."""

    source: str
    column: str

    def __str__(self) -> str:
        return "${" + f"{self.source}.{self.column}" + "}"


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """How one flow input (or pass-through key) gets its value on every line.

    Either ``ref`` (read a column) or ``value`` (a literal, or the input's default when the
    input is not mapped). ``explicit`` is True for entries the user wrote.
    """

    name: str
    ref: ColumnRef | None
    value: Any
    explicit: bool
    default: Any = _NO_VALUE
    is_input: bool = True

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_VALUE


def parse_mapping_value(name: str, value: Any) -> ColumnRef | None:
    """The column a mapping value reads, or None for a literal. Raises on a malformed ``${}``."""
    if not isinstance(value, str):
        return None
    match = _REFERENCE.match(value)
    if match is None:
        return None
    expression = match.group(1).strip()
    for source in SOURCES:
        prefix = source + "."
        if expression.startswith(prefix) and len(expression) > len(prefix):
            return ColumnRef(source, expression[len(prefix):])
    raise DataError(
        f"column mapping '{name}={value}' does not name a column of data or of a base run",
        code="InvalidColumnMapping", location=Location(field=f"column_mapping.{name}"),
        hint="Use ${data.COLUMN}, ${run.outputs.COLUMN}, ${run.inputs.COLUMN}, "
             "${run.line.duration|total_tokens|...} or a literal value.")


def _default_of(definition: InputDef | None) -> Any:
    if definition is None or not definition.has_default:
        return _NO_VALUE
    return definition.default


def _copy(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


class ColumnMapping:
    """The resolved mapping of a batch run; build it with :meth:`ColumnMapping.build`."""

    def __init__(self, entries: tuple[MappingEntry, ...]) -> None:
        self.entries = entries

    def __repr__(self) -> str:
        parts = [f"{e.name}={e.ref if e.ref else repr(e.value)}" for e in self.entries]
        return f"ColumnMapping({', '.join(parts)})"

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, flow_inputs: Mapping[str, InputDef],
              mapping: Mapping[str, Any] | None) -> ColumnMapping:
        """Combine the user's mapping with promptflow's default mapping for ``flow_inputs``."""
        mapping = {k: v for k, v in (mapping or {}).items() if k != LINE_NUMBER}
        entries = [cls._entry(name, flow_inputs.get(name), mapping) for name in flow_inputs]
        entries.extend(cls._explicit(name, value, None, is_input=False)
                       for name, value in mapping.items() if name not in flow_inputs)
        return cls(tuple(entries))

    @classmethod
    def _entry(cls, name: str, definition: InputDef | None,
               mapping: Mapping[str, Any]) -> MappingEntry:
        if name in mapping:
            return cls._explicit(name, mapping[name], definition)
        default = _default_of(definition)
        # promptflow treats `default: null` as no default here: the input reads ${data.<name>}.
        if default is _NO_VALUE or default is None:
            return MappingEntry(name, ColumnRef(DATA, name), None, False, default)
        return MappingEntry(name, None, default, False, default)

    @staticmethod
    def _explicit(name: str, value: Any, definition: InputDef | None, *,
                  is_input: bool = True) -> MappingEntry:
        ref = parse_mapping_value(name, value)
        return MappingEntry(name, ref, None if ref else value, True, _default_of(definition),
                            is_input)

    # ---------------------------------------------------------------- inspecting

    def uses_source(self, source: str) -> bool:
        return any(e.ref is not None and e.ref.source == source for e in self.entries)

    @property
    def uses_base_run(self) -> bool:
        """Whether any entry reads ``${run.outputs.*}`` or ``${run.inputs.*}``."""
        return any(e.ref is not None and e.ref.source != DATA for e in self.entries)

    def missing_default_columns(self, data_columns: Iterable[str] | None) -> list[str]:
        """Columns of implicit ``${data.<input>}`` mappings absent from ``data_columns`` (for a
        warning: lines then fail unless a row has the column)."""
        present = set(data_columns or ())
        return [e.ref.column for e in self.entries
                if e.ref is not None and not e.explicit and e.ref.column not in present]

    def check(self, data_columns: list[str] | None, run_output_columns: list[str] | None = None,
              run_input_columns: list[str] | None = None,
              run_line_columns: list[str] | None = None) -> None:
        """Before the run: every explicit mapping must name an existing column of an existing
        source. ``None`` means the source is absent (no ``--data`` / no ``--run``)."""
        available = {DATA: data_columns, RUN_OUTPUTS: run_output_columns,
                     RUN_INPUTS: run_input_columns, RUN_LINE: run_line_columns}
        for entry in self.entries:
            if entry.ref is None or not entry.explicit:
                continue
            columns = available[entry.ref.source]
            if columns is None:
                raise _missing_source(entry)
            if entry.ref.column not in columns:
                raise _column_not_found(entry, list(columns))

    # ---------------------------------------------------------------- resolving

    def resolve(self, row: Mapping[str, Any], *, line_number: int,
                run_outputs: Mapping[str, Any] | None = None,
                run_inputs: Mapping[str, Any] | None = None,
                origin: str | None = None,
                run_line: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The flow inputs for one line (defaults included, ``line_number`` not).

        ``origin`` (``data.jsonl:5``) is only used to say where a failing line came from.
        """
        tables = {DATA: row, RUN_OUTPUTS: run_outputs, RUN_INPUTS: run_inputs,
                  RUN_LINE: run_line}
        inputs: dict[str, Any] = {}
        for entry in self.entries:
            if entry.ref is None:
                inputs[entry.name] = _copy(entry.value)
                continue
            table = tables[entry.ref.source]
            if table is None:
                raise _missing_source(entry)
            if entry.ref.column in table:
                inputs[entry.name] = table[entry.ref.column]
            elif entry.has_default:
                inputs[entry.name] = _copy(entry.default)
            else:
                raise _line_input_missing(entry, line_number, origin)
        return inputs


def _missing_source(entry: MappingEntry) -> DataError:
    assert entry.ref is not None
    where = Location(field=f"column_mapping.{entry.name}")
    if entry.ref.source == DATA:
        return DataError(f"column mapping '{entry.name}={entry.ref}' reads the data, but no data "
                         "was given", code="DataRequired", location=where,
                         hint="Pass --data PATH.")
    return DataError(f"column mapping '{entry.name}={entry.ref}' reads a base run, but no base "
                     "run was given", code="BaseRunRequired", location=where,
                     hint="Pass --run BASE_RUN (a completed run), or map the input to "
                          "${data.COLUMN}.")


def _column_not_found(entry: MappingEntry, columns: list[str]) -> DataError:
    import difflib

    assert entry.ref is not None
    listed = ", ".join(columns) if columns else "none"
    message = (f"column mapping '{entry.name}={entry.ref}': column '{entry.ref.column}' is not in "
               f"{_SOURCE_NAMES[entry.ref.source]} (columns: {listed})")
    close = difflib.get_close_matches(entry.ref.column, columns, n=1)
    if close:
        suggestion = ColumnRef(entry.ref.source, close[0])
        hint = f"Did you mean {entry.name}='{suggestion}'?"
    else:
        hint = "Map the input to one of the available columns."
    return DataError(message, code="ColumnNotFound", hint=hint,
                     location=Location(field=f"column_mapping.{entry.name}"))


def _line_input_missing(entry: MappingEntry, line_number: int, origin: str | None) -> LineInputError:
    assert entry.ref is not None
    source = _SOURCE_NAMES[entry.ref.source]
    if not entry.is_input:
        target = f"'{entry.name}' (not a flow input) has no default"
    elif entry.name == entry.ref.column:
        target = f"flow input '{entry.name}' has no default"
    else:
        target = f"flow input '{entry.name}' (mapped to {entry.ref}) has no default"
    message = (f"line {line_number}: column '{entry.ref.column}' is missing from {source}, "
               f"and {target}")
    file, _, line = (origin or "").rpartition(":")
    location = Location(file=file or None, line=int(line) if file and line.isdigit() else None,
                        field=f"inputs.{entry.name}", row=line_number)
    return LineInputError(message, code="InputNotFound", location=location,
                          hint=f"Add '{entry.ref.column}' to this row, map '{entry.name}' to "
                               "another column, or give the input a default in flow.dag.yaml.")


LINE_FIELDS = ("duration", "prompt_tokens", "completion_tokens", "total_tokens", "model_calls")


def line_fields(duration: float, usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``${run.line.FIELD}`` reads from one base-run line record."""
    usage = usage or {}
    return {"duration": duration, "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0), "model_calls": usage.get("calls", 0)}


def pair_with_base(rows: Iterable[Row], base_outputs: Mapping[int, dict],
                   base_inputs: Mapping[int, dict]
                   ) -> Iterator[tuple[Row, dict | None, dict | None]]:
    """Join data rows with a base run by line number, for evaluation runs.

    Yields ``(row, base outputs, base inputs)`` only for rows whose line number has outputs in
    the base run (its successful lines); other rows are dropped, as promptflow drops incomplete
    lines.
    """
    for row in rows:
        if row.index in base_outputs:
            yield row, base_outputs[row.index], base_inputs.get(row.index)
