"""The layer rules of docs/architecture.md, enforced: import-linter contracts, public errors,
and shells (CLI, bench scripts, example flows) that use public names only."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pfkit
import pfkit.errors
from pfkit.errors import PfkitError

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def library_modules():
    for info in pkgutil.walk_packages(pfkit.__path__, "pfkit."):
        name = info.name
        if name.startswith(("pfkit.cli", "pfkit._compat", "pfkit.testing")) or name.endswith(
                "__main__"):
            continue  # the shell; promptflow's own names for user scripts; test fakes
        yield name


def test_every_error_a_user_may_catch_is_importable_from_pfkit_errors():
    missing = []
    for name in library_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency that is not installed
            continue
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, (PfkitError, KeyboardInterrupt))
                    and value.__module__ == name and not attr.startswith("_")
                    and value is not KeyboardInterrupt):
                if getattr(pfkit.errors, attr, None) is not value:
                    missing.append(f"{name}.{attr}")
    assert not missing, f"not importable from pfkit.errors: {missing}"


def private_imports(path: Path) -> list[str]:
    """Imports of private parts of pfkit's packages (``pfkit.<package>._<module>``, absolute or
    relative) in a file; its own package's modules and pfkit's top-level helpers
    (``pfkit._version``, ``pfkit._secrets``, ``pfkit._runtime``) do not count."""
    package = None
    if ROOT / "pfkit" in path.parents:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                if not package:
                    continue
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            modules = [module]
            modules += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")
                        and not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] != "pfkit" or len(parts) < 2 or parts[1] in ("_version", "_secrets", "_runtime"):
                continue
            if package and module.startswith(package + "."):
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                found.append(module)
    return found


# Shell files still importing private modules, owned by others; the list only shrinks.
PENDING = {
    "pfkit/cli/_run.py", "pfkit/cli/_connection.py", "pfkit/cli/_testing.py",
    "bench/batch.py", "bench/llm.py", "bench/_llm_worker.py", "bench/_batch_worker.py",
    "bench/footprint.py", "bench/profile_batch.py", "pfkit/cli/_serve.py", "bench/serve.py",
}


def test_the_cli_bench_scripts_and_examples_use_public_names():
    files = [*sorted((ROOT / "pfkit" / "cli").glob("*.py")), *sorted((ROOT / "bench").glob("*.py")),
             *sorted((ROOT / "flows").rglob("*.py"))]
    offenders = {}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel in PENDING:
            continue
        found = private_imports(path)
        if found:
            offenders[rel] = found
    assert not offenders, offenders


def test_the_checker_sees_private_imports(tmp_path):
    sample = ROOT / "pfkit" / "cli" / "_flow.py"
    text = "from ..engine._execute import resolve_path\nimport pfkit.providers._cache\n"
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    assert private_imports(probe) == ["pfkit.providers._cache"]  # relative needs the package
    assert private_imports(sample) == []
