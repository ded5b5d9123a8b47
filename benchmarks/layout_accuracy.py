"""Does the faster weight layout cost accuracy? Teacher-forced NLL of README.md in each layout that runs here.

    python -m benchmarks.layout_accuracy      (from the repository root)

Feeds the first 400 tokens of README.md one token per decode (the only way every layout can run) and reports
the mean negative log-likelihood of each next token, plus how far the per-token values of each layout stray
from the plain one.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np

from engine.backends.local.gguf import GGUFModel
from engine.backends.local.layout import PLAIN, weight_layout
from engine.backends.local.model_file import embedded_model_path
from engine.backends.local.token_batch import TokenBatch

TOKENS = 400
TEXT = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def token_nll(layout: str) -> np.ndarray:
    model = GGUFModel(embedded_model_path(), layout=layout)
    tokens = model.encode(TEXT)[:TOKENS]
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_threads, params.n_threads_batch = 512, 2, 2
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = llama_cpp.llama_init_from_model(model.model, params)
    batch = TokenBatch(llama_cpp, 1)
    nll = []
    for pos, (token, following) in enumerate(zip(tokens, tokens[1:], strict=False)):
        assert llama_cpp.llama_decode(ctx, batch.fill([token], [pos], [0], [True])) == 0
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(model.n_vocab,)).astype(np.float64)
        log_norm = row.max() + np.log(np.exp(row - row.max()).sum())
        nll.append(log_norm - row[following])
    llama_cpp.llama_free(ctx)
    model.close()
    return np.array(nll)


def main() -> None:
    probed = weight_layout(llama_cpp, embedded_model_path())
    plain = token_nll(PLAIN)
    print(f"{len(plain)} tokens of README.md, one token per decode\n")
    print("| weights | mean NLL | mean abs diff vs plain | max abs diff vs plain |")
    print("|---|---:|---:|---:|")
    print(f"| {PLAIN} | {plain.mean():.4f} | - | - |")
    if probed != PLAIN:
        other = token_nll(probed)
        diff = np.abs(other - plain)
        print(f"| {probed} | {other.mean():.4f} | {diff.mean():.3f} | {diff.max():.3f} |")


if __name__ == "__main__":
    main()
