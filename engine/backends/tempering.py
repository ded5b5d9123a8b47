"""Estimating one log-probability from the other when a server gives only one kind, plus top alternatives.

A server samples at temperature T from q = softmax(logits / T) but may report either raw log p (temperature 1)
or the processed log q. Each follows from the other and the normaliser of the whole distribution; with only
the top alternatives at a position, the normaliser is summed over those. At T < 1, q puts little mass outside
the top few tokens, so log q from raw top-k is close; log p from processed top-k misses more of the tail.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.scoring import log_sum_exp


def _with_own(value: float, alternatives: Sequence[float]) -> list[float]:
    """The alternatives, plus the token's own value when the server left it out of its top-k."""
    values = list(alternatives)
    if all(abs(a - value) > 1e-6 for a in values):
        values.append(value)
    return values


def estimated_log_q(log_p: float, alternatives: Sequence[float], temperature: float) -> float:
    """log q of a token, from its raw log p and the raw log p of the top alternatives at its position."""
    scaled = [a / temperature for a in _with_own(log_p, alternatives)]
    return log_p / temperature - log_sum_exp(scaled)


def estimated_log_p(log_q: float, alternatives: Sequence[float], temperature: float) -> float:
    """log p of a token, from its processed log q and the processed log q of the top alternatives."""
    scaled = [a * temperature for a in _with_own(log_q, alternatives)]
    return log_q * temperature - log_sum_exp(scaled)
