"""The embedded model's backend test run (pfkit.providers._local_probe): a native crash of
llama.cpp in a child process becomes a clear error, never a dead process, a success or a hang.

The children here really die (a real SIGSEGV, a real abort, a real sleep past the timeout); the
tests that load the real model run the real probe program.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfkit.errors import UserError
from pfkit.providers import _local_probe
from pfkit.providers._local import LocalModel, backend_params, default_model_path
from pfkit.providers._local_probe import LocalModelCrashed, check_backend, cpu_features

PARAMS = {"use_extra_bufts": False, "n_threads": 1}
SEGFAULT = ("import os, signal\nprint('step decode', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGSEGV)\n")
HAS_AMX = "amx_int8" in cpu_features()


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    """Every test starts with no remembered outcome, its own home and the default settings."""
    _local_probe._OUTCOMES.clear()
    for name in ("PFKIT_LOCAL_PROBE", "PFKIT_LOCAL_PROBE_TIMEOUT", "PFKIT_LOCAL_EXTRA_BUFTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    yield
    _local_probe._OUTCOMES.clear()


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A stand-in model file (the key uses its path, size and mtime; these children never read
    it)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF not really")
    return path


def cache_files(home: Path) -> list[Path]:
    return sorted((home / "cache" / "local-probe").glob("*.json"))


def test_a_child_killed_by_a_signal_is_an_error_naming_it(model_file, tmp_path):
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, PARAMS, home=tmp_path, child_code=SEGFAULT)
    error = info.value
    assert isinstance(error, UserError) and error.code == "LocalModelCrashed"
    assert "SIGSEGV (signal 11)" in error.message
    assert "while decoding its first tokens" in error.message  # the step it died in
    assert "CPU features:" in error.message and "use_extra_bufts=False" in error.message
    assert "PFKIT_LOCAL_PROBE=0" in error.hint and "open_ai" in error.hint
    assert "PFKIT_LOCAL_EXTRA_BUFTS" not in error.hint  # it was not set
    assert cache_files(tmp_path) == []  # a failure is not remembered on disk
    with pytest.raises(LocalModelCrashed) as again:  # nor hidden the second time in a process
        check_backend(model_file, PARAMS, home=tmp_path, child_code=SEGFAULT)
    assert again.value.message == error.message


def test_an_abort_and_an_exit_code_are_named(model_file, tmp_path):
    abort = "import os\nprint('step load', flush=True)\nos.abort()\n"
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, PARAMS, home=tmp_path, child_code=abort)
    assert "SIGABRT" in info.value.message and "while loading the model" in info.value.message
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, {**PARAMS, "n_threads": 2}, home=tmp_path,
                      child_code="import os; os._exit(7)")
    assert "exit code 7" in info.value.message and "while starting" in info.value.message
    sigill = "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n"
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, {**PARAMS, "n_threads": 3}, home=tmp_path, child_code=sigill)
    assert "SIGILL" in info.value.message and "instructions this CPU lacks" in info.value.hint
    with pytest.raises(LocalModelCrashed) as info:  # exit 0 without saying it finished
        check_backend(model_file, PARAMS, home=tmp_path, child_code="pass")
    assert "ended without finishing" in info.value.message


def test_what_llama_cpp_said_before_dying_is_shown(model_file, tmp_path):
    code = ("import sys, os\nprint('step decode', flush=True)\n"
            "sys.stderr.write('ggml.c:123: GGML_ASSERT(n > 0) failed\\n'); sys.stderr.flush()\n"
            "os.abort()\n")
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, PARAMS, home=tmp_path, child_code=code)
    assert "GGML_ASSERT(n > 0) failed" in info.value.message


def test_a_probe_past_its_timeout_is_reported_as_such(model_file, tmp_path):
    hang = "import time\nprint('step load', flush=True)\ntime.sleep(120)\n"
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, PARAMS, home=tmp_path, timeout=1, child_code=hang)
    error = info.value
    assert error.code == "LocalModelProbeTimeout"
    assert "did not finish in 1 s" in error.message and "loading the model" in error.message
    assert "PFKIT_LOCAL_PROBE_TIMEOUT" in error.hint


def test_the_timeout_comes_from_the_environment(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_LOCAL_PROBE_TIMEOUT", "0.5")
    with pytest.raises(LocalModelCrashed) as info:
        check_backend(model_file, PARAMS, home=tmp_path, child_code="import time; time.sleep(60)")
    assert "did not finish in 0.5 s" in info.value.message
    monkeypatch.setenv("PFKIT_LOCAL_PROBE_TIMEOUT", "soon")
    with pytest.raises(UserError) as info:
        check_backend(model_file, PARAMS, home=tmp_path, child_code="pass")
    assert "PFKIT_LOCAL_PROBE_TIMEOUT" in info.value.message and "'soon'" in info.value.message


def test_a_passing_probe_is_remembered_per_key(model_file, tmp_path):
    runs = tmp_path / "runs.txt"
    counting = (f"open({str(runs)!r}, 'a').write('x')\n"
                "print('{\"ok\": true}', flush=True)\n")
    home = tmp_path / "home"

    def check(params=PARAMS, where=home):
        assert check_backend(model_file, params, home=where, child_code=counting) is True
        return len(runs.read_text())

    assert check() == 1
    assert len(cache_files(home)) == 1
    _local_probe._OUTCOMES.clear()  # a new process: only the cache file remains
    assert check() == 1  # the child did not run again
    assert check({**PARAMS, "use_extra_bufts": True}) == 2  # another parameter: tested again
    _local_probe._OUTCOMES.clear()
    assert check(where=tmp_path / "other-home") == 3  # another home has no record of it
    os.utime(model_file, ns=(1, 1))  # the model file changed
    _local_probe._OUTCOMES.clear()
    assert check() == 4
    for record in cache_files(home):
        record.write_text("{not json", encoding="utf-8")  # a damaged record is not trusted
    _local_probe._OUTCOMES.clear()
    assert check() == 5 and check({**PARAMS, "use_extra_bufts": True}) == 6


def test_probe_off_skips_the_child(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_LOCAL_PROBE", "0")
    assert check_backend(model_file, PARAMS, home=tmp_path, child_code=SEGFAULT) is False


def test_an_ordinary_error_in_the_child_leaves_the_words_to_the_real_load(tmp_path):
    # The real probe program on a file llama.cpp refuses: the child reports a Python error
    # (not a crash), and the in-process load names the file.
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a GGUF file" * 100)
    assert check_backend(bad, PARAMS, home=tmp_path) is False
    assert cache_files(tmp_path) == []
    with pytest.raises(UserError) as info:
        LocalModel(bad).load()
    assert info.value.code == "LocalModelLoadError" and str(bad) in info.value.message


def test_extra_buffer_types_setting(monkeypatch):
    assert backend_params(2) == {"use_extra_bufts": False, "n_threads": 2}
    monkeypatch.setenv("PFKIT_LOCAL_EXTRA_BUFTS", "1")
    assert backend_params(2)["use_extra_bufts"] is True
    monkeypatch.setenv("PFKIT_LOCAL_EXTRA_BUFTS", "maybe")
    with pytest.raises(UserError) as info:
        backend_params(2)
    assert info.value.code == "InvalidEnvironment" and "PFKIT_LOCAL_EXTRA_BUFTS" in info.value.message


@pytest.mark.slow
def test_the_real_probe_passes_with_the_default_parameters(tmp_path):
    assert check_backend(default_model_path(), backend_params(1), home=tmp_path) is True
    assert len(cache_files(tmp_path)) == 1


@pytest.mark.slow
@pytest.mark.skipif(not HAS_AMX, reason="the AMX repacking crash needs a CPU with AMX")
def test_repacking_on_an_amx_cpu_is_caught_before_it_kills_the_process(monkeypatch):
    # The bug itself: with extra buffer types on, llama.cpp segfaults in its first decode on AMX.
    monkeypatch.setenv("PFKIT_LOCAL_EXTRA_BUFTS", "1")
    with pytest.raises(LocalModelCrashed) as info:
        LocalModel(default_model_path(), n_ctx=256, n_threads=1).load()
    error = info.value
    assert "SIGSEGV" in error.message and "amx_int8" in error.message
    assert "use_extra_bufts=True" in error.message
    assert "Unset PFKIT_LOCAL_EXTRA_BUFTS" in error.hint


@pytest.mark.slow
@pytest.mark.skipif(not HAS_AMX, reason="the AMX repacking crash needs a CPU with AMX")
def test_the_cli_reports_the_crash_instead_of_dying(tmp_path):
    flow = Path(__file__).resolve().parent.parent / "flows" / "ask_local"
    env = {**os.environ, "PFKIT_HOME": str(tmp_path), "PFKIT_LOCAL_EXTRA_BUFTS": "1"}
    done = subprocess.run([sys.executable, "-m", "pfkit", "flow", "test", "--flow", str(flow),
                           "--inputs", "question=What is the capital of France?"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode not in (0, -11, 139), done
    assert "SIGSEGV" in done.stderr and "pfkit: error" in done.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_threads_follow_the_cpus_the_process_may_use(tmp_path):
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "from pfkit.providers._local import LocalModel\n"
            f"print(LocalModel({str(tmp_path / 'm.gguf')!r}).n_threads)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "1", done.stderr


@pytest.mark.skipif(os.name != "posix", reason="the lock between processes is POSIX flock")
def test_processes_starting_together_test_once(model_file, tmp_path):
    import time

    counter, go, home = tmp_path / "count.txt", tmp_path / "go", tmp_path / "home"
    child = (f"import os, time\nopen({str(counter)!r}, 'a').write('x')\n"
             f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
             "print('{\"ok\": true}', flush=True)\n")
    parent = ("import sys\nfrom pfkit.providers._local_probe import check_backend\n"
              f"print(check_backend({str(model_file)!r}, {PARAMS!r}, home={str(home)!r}, "
              f"timeout=120, child_code={child!r}))\n")

    def start():
        return subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def count():
        return len(counter.read_text()) if counter.exists() else 0

    def wait_for(condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    first = start()
    wait_for(lambda: count() == 1, 60)  # the first test run is in progress
    second = start()
    wait_for(lambda: count() > 1, 5)  # without the lock the second would start its own
    go.touch()
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [out.strip() for out, _ in outputs] == ["True", "True"], outputs
    assert count() == 1  # the second process waited, then used the first one's result
