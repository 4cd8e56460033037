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

    ::

        with TestServerProcess(latency=0.05) as server:
            client = AsyncOpenAI(base_url=server.base_url, api_key="x")
    """

    __test__ = False

    def __init__(self, *args: str, latency: float = 0.0, startup_timeout: float = 30.0
                 ) -> None:
        self.args = [*args, "--latency", str(latency)]
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self.returncode: int | None = None
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def start(self) -> TestServerProcess:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                           env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROCESS_MAIN, "--port", "0", *self.args],
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

    def stop(self, timeout: float = 10.0) -> None:
        """Ctrl-C the process (terminate on Windows) and wait; kill it if it lingers."""
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
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
