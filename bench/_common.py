"""Shared helpers for pfkit's benchmarks (standard library only).

How we measure (see docs/benchmarks.md in the shared docs): contestants run side by side in one
run, alternating A B A B ..., at least 5 times after a warm-up; we report median and min-max for
each and the ratio of medians, and append the figures to ``bench/RESULTS.md`` with the date,
``nproc``, the CPU model, the Python version and the exact command.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
FLOWS = BENCH / "flows"

# pfkit: the project's own editable install.
PFKIT_VENV = REPO / ".venv"
PFKIT_PY = PFKIT_VENV / "bin" / "python"
PFKIT_CLI = PFKIT_VENV / "bin" / "pfkit"

# promptflow 1.18.5, the peer, in its own git-ignored venv (bench/setup_promptflow.sh).
PF_VENV = REPO / ".bench" / "promptflow-venv"
PF_PY = PF_VENV / "bin" / "python"
PF_CLI = PF_VENV / "bin" / "pf"
PF_HOME = REPO / ".bench" / "pf-home"  # never ~/.promptflow

RESULTS_HEADER = """\
# pfkit benchmark results

Appended by the scripts in `bench/` (see `bench/README.md`); newest sections last. Every figure
is a side-by-side measurement from one run (contestants alternated A B A B ... after a
warm-up): compare figures within a section, not across machines or days.

Reproduce (from the repository root, after installing pfkit in `.venv`):

```sh
bash bench/setup_promptflow.sh && .venv/bin/python bench/startup.py && .venv/bin/python bench/engine.py
.venv/bin/python bench/llm.py && .venv/bin/python bench/batch.py
```
"""


# --------------------------------------------------------------------------- environments

PYCACHE = REPO / ".bench" / "pycache"


def pfkit_env() -> dict[str, str]:
    """The environment for pfkit processes.

    pfkit is installed editable here, so its modules have no ``.pyc`` files unless some process
    wrote them, and this sandbox sets ``PYTHONDONTWRITEBYTECODE=1``: pfkit could end up
    compiling its sources in every process, which a pip-installed package (or promptflow's
    venv) never does. So we let Python cache bytecode, under ``.bench/pycache``
    (``PYTHONPYCACHEPREFIX``), so that nothing is written into the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE / "pfkit")
    return env


def pf_env(**extra: str) -> dict[str, str]:
    """The environment for every promptflow process: tracing off, its own home folder, and
    bytecode caching on (its site-packages already hold the .pyc files pip wrote; this lets the
    flow's own tool files be cached too, in their __pycache__, which git ignores)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env["PF_DISABLE_TRACING"] = "true"
    env["PF_HOME_DIRECTORY"] = str(PF_HOME)
    env.update(extra)
    return env


def require_promptflow() -> None:
    """Exit with a hint when the peer venv is missing; make sure its telemetry is off."""
    if not PF_CLI.exists():
        sys.exit(f"promptflow is not installed in {PF_VENV.relative_to(REPO)}: "
                 "run `bash bench/setup_promptflow.sh` first")
    PF_HOME.mkdir(parents=True, exist_ok=True)
    config = PF_HOME / "pf.yaml"
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    if "enabled: 'false'" not in text and "enabled: false" not in text:
        subprocess.run([str(PF_CLI), "config", "set", "telemetry.enabled=false"],
                       env=pf_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)


def require_pfkit() -> None:
    if not PFKIT_PY.exists():
        sys.exit("pfkit's venv .venv is missing: python -m venv .venv && .venv/bin/pip install -e .")


# --------------------------------------------------------------------------- timing

class BenchError(RuntimeError):
    pass


def run_process(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
                cwd: str | Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), env=dict(env) if env is not None else None,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"command failed with exit code {proc.returncode}: {shlex.join(cmd)}\n"
                         f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc


def time_process(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, expect: str | None = None,
                 timeout: float = 600) -> float:
    """Wall-clock seconds of one whole process, from spawn to exit. Output is captured (to
    pipes, never a terminal) and checked: a failing run is an error, not a fast figure."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=dict(env) if env is not None else None, cwd=cwd,
                          capture_output=True, text=True,
                          timeout=timeout)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"command failed with exit code {proc.returncode}: {shlex.join(cmd)}\n"
                         f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    if expect is not None and expect not in proc.stdout:
        raise BenchError(f"expected {expect!r} in the output of {shlex.join(cmd)}, got:\n"
                         f"{proc.stdout[-3000:]}")
    return elapsed


