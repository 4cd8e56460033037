"""The test server in a child process (``pfkit testing serve``), for benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

_PROCESS_MAIN = "import sys; from pfkit.cli._testing import main; sys.exit(main(sys.argv[1:]))"


class TestServerProcess:
    """The same server in a child process (``pfkit testing serve``), for benchmarks: it shares
    no GIL with the code under test, so its own CPU time does not slow the client down.

    ``args`` are ``pfkit testing serve`` options (``"--rules", "rules.yaml"``,
    ``"--fail-rate", "429=0.1"``); the port is always a free one. Counters, the request log
    and runtime fault changes are only available with the in-process
    :class:`~pfkit.testing.TestServer`.

    ``processes=N`` starts N such processes on one port (``SO_REUSEPORT``; Linux and the BSDs):
    the kernel spreads connections over them, so a burst of concurrent requests is answered
    on several cores instead of one after another in one Python process. With ``--seed``, each
    process draws its faults from its own seed (``seed + index``).

    ::

        with TestServerProcess(latency=0.05) as server:
            client = AsyncOpenAI(base_url=server.base_url, api_key="x")
    """

    __test__ = False

    def __init__(self, *args: str, latency: float = 0.0, startup_timeout: float = 30.0,
                 processes: int = 1) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.args = [*args, "--latency", str(latency)]
        self.startup_timeout = startup_timeout
        self.processes = processes
        self.base_url = ""
        self.returncode: int | None = None
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._others: list[TestServerProcess] = []  # the processes after the first

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def start(self) -> TestServerProcess:
        if self.processes == 1:
            return self._start("0", self.args)
        self._start("0", [*self.args, "--reuse-port"])
        port = self.url.rsplit(":", 1)[1]
        try:
            for index in range(1, self.processes):
                other = TestServerProcess(startup_timeout=self.startup_timeout)
                other._start(port, [*_reseeded(self.args, index), "--reuse-port"])
                self._others.append(other)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, port: str, args: list[str]) -> TestServerProcess:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                           env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROCESS_MAIN, "--port", port, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self._read_first_line()
        if not line.startswith("http://"):
            process, self._process = self._process, None
            if process.poll() is None:
                process.kill()
            _, detail = process.communicate()
            self.returncode = process.returncode
            raise RuntimeError(f"the test server process did not start: {detail.strip()}")
        self.base_url = line
        # Drain stderr so a chatty child can never block on a full pipe.
        self._drain = threading.Thread(target=self._drain_stderr, args=(self._process,),
                                       daemon=True)
        self._drain.start()
        return self

    @staticmethod
    def _drain_stderr(process: subprocess.Popen[str]) -> None:
        stream = process.stderr
        if stream is None:
            return
        try:
            for _ in stream:
                pass
        except (OSError, ValueError, RuntimeError):
            pass

    def _read_first_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self._process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return lines[0].strip() if lines else ""

    @property
    def pids(self) -> list[int]:
        """The server processes' ids (one per ``processes``), while they run."""
        return [p._process.pid for p in (self, *self._others) if p._process is not None]

    def stop(self, timeout: float = 10.0) -> None:
        """Ctrl-C the process (terminate on Windows) and wait; kill it if it lingers."""
        others, self._others = self._others, []
        for other in others:
            other.stop(timeout)
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if os.name == "posix":
                process.send_signal(signal.SIGINT)
            else:
                process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.join(2.0)  # the child is gone: its stderr ends
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except (OSError, ValueError, RuntimeError):
                    pass
        self.returncode = process.returncode

    def __enter__(self) -> TestServerProcess:
        """Start (see :meth:`start`)."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _reseeded(args: list[str], index: int) -> list[str]:
    """``args`` with ``--seed S`` made ``--seed S+index`` (each process its own draws)."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--seed":
            out[i + 1] = str(int(out[i + 1]) + index)
    return out
