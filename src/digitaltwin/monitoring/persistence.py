"""k-of-n persistence, so one noisy interval does not page anyone.

An interval is flagged at level ``s`` when some window of ``n`` consecutive intervals containing
it holds at least ``k`` intervals scoring ``>= s``. As a score: ``persistent[t]`` is the largest
``s`` for which that holds, i.e. the maximum, over the ``n`` windows containing ``t``, of the
``k``-th largest score in the window (a morphological opening for ``k = n``, a dilation for
``k = 1``). An online alarm fires when the window ending now qualifies (at most ``n - 1`` intervals
after the event began) and back-dates its start to the window's first qualifying interval, so the
event covers every interval the persistent score flags.
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
    return sliding_window_view(np.concatenate([pad, kth]), n).max(axis=1)
