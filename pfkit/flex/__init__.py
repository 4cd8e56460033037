"""Flex flows (``flow.flex.yaml``: a Python function or class as the flow) and ``.prompty``
files, run by pfkit's engine like DAG flows (see :mod:`pfkit.flex._flow`)."""

from ._flow import FlexFlow, PromptyFlow, load_flex, load_prompty_flow
from ._spec import FLEX_FILE_NAMES, FlexSpec, find_flex_file, load_flex_spec

__all__ = ["FLEX_FILE_NAMES", "FlexFlow", "FlexSpec", "PromptyFlow", "find_flex_file",
           "load_flex", "load_flex_spec", "load_prompty_flow"]
