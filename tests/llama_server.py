"""`python -m llama_cpp.server`, started the way the tests need it.

On machines where ggml's AMX kernels crash on batched decoding (see engine.backends.local.weight_layout), the
weights must stay in the plain CPU layout; the server has no flag for that, so this wrapper sets the default
model parameters before handing over to the server's own entry point. Everything else is the real server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import llama_cpp

from engine.backends.local.layout import PLAIN, REPACKED, weight_layout


def server_layout(model: Path) -> str:
    """The server decodes multi-token batches, so only a layout safe for any batch may stay repacked."""
    return REPACKED if weight_layout(llama_cpp, model) == REPACKED else PLAIN


def use_safe_weight_layout(model: Path) -> None:
    """Make every later `llama_cpp.Llama` keep weights in the plain CPU layout where AMX would crash."""
    if server_layout(model) == REPACKED:
        return
    plain_defaults = llama_cpp.llama_cpp.llama_model_default_params

    def defaults():
        params = plain_defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_cpp.llama_model_default_params = defaults


def die_with_the_test_run() -> None:
    """A killed pytest skips its fixtures' teardown; without this the server outlived it (one was found 44
    minutes later, taking CPU from a benchmark). Linux's PR_SET_PDEATHSIG sends SIGTERM when the parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the line above
        sys.exit(0)


def main() -> None:
    die_with_the_test_run()
    use_safe_weight_layout(Path(sys.argv[sys.argv.index("--model") + 1]))
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
