"""k-of-n persistence, so one noisy interval does not page anyone.

An interval is flagged at level ``s`` when some window of ``n`` consecutive intervals containing
it holds at least ``k`` intervals scoring ``>= s``, and it lies between two such intervals (itself
included) less than ``n`` apart: quiet intervals inside a persistent run are bridged, quiet ones
before its first or after its last exceeding interval are not. As a score: ``persistent[t]`` is
the largest ``s`` for which that holds, i.e. the minimum of (a) the maximum, over the ``n`` windows
containing ``t``, of the ``k``-th largest score in the window (a morphological opening for ``k = n``)
and (b) the smaller of the highest score in the ``n`` intervals up to ``t`` and in the ``n`` from
``t`` on. An online alarm fires when the window ending now qualifies (at most ``n - 1`` intervals
after the event began) and back-dates its start to the first exceeding interval, so the event
covers exactly the intervals the persistent score flags.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def k_of_n(scores: np.ndarray, k: int, n: int) -> np.ndarray:
    """Persistent scores (see the module docstring); NaN scores count as the lowest.

    Args:
        scores: one score per interval, shape ``(T,)``.
        k, n: ``1 <= k <= n``.

    Returns:
        Shape ``(T,)``; ``-inf`` where no window can qualify (e.g. fewer than ``k`` scored intervals).
    """
    if not 1 <= k <= n:
        raise ValueError(f"persistence needs 1 <= k <= n, got k={k}, n={n}")
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    if s.size == 0 or n == 1:
        return s
    pad = np.full(n - 1, -np.inf)
    windows = sliding_window_view(np.concatenate([s, pad]), n)  # window j covers [j, j + n)
    kth = np.partition(windows, n - k, axis=1)[:, n - k]
    best_window = sliding_window_view(np.concatenate([pad, kth]), n).max(axis=1)
    left = sliding_window_view(np.concatenate([pad, s]), n).max(axis=1)  # max of s[t - n + 1 .. t]
    right = windows.max(axis=1)  # max of s[t .. t + n - 1]
    return np.minimum(best_window, np.minimum(left, right))
