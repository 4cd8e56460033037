"""The processes pfkit owns claim themselves (garbage collector, resident flows); a caller's own
process is left alone."""

from __future__ import annotations

import subprocess
import sys

from pfkit import _runtime


def last_line_of(code: str) -> str:
    """What a fresh Python process running ``code`` prints last (it must succeed)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_pfkit_command_claims_its_process_and_a_caller_of_main_keeps_its_own():
    """``pfkit`` (argv from the command line) raises the collector's threshold; calling
    ``pfkit.cli.main([...])`` from one's own process leaves the process's settings alone."""
    printed = last_line_of("import gc, sys\n"
                           "from pfkit import _runtime\n"
                           "from pfkit.cli import main\n"
                           "before = gc.get_threshold()\n"
                           "main(['--version'])\n"
                           "kept = gc.get_threshold() == before and not _runtime.owned()\n"
                           "sys.argv = ['pfkit', '--version']\n"
                           "main()\n"
                           "print(kept, _runtime.owned(), gc.get_threshold())\n")
    assert printed == f"True True {_runtime.GC_THRESHOLD}"


def test_the_test_server_process_claims_its_process():
    printed = last_line_of("import gc, sys\n"
                           "from pfkit.cli import _testing\n"
                           "_testing.cmd_serve = lambda args: print(gc.get_threshold()) or 0\n"
                           "sys.exit(_testing.main(['--port', '0']))\n")
    assert printed == str(_runtime.GC_THRESHOLD)
