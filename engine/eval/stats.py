"""Accuracy with a Wilson interval, the exact McNemar test for two strategies graded on the same problems, and
pass@k from several samples per problem."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: problems only the first strategy solved, and
    problems only the second did. Under the null each discordant pair goes either way with probability 1/2."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k answers drawn without replacement from n, c of them right, is right:
    1 - C(n-c, k) / C(n, k), the unbiased estimator of Chen et al. (2021, arXiv 2107.03374). Needs k <= n."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n, got n={n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_ks(samples: int) -> list[int]:
    """The k reported for `samples` samples a problem: 1, 2, 4, ... and `samples` itself."""
    ks = [1 << i for i in range(samples.bit_length()) if 1 << i <= samples]
    return ks if ks[-1] == samples else [*ks, samples]
