"""Drawing tokens from logits rows, with each token's exact log p (temperature 1) and log q (the proposal).

Costs matter here: a 16-stream step on a 2-core EPYC decodes in ~100 ms, and numpy's exp alone is ~2 ns a
value, ~0.1 ms a row of SmolLM2's 49,152 logits. Row by row, with a dozen small calls a row, sampling took
3.1-5.1 ms a 16-row step and 0.6-0.8 ms for one row; one pass of each kind over all the rows of a step
(subtract, exp, block sums), then a scalar pick a row, takes 0.6 and 0.3 of that (real logits, temperature 1).
Every row's figures come out the same to the bit whatever other rows share its step, which the decoder's promise
that batching changes nothing rests on.
"""

from __future__ import annotations

import math

import numpy as np

# Under a proposal temperature below 1, terms below e^-30 of the largest add less than 49,152 * e^-30 = 5e-9 to
# a sum, under float32's resolution (1.2e-7): leaving them out changes no normaliser, such tokens (at most 5e-9
# of the mass) are never drawn, and the tempered exp pass shrinks to the tokens left. At temperature 1 nearly
# every token is within e^-30 of the largest (SmolLM2: 47,800-49,100 of 49,152), so finding them would only
# cost time.
NEGLIGIBLE_LOG = 30.0
BLOCK = 256  # the cumulative sums run over block totals, then within one block


def sample_tokens(logits: np.ndarray, temperatures: np.ndarray, uniforms: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, log p, log q) for rows of raw logits, one token a row.

    log p is under the model at temperature 1; log q under softmax(row / temperature), the distribution the token
    is drawn from (0 for the argmax at temperature 0). `uniforms` in [0, 1) pick the tokens.
    """
    rows, vocab = logits.shape
    top = logits.max(axis=1)
    weights, running = _exp_blocks(logits, top)
    log_z1 = np.log(running[:, -1])
    tokens = np.empty(rows, dtype=np.int64)
    log_q = np.zeros(rows)
    for row in range(rows):
        temperature = float(temperatures[row])  # compared as the returned log q is chosen, in float64
        if temperature == 1:
            tokens[row] = _pick(weights[row], running[row], uniforms[row], vocab)
        elif temperature == 0:
            tokens[row] = logits[row].argmax()
        else:
            keep = np.flatnonzero(weights[row, :vocab] > np.exp(-NEGLIGIBLE_LOG * temperature))
            scaled = (logits[row, keep] - top[row]) / temperature
            kept = np.cumsum(np.exp(scaled), dtype=np.float64)
            choice = min(int(kept.searchsorted(uniforms[row] * kept[-1], "right")), len(keep) - 1)
            tokens[row] = keep[choice]
            log_q[row] = scaled[choice] - np.log(kept[-1])
    log_p = logits[np.arange(rows), tokens] - top - log_z1
    return tokens, log_p, np.where(temperatures == 1, log_p, log_q)


def top_alternatives(logits: np.ndarray, count: int) -> tuple[tuple[int, float], ...]:
    """The `count` likeliest tokens of a row with their log p (temperature 1), best first."""
    top = logits.max(keepdims=True)
    _, running = _exp_blocks(logits[None, :], top)
    log_z1 = float(np.log(running[0, -1]))
    best = np.argpartition(logits, -count)[-count:]
    best = best[np.argsort(-logits[best], kind="stable")]
    return tuple((int(t), float(logits[t] - top[0]) - log_z1) for t in best)


def next_token_entropy(logits: np.ndarray) -> float:
    """The entropy of softmax(row), the model's next-token distribution at temperature 1, in nats: log Z less the
    mean of (logit - top) under it. One exp pass over the row, ~0.1 ms; asked for by entropy-cut MH only."""
    shifted = logits.astype(np.float64) - float(logits.max())
    weights = np.exp(shifted)
    total = float(weights.sum())
    return math.log(total) - float(weights @ shifted) / total


def _exp_blocks(logits: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """exp(row - top) for every row, zero-padded to whole blocks, and each row's running block totals in float64;
    the last running total is the row's normaliser.

    Each block total is one reduction over 256 contiguous values, so a row's figures do not depend on the rows
    beside it.
    """
    rows, width = logits.shape
    blocks = -(-width // BLOCK)
    weights = np.empty((rows, blocks * BLOCK), dtype=np.float32)
    weights[:, width:] = 0
    values = weights[:, :width]
    np.subtract(logits, top[:, None], out=values)
    np.exp(values, out=values)
    totals = weights.reshape(rows, blocks, BLOCK).sum(axis=2)
    return weights, np.cumsum(totals, axis=1, dtype=np.float64)


def _pick(weights: np.ndarray, running: np.ndarray, uniform: float, width: int) -> int:
    """Inverse-CDF choice of an index in proportion to `weights`, given their running block totals: the block,
    then the index within it."""
    target = uniform * running[-1]
    block = min(int(running.searchsorted(target, "right")), len(running) - 1)
    before = running[block - 1] if block else 0.0
    start = block * BLOCK
    inside = np.cumsum(weights[start: start + BLOCK], dtype=np.float64)
    return min(start + min(int(inside.searchsorted(target - before, "right")), BLOCK - 1), width - 1)


def stream_rng(seed: int | None, index: int) -> np.random.Generator:
    """The uniforms of one continuation: fixed by (seed, index), whatever else is decoded alongside it."""
    return np.random.default_rng(None if seed is None else [seed, index])
