"""Estimating one log-probability from the other when a server gives only one kind, plus top alternatives.

A server samples at temperature T from q = softmax(logits / T) but may report either raw log p (temperature 1)
or the processed log q. Each follows from the other and the normaliser of the whole distribution; with only
the top alternatives at a position, the normaliser is summed over those. At T < 1, q puts little mass outside
the top few tokens, so log q from raw top-k is close; log p from processed top-k misses more of the tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _log_normaliser(value: float, alternatives: Sequence[float], scale: float) -> float:
    """log sum exp(scale * a) over the alternatives, and the token's own value when the server left it out of
    its top-k. One pass, with no lists made: it runs for every token of every proposal (20 alternatives)."""
    top = scale * max(value, max(alternatives, default=value))
    total = 0.0
    own = False
    for a in alternatives:
        total += math.exp(scale * a - top)
        own = own or abs(a - value) <= 1e-6
    if not own:
        total += math.exp(scale * value - top)
    return top + math.log(total)


def estimated_entropy(alternatives: Sequence[float], scale: float = 1.0) -> float:
    """The model's next-token entropy at one position, over its top alternatives renormalised: exact when they
    are the whole vocabulary, a deterministic function of the prefix either way (all entropy cuts need).
    `scale` turns processed log q at temperature T back into raw log p up to a constant (T), which the
    renormalising removes."""
    scaled = [scale * a for a in alternatives if a > -math.inf]  # a token of probability 0 adds nothing
    top = max(scaled)
    weights = [math.exp(a - top) for a in scaled]
    total = math.fsum(weights)
    return math.log(total) - math.fsum(w * (a - top) for w, a in zip(weights, scaled, strict=True)) / total


def estimated_log_q(log_p: float, alternatives: Sequence[float], temperature: float) -> float:
    """log q of a token, from its raw log p and the raw log p of the top alternatives at its position."""
    return log_p / temperature - _log_normaliser(log_p, alternatives, 1 / temperature)


def estimated_log_p(log_q: float, alternatives: Sequence[float], temperature: float) -> float:
    """log p of a token, from its processed log q and the processed log q of the top alternatives."""
    return log_q * temperature - _log_normaliser(log_q, alternatives, temperature)
