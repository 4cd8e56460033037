from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def make_flow(tmp_path):
    """Write a flow folder from {relative path: text} and return its path."""

    def make(files: dict[str, str], name: str = "flow") -> Path:
        folder = tmp_path / name
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return folder

    return make


@pytest.fixture(scope="module")
def server():
    """pfkit's OpenAI-compatible test server on 127.0.0.1, one per test module (a module with
    other needs defines its own ``server``)."""
    from pfkit.testing import TestServer

    with TestServer() as srv:
        yield srv
