"""The dataset layer of batch runs: reading data files and mapping columns to flow inputs.

``open_dataset(path)`` streams :class:`Row` objects from jsonl, json, csv, tsv, parquet, a folder
of those, or a Hugging Face dataset; :class:`ColumnMapping` turns each row (plus a base run's
outputs and inputs for evaluation runs) into the flow inputs of one line.
"""

from __future__ import annotations

from ._errors import DataError, LineInputError
from ._mapping import (
    DATA,
    LINE_FIELDS,
    RUN_INPUTS,
    RUN_LINE,
    RUN_OUTPUTS,
    ColumnMapping,
    ColumnRef,
    MappingEntry,
    line_fields,
    pair_with_base,
    parse_mapping_value,
)
from ._readers import (
    SUPPORTED_EXTENSIONS,
    Dataset,
    Row,
    header_names,
    is_hf_disk_folder,
    open_dataset,
    register_reader,
    register_scheme,
    resolve_image_paths,
)

__all__ = [
    "DATA",
    "LINE_FIELDS",
    "RUN_INPUTS",
    "RUN_LINE",
    "RUN_OUTPUTS",
    "SUPPORTED_EXTENSIONS",
    "ColumnMapping",
    "ColumnRef",
    "DataError",
    "Dataset",
    "LineInputError",
    "MappingEntry",
    "Row",
    "header_names",
    "is_hf_disk_folder",
    "line_fields",
    "open_dataset",
    "pair_with_base",
    "parse_mapping_value",
    "register_reader",
    "register_scheme",
    "resolve_image_paths",
]
