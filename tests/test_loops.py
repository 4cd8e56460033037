"""Which event loop pfkit's own loops use (``PFKIT_LOOP``): uvloop when installed, asyncio's
on request, and a clear error for a value it does not know."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from pfkit import _loops
from pfkit._aio import BackgroundLoop
from pfkit.errors import UserError

uvloop = pytest.importorskip("uvloop")  # in the serve and dev extras


def test_auto_picks_uvloop_when_installed(monkeypatch):
    monkeypatch.delenv(_loops.ENV, raising=False)
    assert _loops.loop_kind() == "uvloop"
    loop = _loops.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_on_request(monkeypatch):
    monkeypatch.setenv(_loops.ENV, "asyncio")
    loop = _loops.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_an_unknown_choice_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(_loops.ENV, "tokio")
    with pytest.raises(UserError) as info:
        _loops.new_event_loop()
    assert "PFKIT_LOOP" in str(info.value) and "asyncio" in str(info.value)


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_run_and_the_background_loop_use_the_chosen_loop(monkeypatch, choice):
    monkeypatch.setenv(_loops.ENV, choice)

    async def kind() -> bool:
        async def agen():
            yield 1
        # an async generator left suspended is closed when the loop ends (model clients rely
        # on this to close their connections)
        gen = agen()
        await gen.__anext__()
        return isinstance(asyncio.get_running_loop(), uvloop.Loop)

    assert _loops.run(kind()) is (choice == "uvloop")
    background = BackgroundLoop("pfkit-test-loop")
    try:
        assert background.run(kind()) is (choice == "uvloop")
    finally:
        background.close()


def test_the_cli_names_a_bad_choice_in_one_line(tmp_path):
    flow = tmp_path / "f"
    flow.mkdir()
    (flow / "flow.dag.yaml").write_text(
        "inputs: {x: {type: string}}\noutputs: {y: {type: string, reference: '${inputs.x}'}}\n"
        "nodes: []\n", encoding="utf-8")
    env = {"PFKIT_LOOP": "bogus", "PFKIT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pfkit", "flow", "test", "--flow", str(flow),
                           "--inputs", "x=1"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode != 0
    assert "PFKIT_LOOP" in done.stderr and "Traceback" not in done.stderr