def alternate(contestants: Mapping[str, Callable[[], float]], *, runs: int, warmup: int = 1,
              progress: bool = True) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Call each contestant in turn (A B C A B C ...): ``warmup`` rounds, discarded, then
    ``runs`` measured rounds. Each callable returns one measurement. Returns (measured,
    warm-up) values per contestant, in the order they were taken."""
    measured: dict[str, list[float]] = {name: [] for name in contestants}
    warm: dict[str, list[float]] = {name: [] for name in contestants}
    for round_ in range(warmup + runs):
        target = warm if round_ < warmup else measured
        for name, fn in contestants.items():
            value = fn()
            target[name].append(value)
            if progress:
                tag = "warm-up" if round_ < warmup else f"run {round_ - warmup + 1}/{runs}"
                print(f"  {tag:>10}  {name:<40} {value:.4g}", file=sys.stderr, flush=True)
    return measured, warm


@dataclass(frozen=True)
class Stats:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no values")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
        """``median (min-max)`` in the given unit."""
        f = lambda v: f"{v * scale:.{digits}f}"  # noqa: E731
        return f"{f(self.median)}{unit} ({f(self.min)}–{f(self.max)})"


def ratio(a: float, b: float) -> str:
    """a / b, formatted as ``12.3×``."""
    if b == 0:
        return "n/a"
    r = a / b
    return f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


# --------------------------------------------------------------------------- reporting

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], stdout=subprocess.PIPE, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def python_version(python: Path) -> str:
    try:
        return run_process([str(python), "-c", "import sys; print(sys.version.split()[0])"]
                           ).stdout.strip()
    except (OSError, BenchError):
        return "unknown"


def package_version(python: Path, module: str) -> str:
    code = (f"from importlib.metadata import version; print(version({module!r}))")
    try:
        return run_process([str(python), "-c", code]).stdout.strip()
    except (OSError, BenchError):
        return "not installed"


def git_revision() -> str:
    """HEAD, and whether pfkit's own sources (outside bench/) have uncommitted changes: the
    benchmarks' own files are usually being edited while they run, which says nothing about the
    code measured."""
    try:
        head = run_process(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).stdout.strip()
        dirty = [line[3:] for line in run_process(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO).stdout.splitlines()
            if line[3:] and not line[3:].startswith("bench/")]
        return head + (f" (uncommitted changes in {', '.join(dirty[:4])}"
                       f"{' ...' if len(dirty) > 4 else ''})" if dirty else ", clean outside bench/")
    except (OSError, BenchError):
        return "unknown"


def source_fingerprint() -> str:
    """A digest of pfkit's source files (paths, sizes, mtimes): the editable install loads them
    afresh in every process, so a change during a benchmark mixes code versions."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted((REPO / "pfkit").rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(REPO)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


START_FINGERPRINT = source_fingerprint()
START_REVISION = git_revision()


def exact_command() -> str:
    """The command that started this benchmark, with the interpreter relative to the repo."""
    exe = Path(sys.executable)
    try:
        exe_text = str(exe.relative_to(REPO)) if exe.is_absolute() else str(exe)
    except ValueError:
        exe_text = str(exe)
    if exe_text == str(PFKIT_PY.relative_to(REPO)):
        exe_text = ".venv/bin/python"
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
    except ValueError:
        pass
    return shlex.join([exe_text, *argv])


def environment_lines() -> list[str]:
    return [
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: nproc {nproc()}, CPU {cpu_model()}, {platform.system()} {platform.release()}",
        f"- python: pfkit venv {python_version(PFKIT_PY)}, promptflow venv "
        f"{python_version(PF_PY) if PF_PY.exists() else 'missing'}",
        f"- versions: pfkit {package_version(PFKIT_PY, 'pfkit')} (git {START_REVISION}), "
        f"promptflow {package_version(PF_PY, 'promptflow') if PF_PY.exists() else 'missing'}",
        f"- pfkit sources: {_sources_note()}",
        f"- command: `{exact_command()}` (run from the repository root)",
    ]


def machine_load_note() -> str:
    """The load average, and whether a compiler (someone's build) is running right now."""
    try:
        busy = subprocess.run(["pgrep", "-f", "cc1plus|cmake|ninja"], capture_output=True,
                              text=True).stdout.split()
    except OSError:
        busy = []
    load = os.getloadavg()
    state = (f"**compiler processes were running** (pids {', '.join(busy)})" if busy
             else "no compiler running")
    return f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; {state}"


