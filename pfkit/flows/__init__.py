"""Flows in Python: ``pfkit.load_flow(path)`` -> a :class:`Flow` you call like a function."""

from ._api import Flow, TestResult, atest, atest_node, load_flow

__all__ = ["Flow", "TestResult", "atest", "atest_node", "load_flow"]
