"""The processes pfkit owns claim themselves (garbage collector, resident flows); a caller's own
process is left alone."""

from __future__ import annotations

import subprocess
import sys

from pfkit import _runtime


def test_the_pfkit_command_tunes_the_collector_and_a_caller_of_main_keeps_its_own():
    """``pfkit`` (argv from the command line) raises the collector's threshold; calling
    ``pfkit.cli.main([...])`` from one's own process leaves the process's settings alone."""
    code = ("import gc, sys\n"
            "from pfkit.cli import main\n"
            "before = gc.get_threshold()\n"
            "main(['--version'])\n"
            "kept = gc.get_threshold()\n"
            "sys.argv = ['pfkit', '--version']\n"
            "main()\n"
            "print(before == kept, gc.get_threshold())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"True {_runtime.GC_THRESHOLD}"


def test_the_test_server_process_tunes_its_collector():
    code = ("import gc, sys\n"
            "from pfkit.cli import _testing\n"
            "_testing.cmd_serve = lambda args: print(gc.get_threshold()) or 0\n"
            "sys.exit(_testing.main(['--port', '0']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(_runtime.GC_THRESHOLD)