class ForeignLoad:
    """Watches the machine while a benchmark runs: every ``every`` s it reads the CPU time of
    every process in /proc and charges what processes outside this benchmark's own process tree
    used (other people's builds and test suites on a shared machine). ``with ForeignLoad() as
    load: ...`` then ``load.summary()``."""

    def __init__(self, every: float = 1.0) -> None:
        import threading

        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._last: dict[int, tuple[float, str]] = {}
        self.foreign: dict[str, float] = {}  # command -> CPU seconds
        self.started = self.ended = 0.0
        self._tick = os.sysconf("SC_CLK_TCK")
        self._stat0: list[int] = []
        self._stat1: list[int] = []

    @staticmethod
    def _cpu_line() -> list[int]:
        """user nice system idle iowait irq softirq steal, in ticks (all cores)."""
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                return [int(v) for v in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return []

    def _snapshot(self) -> dict[int, tuple[int, float, str]]:
        procs: dict[int, tuple[int, float, str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
                head, rest = text.rsplit(")", 1)
                fields = rest.split()
                cpu = (int(fields[11]) + int(fields[12])) / self._tick
                procs[int(entry)] = (int(fields[1]), cpu, head.split("(", 1)[1])
            except (OSError, ValueError, IndexError):
                continue
        return procs

    def _mine(self, procs: dict[int, tuple[int, float, str]]) -> set[int]:
        mine, me = set(), os.getpid()
        for pid in procs:
            p, seen = pid, 0
            while p > 1 and seen < 64:
                if p == me:
                    mine.add(pid)
                    break
                p = procs.get(p, (0, 0.0, ""))[0]
                seen += 1
        return mine

    def _sample(self) -> None:
        procs = self._snapshot()
        mine = self._mine(procs)
        for pid, (_, cpu, name) in procs.items():
            before = self._last.get(pid)
            if pid not in mine and before is not None and cpu > before[0]:
                self.foreign[name] = self.foreign.get(name, 0.0) + cpu - before[0]
        self._last = {pid: (cpu, name) for pid, (_, cpu, name) in procs.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> ForeignLoad:
        import time as _time

        self.started = _time.perf_counter()
        self._stat0 = self._cpu_line()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import time as _time

        self._stop.set()
        self._thread.join()
        self._sample()
        self._stat1 = self._cpu_line()
        self.ended = _time.perf_counter()

    def summary(self) -> str:
        """One sentence: how busy the rest of the machine was."""
        total = sum(self.foreign.values())
        span = max(self.ended - self.started, 1e-9)
        top = sorted(self.foreign.items(), key=lambda kv: -kv[1])[:4]
        busy = ", ".join(f"{name} {cpu:.0f} s" for name, cpu in top if cpu >= 1.0)
        text = (f"other processes used {total:.0f} CPU-s in {span:.0f} s (≈ {total / span:.2f} of "
                f"the {os.cpu_count()} cores)" + (f": {busy}" if busy else ""))
        if len(self._stat0) == 8 and len(self._stat1) == 8:
            delta = [b - a for a, b in zip(self._stat0, self._stat1, strict=True)]
            busy_all = sum(delta) - delta[3] - delta[4] - delta[7]
            text += (f"; whole machine busy {busy_all / self._tick / span:.2f} cores on average, "
                     f"steal {delta[7] / self._tick:.1f} s")
        return text


def _sources_note() -> str:
    end = source_fingerprint()
    if end == START_FINGERPRINT:
        return f"unchanged during the run (fingerprint {end})"
    return (f"**changed during the run** (fingerprint {START_FINGERPRINT} at the start, {end} at "
            f"the end; HEAD now {git_revision()}): the figures mix code versions")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def append_results(title: str, body: str) -> str:
    """Append a dated section to bench/RESULTS.md (created with its header if missing) and
    return the section's text."""
    section = "\n".join([f"## {title}", "", *environment_lines(), "", body.rstrip(), ""])
    if not RESULTS.exists():
        RESULTS.write_text(RESULTS_HEADER, encoding="utf-8")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write("\n" + section)
    return section


def publish(title: str, body: str, *, append: bool = True) -> None:
    """Print a section and (unless ``append`` is false) append it to bench/RESULTS.md."""
    print("\n" + body)
    if append:
        append_results(title, body)
        print("\nappended to bench/RESULTS.md", file=sys.stderr)
