"""The results' statistical protocol (third edition, experiments/results/README.md), fixed
before its runs: one family of primary comparisons, each divided method's central policy
against the best single policy on each table's task at the end of its budget, tested with
Welch's two-sided t-test over the seeds and corrected across the family with Holm's
step-down method; every other comparison is exploratory (uncorrected 95% intervals).

    holm([0.01, 0.04, 0.03, 0.005])   # -> adjusted p, and which hold at family-wise 0.05
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA = 0.05  # the family-wise error rate of the primary comparisons
# The single policies a divided method's central policy is compared with: the better of
# them on the tuning seeds (not the table's) is each task's baseline
SINGLE = ("ppo-context", "ppo-blind-gru")
# The rows whose central policy is compared (every method with a central policy)
DIVIDED = ("independent", "central", "central-kl", "central-clip", "dnc", "distral",
           "distral2col")


def welch(a: Any, b: Any) -> tuple[float, float, float]:
    """(mean(a) - mean(b), its standard error, the Welch-Satterthwaite dof) of two
    independent samples with unequal variances; dof is nan where neither sample varies."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0.0:
        return float(a.mean() - b.mean()), 0.0, float("nan")
    dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    return float(a.mean() - b.mean()), float(np.sqrt(va + vb)), float(dof)


def welch_p(a: Any, b: Any) -> float:
    """Two-sided p-value of Welch's t-test that mean(a) = mean(b); 1 where neither sample
    varies and the means are equal, 0 where they differ."""
    import scipy.stats

    d, se, dof = welch(a, b)
    if se == 0.0:
        return 1.0 if d == 0.0 else 0.0
    return float(2.0 * scipy.stats.t.sf(abs(d) / se, dof))


def holm(p_values: Any, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of m p-values `[m]`: (adjusted p-values `[m]`, in the
    given order, and which comparisons hold at family-wise level `alpha` `[m]` bool).

    Sorted ascending, the k-th smallest (k from 0) is multiplied by m - k, the running
    maximum is taken (an adjusted p never falls below a smaller one's) and capped at 1; the
    comparisons whose adjusted p is at most `alpha` hold."""
    p = np.asarray(p_values, np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted, adjusted <= alpha
