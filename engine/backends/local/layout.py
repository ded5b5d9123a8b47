"""How the model's weights may be laid out on this CPU without crashing, fastest first.

On some AMX machines ggml's AMX tile kernels segfault on `ldtilecfg`, which only multi-token batches reach
(llama.cpp issue #20824); its matrix-vector kernels work and decode about 1.5x faster than the plain layout.
The verdict is probed once in child processes, so a crash costs nothing, and cached per llama.cpp build.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from engine.errors import ConfigError
from engine.settings import LAYOUTS

# plain: ggml's generic CPU layout; repacked: ggml's extra buffer types (AMX, CPU repack) for every batch;
# repacked-one-token: repacked, with llama.cpp fed one token per decode.
PLAIN, REPACKED, REPACKED_ONE_TOKEN = LAYOUTS
# Forces one layout for a whole process tree, the test suite included: `BEAMTUI_WEIGHTS=plain pytest`.
LAYOUT_ENV = "BEAMTUI_WEIGHTS"

_PROBE = """
import sys, llama_cpp as L
quiet = L.llama_log_callback(lambda *a: None)  # referenced, or ctypes frees it under llama.cpp
L.llama_log_set(quiet, None)
L.llama_backend_init()
model = L.llama_model_load_from_file(sys.argv[1].encode(), L.llama_model_default_params())
params = L.llama_context_default_params()
params.n_ctx = 64
ctx = L.llama_init_from_model(model, params)
size = int(sys.argv[2])
batch = L.llama_batch_init(size, 0, 1)
for i in range(size):
    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 1, i, 1, i == size - 1
    batch.seq_id[i][0] = 0
batch.n_tokens = size
sys.exit(L.llama_decode(ctx, batch))
"""


def forced_layout() -> str | None:
    """The layout named in BEAMTUI_WEIGHTS, if any; an unknown name is an error, not a silent default."""
    value = os.environ.get(LAYOUT_ENV, "").strip()
    if not value or value == "auto":
        return None
    if value not in LAYOUTS:
        raise ConfigError(f"{LAYOUT_ENV}={value!r}: choose auto or one of {', '.join(LAYOUTS)}")
    return value


def _amx_compiled_and_present(llama_cpp) -> bool:
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-cpu.so", "libggml-cpu.dylib", "ggml-cpu.dll"):
        if (lib_dir / name).exists():
            probe = getattr(ctypes.CDLL(str(lib_dir / name)), "ggml_cpu_has_amx_int8", None)
            return bool(probe and probe())
    return False


def _decodes_in_child(model_path: Path, tokens: int) -> bool:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(model_path), str(tokens)], capture_output=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def weight_layout(llama_cpp, model_path: Path) -> str:
    """The fastest layout that decodes on this CPU: forced by BEAMTUI_WEIGHTS, else probed and cached."""
    forced = forced_layout()
    if forced is not None:
        return forced
    if not _amx_compiled_and_present(llama_cpp):
        return REPACKED
    lib = Path(llama_cpp.__file__).parent / "lib"
    build = importlib.metadata.version("llama_cpp_python")  # the bindings module carries no version
    stamp = f"{build}:{int(max(p.stat().st_mtime for p in lib.iterdir()))}:{model_path.name}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "beamtui" / "weight-layout.json"
    try:
        verdicts = json.loads(cache.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if verdicts.get(stamp) not in LAYOUTS:
        if _decodes_in_child(model_path, 4):
            verdicts[stamp] = REPACKED
        elif _decodes_in_child(model_path, 1):
            verdicts[stamp] = REPACKED_ONE_TOKEN
        else:
            verdicts[stamp] = PLAIN
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(verdicts))
        except OSError:
            pass  # no cache dir: probe again next time
    return verdicts[stamp]
