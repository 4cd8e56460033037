"""Errors of the dataset layer: bad data files, bad column mappings, missing line inputs."""

from __future__ import annotations

from ..errors import InputError, UserError


class DataError(UserError):
    """The data (or the column mapping over it) is unusable; raised before or while reading rows.

    Codes: ``InvalidData`` (malformed file, with file and line), ``DataNotFound`` (missing file,
    empty folder, uncached Hugging Face dataset), ``UnsupportedDataFormat``, ``MissingDependency``
    (pyarrow / datasets not installed), ``InvalidColumnMapping``, ``ColumnNotFound``,
    ``BaseRunRequired`` and ``DataRequired``.
    """

    default_code = "InvalidData"


class LineInputError(InputError):
    """One line of a batch run lacks a mapped column and the flow input has no default.

    A per-line problem: the batch goes on and this line fails (code ``InputNotFound``).
    """

    default_code = "InputNotFound"
