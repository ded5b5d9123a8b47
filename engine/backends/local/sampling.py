"""Drawing a token from one logits row, with its exact log p (temperature 1) and log q (the proposal).

Costs matter here: on a slow 2-core machine numpy's exp runs at ~4.5 ns a value, so one pass over SmolLM2's
49,152 logits is ~0.22 ms, and a 16-stream step decodes in ~200 ms. One exp pass per row (two under another
temperature), a cumulative sum in two levels, and a single uniform per token keep sampling to a few per cent
of it; the earlier Gumbel-max draw spent ~0.75 ms a row on noise alone.
"""

from __future__ import annotations

import numpy as np

# Under a proposal temperature below 1, terms below e^-30 of the largest add less than 49,152 * e^-30 = 5e-9 to
# a sum, under float32's resolution (1.2e-7): leaving them out changes no normaliser, such tokens (at most 5e-9
# of the mass) are never drawn, and the exp pass shrinks to the tokens left. At temperature 1 nearly every token
# is within e^-30 of the largest (SmolLM2: 47,800-49,100 of 49,152), so finding them would only cost time.
NEGLIGIBLE_LOG = 30.0
BLOCK = 256  # the cumulative sum runs over block totals, then within one block


def sample_token(logits: np.ndarray, temperature: float, uniform: float) -> tuple[int, float, float]:
    """(token, log p, log q) for one row of raw logits.

    log p is under the model at temperature 1; log q under softmax(logits / temperature), the distribution the
    token is drawn from (0 for the argmax at temperature 0). `uniform` in [0, 1) picks the token.
    """
    top = float(logits.max())
    shifted = logits - top
    weights = np.exp(shifted)
    log_z1 = _log_sum(weights)
    if temperature == 0:
        token = int(logits.argmax())
        return token, float(logits[token]) - top - log_z1, 0.0
    if temperature == 1.0:
        token = _pick(weights, uniform)
        log_p = float(logits[token]) - top - log_z1
        return token, log_p, log_p
    keep = np.flatnonzero(shifted > -NEGLIGIBLE_LOG * temperature)
    tempered = np.exp(shifted[keep] / temperature)
    token = int(keep[_pick(tempered, uniform)])
    log_q = (float(logits[token]) - top) / temperature - _log_sum(tempered)
    return token, float(logits[token]) - top - log_z1, log_q


def top_alternatives(logits: np.ndarray, count: int) -> tuple[tuple[int, float], ...]:
    """The `count` likeliest tokens of a row with their log p (temperature 1), best first."""
    top = float(logits.max())
    log_z1 = _log_sum(np.exp(logits - top))
    best = np.argpartition(logits, -count)[-count:]
    best = best[np.argsort(-logits[best], kind="stable")]
    return tuple((int(t), float(logits[t]) - top - log_z1) for t in best)


def _log_sum(weights: np.ndarray) -> float:
    return float(np.log(weights.sum(dtype=np.float64)))


def _pick(weights: np.ndarray, uniform: float) -> int:
    """Inverse-CDF choice of an index in proportion to `weights`, in two levels to avoid a full cumulative sum."""
    target = uniform * float(weights.sum(dtype=np.float64))
    if len(weights) <= BLOCK:
        return min(int(np.searchsorted(np.cumsum(weights, dtype=np.float64), target, side="right")), len(weights) - 1)
    starts = np.arange(0, len(weights), BLOCK)
    totals = np.cumsum(np.add.reduceat(weights, starts, dtype=np.float64))
    block = min(int(np.searchsorted(totals, target, side="right")), len(starts) - 1)
    before = totals[block - 1] if block else 0.0
    inside = np.cumsum(weights[starts[block]: starts[block] + BLOCK], dtype=np.float64)
    return int(starts[block]) + min(int(np.searchsorted(inside, target - before, side="right")), len(inside) - 1)


def stream_rng(seed: int | None, index: int) -> np.random.Generator:
    """The uniforms of one continuation: fixed by (seed, index), whatever else is decoded alongside it."""
    return np.random.default_rng(None if seed is None else [seed, index])
