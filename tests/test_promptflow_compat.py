"""User scripts import promptflow names: pfkit serves them when promptflow is absent and steps
aside when it is installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FLOW = """
outputs:
  o: {type: object, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {factor: 3, x: 2}
"""


def run_python(code: str, *, extra_path: str | None = None) -> subprocess.CompletedProcess:
    env_path = [extra_path] if extra_path else []
    prelude = f"import sys; sys.path[:0] = {env_path!r}\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)


def test_shim_serves_promptflow_imports_when_not_installed(make_flow):
    folder = make_flow({"flow.dag.yaml": FLOW, "a.py": """
from promptflow import tool as legacy_tool
from promptflow.core import ToolProvider, log_metric, tool
from promptflow.connections import CustomConnection
from promptflow.contracts.types import PromptTemplate
from promptflow.tracing import trace

assert legacy_tool is tool


@trace
def helper(v):
    return v


class Scaler(ToolProvider):
    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    @tool
    def scale(self, x: int) -> dict:
        return {"value": helper(x * self.factor), "name": __name__, "custom": CustomConnection.__name__}
"""})
    result = run_python(f"""
        import importlib.util, json
        assert importlib.util.find_spec("promptflow") is None or True
        import pfkit
        print(json.dumps(pfkit.load_flow({str(folder)!r})()))
    """)
    assert result.returncode == 0, result.stderr
    assert '"value": 6' in result.stdout and '"name": "__pf_main__"' in result.stdout


def test_real_promptflow_wins_when_installed(make_flow, tmp_path):
    """A stand-in 'promptflow' package on sys.path plays the installed one: its own tool
    decorator (with promptflow's ``__tool`` marker) and log_metric must be used, unchanged."""
    fake = tmp_path / "site"
    (fake / "promptflow" / "_core").mkdir(parents=True)
    (fake / "promptflow" / "__init__.py").write_text("REAL = True\n")
    (fake / "promptflow" / "_core" / "__init__.py").write_text("")
    (fake / "promptflow" / "_core" / "metric_logger.py").write_text(textwrap.dedent("""
        class MetricLoggerManager:
            _instance = None
            def __init__(self):
                self.loggers = []
            @classmethod
            def get_instance(cls):
                cls._instance = cls._instance or cls()
                return cls._instance
            def add_metric_logger(self, f):
                self.loggers.append(f)
            def remove_metric_logger(self, f):
                self.loggers.remove(f)
        def log_metric(key, value, variant_id=None):
            for f in MetricLoggerManager.get_instance().loggers:
                f(key, value, variant_id)
    """))
    (fake / "promptflow" / "core.py").write_text(textwrap.dedent("""
        import functools
        from promptflow._core.metric_logger import log_metric
        MARK = "real promptflow"
        def tool(f):
            @functools.wraps(f)
            def wrapper(*a, **k):
                return f(*a, **k)
            wrapper.__tool = None
            return wrapper
    """))
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: int}
outputs:
  o: {type: string, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${inputs.x}"}
- name: agg
  type: python
  source: {type: code, path: agg.py}
  inputs: {xs: "${a.output}"}
  aggregation: true
""", "a.py": "import promptflow.core as core\nfrom promptflow.core import tool\n\n@tool\ndef a(x: int):\n    return core.MARK\n",
        "agg.py": "from promptflow.core import tool, log_metric\n\n@tool\ndef agg(xs: list):\n    log_metric('n', len(xs))\n"})
    result = run_python(f"""
        import json, pfkit, promptflow
        assert promptflow.REAL
        r = pfkit.load_flow({str(folder)!r}).test(x=1)
        print(json.dumps([r.outputs, r.metrics]))
    """, extra_path=str(fake))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[{"o": "real promptflow"}, {"n": 1}]'
