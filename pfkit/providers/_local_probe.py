"""A test run of llama.cpp in a child process, before the embedded model first loads in-process.

A native fault in llama.cpp (a segfault in a CPU kernel, an abort on an assertion) kills the whole
process: no exception, no message, no run record written, a test suite gone without a summary.
So before a process first loads a model, :func:`check_backend` runs the same load in a child
(``sys.executable``), with the same parameters, and decodes a few tokens and one embedding there.
When the child dies, the caller gets a :class:`LocalModelCrashed` error that says how it died
(the signal's name, or the exit code), at which step, which CPU features were seen, and what to
do; the model is never loaded in-process.

* A passing test run is remembered in ``$PFKIT_HOME/cache/local-probe/<key>.json``; the key is
  the llama-cpp-python version and its shared libraries (name, size, mtime), the model file
  (path, size, mtime), the CPU's flags line, the platform and the load parameters. Later
  processes pay nothing; any change (an upgrade, a rebuilt wheel, another machine sharing the
  home folder, another parameter) runs the test again. Failures are not stored: the next process
  tries again.
* Within a process the outcome is kept per key: a failed test run fails every later load at once,
  with the same error.
* ``PFKIT_LOCAL_PROBE=0`` skips the test run; ``PFKIT_LOCAL_PROBE_TIMEOUT`` (seconds, default 120)
  bounds it. A child that is still running at the timeout is killed and reported as such.
* A child that fails with a Python exception (a file llama.cpp refuses, say) is not a crash: the
  in-process load then reports that error in its usual words.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._openai import ProviderUserError

PROBE_ENV = "PFKIT_LOCAL_PROBE"
TIMEOUT_ENV = "PFKIT_LOCAL_PROBE_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
PROBE_VERSION = 1  # bump when the test run itself changes: older passes no longer count

# Steps the child announces on stdout before it takes them, so a crash names the step.
STEPS = {
    "import": "importing llama_cpp",
    "load": "loading the model",
    "decode": "decoding its first tokens",
    "embed": "computing an embedding",
}

# The CPU features that choose llama.cpp's kernels, reported when a test run dies.
_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "i8mm", "sve", "sve2", "sme",
)


class LocalModelCrashed(ProviderUserError):
    """The test run of the embedded model died (a native crash) or did not finish in time."""

    default_code = "LocalModelCrashed"


_OUTCOMES: dict[str, LocalModelCrashed | None] = {}  # key -> None (passed) or the failure
_LOCK = threading.Lock()


def probe_enabled() -> bool:
    return os.environ.get(PROBE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def probe_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ProviderUserError(f"{TIMEOUT_ENV} must be a number of seconds above 0, got {text!r}",
                                code="InvalidEnvironment",
                                hint=f"Unset {TIMEOUT_ENV} for {DEFAULT_TIMEOUT:g} s.")
    return value


# -- what the outcome depends on -----------------------------------------------------------------


def cpu_flags() -> str:
    """The CPU's flags line (``flags`` on x86, ``Features`` on Arm Linux), else what the platform
    module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            for line in file:
                name, sep, value = line.partition(":")
                if sep and name.strip() in ("flags", "Features"):
                    return " ".join(value.split())
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".strip()


def cpu_features(flags: str | None = None) -> list[str]:
    present = set((cpu_flags() if flags is None else flags).split())
    return [name for name in _FEATURES if name in present]


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _llama_cpp_identity() -> dict[str, Any]:
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = None
    spec = importlib.util.find_spec("llama_cpp")
    libraries: list[Any] = []
    if spec is not None and spec.submodule_search_locations:
        lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
        if lib.is_dir():
            libraries = [_file_identity(p) for p in sorted(lib.iterdir()) if p.is_file()]
    return {"version": version, "libraries": libraries}


