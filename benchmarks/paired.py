"""Paired comparisons over seeds: the per-seed difference of two variants and its 95 % t-interval.

Two variants trained with the same seeds on the same data differ by less noise than two independent
means: what the seed does to both (initialisation, batch order) cancels in the difference. A claim is made
only where the interval excludes zero.
"""
from __future__ import annotations

import math
import statistics

#: Two-sided 95 % quantiles of Student's t, t_{0.975}(df), for df = 1 … 30 (then the normal 1.96 is within
#: 2 % of the truth).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96


def paired_interval(a: list[float], b: list[float]) -> dict:
    """Mean of ``a[i] − b[i]`` over seeds with its 95 % t-interval; ``a`` and ``b`` are in seed order."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired interval needs two equally long lists of at least 2 seeds")
    differences = [x - y for x, y in zip(a, b)]
    n = len(differences)
    mean = statistics.mean(differences)
    half = t_quantile_975(n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "differences": differences}


def verdict(interval: dict, unit: str = "AP50") -> str:
    """The words a claim may use: an effect only where the interval excludes zero."""
    span = f"{interval['mean']:+.1f} [{interval['low']:+.1f}, {interval['high']:+.1f}]"
    if interval["low"] > 0:
        return f"{span}: higher"
    if interval["high"] < 0:
        return f"{span}: lower"
    return f"{span}: no detectable difference"