def probe_key(model_path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Everything a test run's outcome depends on."""
    return {
        "probe": PROBE_VERSION,
        "llama_cpp": _llama_cpp_identity(),
        "model": _file_identity(model_path),
        "cpu": cpu_flags(),
        "platform": [sys.platform, platform.machine(), sys.version.split()[0]],
        "params": params,
    }


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _cache_dir(home: Path | None) -> Path:
    if home is None:
        from ..connections._store import pfkit_home

        home = pfkit_home()
    return Path(home) / "cache" / "local-probe"


def _cached_pass(path: Path, key: dict[str, Any]) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("passed") is True and record.get("key") == key


def _remember_pass(path: Path, key: dict[str, Any]) -> None:
    """Best effort: a home folder that cannot be written only means testing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        partial.write_text(json.dumps({"passed": True, "key": key}, indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass


# -- the check -----------------------------------------------------------------------------------


def check_backend(model_path: str | os.PathLike[str], params: dict[str, Any], *,
                  home: str | os.PathLike[str] | None = None, timeout: float | None = None,
                  child_code: str | None = None) -> bool:
    """Raise :class:`LocalModelCrashed` when loading ``model_path`` with ``params`` and decoding
    kills a child process; return True when a test run passed (now or before, per the cache),
    False when the check is off or the child failed with an ordinary error (the caller's own load
    reports it). ``child_code`` replaces the child's program (for tests)."""
    if not probe_enabled() or getattr(sys, "frozen", False) or not sys.executable:
        return False  # (a frozen app's executable is the app, not a Python to run code with)
    path = Path(model_path)
    key = probe_key(path, params)
    digest = _digest({**key, "child": child_code})
    with _LOCK:
        if digest in _OUTCOMES:
            failure = _OUTCOMES[digest]
            if failure is not None:
                raise _copy(failure)
            return True
        record = _cache_dir(None if home is None else Path(home)) / f"{digest}.json"
        if _cached_pass(record, key):
            _OUTCOMES[digest] = None
            return True
        seconds = probe_timeout() if timeout is None else timeout
        with _one_process_at_a_time(record):  # worker processes starting together test once
            if _cached_pass(record, key):
                _OUTCOMES[digest] = None
                return True
            failure, passed = _run_child(path, params, seconds, child_code, key["cpu"])
            if passed:
                _remember_pass(record, key)
        if failure is not None:
            _OUTCOMES[digest] = failure
            raise _copy(failure)
        if passed:
            _OUTCOMES[digest] = None
        return passed


@contextlib.contextmanager
def _one_process_at_a_time(record: Path) -> Iterator[None]:
    """An advisory lock beside the cache record (POSIX ``flock``); without one (Windows, a
    read-only home) every process simply runs its own test."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        handle = open(record.with_suffix(".lock"), "a")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def _copy(error: LocalModelCrashed) -> LocalModelCrashed:
    return LocalModelCrashed(error.message, code=error.code, hint=error.hint)


def _child_command(model_path: Path, params: dict[str, Any], child_code: str | None) -> list[str]:
    roots = [str(Path(__file__).resolve().parents[2])]
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.submodule_search_locations:
        roots.append(str(Path(next(iter(spec.submodule_search_locations))).parent))
    code = child_code or ("import sys; sys.path[:0] = " + repr(roots) + "\n"
                          "from pfkit.providers._local_probe import child_main; child_main()")
    return [sys.executable, "-X", "faulthandler", "-c", code,
            json.dumps({"model_path": str(model_path), "params": params})]


def _run_child(model_path: Path, params: dict[str, Any], timeout: float,
               child_code: str | None, flags: str) -> tuple[LocalModelCrashed | None, bool]:
    command = _child_command(model_path, params, child_code)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as exc:  # no way to test: load in-process as before
        import logging

        logging.getLogger("pfkit.local").warning("could not start the local model's test run: "
                                                 "%s", exc)
        return None, False
    timed_out = False
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        child.kill()
        out, err = child.communicate()
    steps = [line[5:].strip() for line in out.splitlines() if line.startswith("step ")]
    step = STEPS.get(steps[-1], steps[-1]) if steps else "starting"
    if timed_out:
        return _failure(f"did not finish in {timeout:g} s (it was {step}; stopped)",
                        "LocalModelProbeTimeout", params, flags, err,
                        hint=f"If the machine is very busy, raise {TIMEOUT_ENV} (seconds; default "
                             f"{DEFAULT_TIMEOUT:g}). If llama.cpp hangs on this CPU, "
                             + _what_to_do(params)), False
    if child.returncode == 0 and '"ok": true' in out:
        return None, True
    if child.returncode == 3:  # an ordinary Python error: the in-process load says it better
        return None, False
    if child.returncode < 0:
        how = f"crashed with {_signal_name(-child.returncode)}"
    elif child.returncode == 0:
        how = "ended without finishing"
    else:  # on Windows a crash is an exit code such as 0xc0000005
        how = f"ended with exit code {child.returncode} ({child.returncode:#x})"
    return _failure(f"{how} while {step}", "LocalModelCrashed", params, flags, err,
                    hint=_what_to_do(params, -child.returncode)), False


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def _what_to_do(params: dict[str, Any], signal_number: int = 0) -> str:
    parts = []
    if signal_number == getattr(signal, "SIGILL", -1):
        parts.append("SIGILL: the llama.cpp library uses instructions this CPU lacks (a wheel "
                     "built with -march=native on another machine?); build it here: pip install "
                     "--force-reinstall --no-cache-dir llama-cpp-python.")
    if params.get("use_extra_bufts"):
        parts.append("Unset PFKIT_LOCAL_EXTRA_BUFTS: llama.cpp's weight repacking crashes on some "
                     "CPUs (AMX with Q4_K models, ggml-org/llama.cpp#20824).")
    parts.append("Try another llama-cpp-python version (pip install --upgrade --no-cache-dir "
                 "llama-cpp-python), another model_path on the local connection, or an open_ai "
                 f"connection. {PROBE_ENV}=0 skips this test run (a crash then ends the process).")
    return " ".join(parts)


def _last_words(stderr: str) -> str:
    """What the child said before it died: llama.cpp's last lines (an assertion, say) and, from
    faulthandler's dump (several threads may write it at once), the innermost Python frame."""
    lines = [line.strip() for line in stderr.splitlines()]
    cut = next((i for i, line in enumerate(lines) if "Fatal Python error" in line), len(lines))
    said = [line for line in lines[:cut] if line][-2:]
    frame = re.search(r'File "([^"]+)", line (\d+) in (\S+)', "\n".join(lines[cut:]))
    if frame:
        where = "/".join(Path(frame[1]).parts[-2:])
        said.append(f"died in {frame[3]}() at {where}:{frame[2]}")
    return " | ".join(said)[:400]


def _failure(what: str, code: str, params: dict[str, Any], flags: str, stderr: str, *,
             hint: str) -> LocalModelCrashed:
    features = ", ".join(cpu_features(flags)) or "none of the usual SIMD features"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    words = _last_words(stderr)
    detail = f" Its last words: {words}." if words else ""
    return LocalModelCrashed(
        f"the embedded local model cannot run here: llama.cpp {what} in a test run in a child "
        f"process, so pfkit did not load it (model parameters: {shown}; CPU "
        f"features: {features}; {platform.machine()}, llama-cpp-python "
        f"{_llama_cpp_identity()['version']}).{detail}", code=code, hint=hint)


# -- the child -----------------------------------------------------------------------------------


_PROBE_TEXT = " ".join(["Paris is the capital and largest city of France, on the Seine."] * 6)


def _step(name: str) -> None:
    sys.stdout.write(f"step {name}\n")
    sys.stdout.flush()


def child_main() -> None:
    """Load the model as the parent would, decode a few tokens, compute one embedding; print
    ``{"ok": true}``. An ordinary error exits with code 3; a native fault kills the process."""
    spec = json.loads(sys.argv[1])
    try:
        _step("import")
        from . import _local

        llama_cpp = importlib.import_module("llama_cpp")
        _local._quiet_llama_cpp()
        _step("load")
        llama = _local.open_llama(spec["model_path"], spec["params"], n_ctx=256, n_batch=256)
        _step("decode")
        # a prompt of some 80 tokens: batched matrix kernels, then one-token steps
        llama.create_completion(_PROBE_TEXT + " The capital of France is", max_tokens=4,
                                temperature=0.0)
        llama.close()
        _step("embed")
        embedder = _local.open_llama(spec["model_path"], spec["params"], n_ctx=256, n_batch=256,
                                     n_ubatch=256, embedding=True,
                                     pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        embedder.embed(["a probe", _PROBE_TEXT], normalize=True)
        embedder.close()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which loads and says why
        sys.stdout.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        os._exit(3)
    sys.stdout.write(json.dumps({"ok": True}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the test is the load and the decoding, not the interpreter's teardown
