"""System metrics of the paper's section V-D: ISR, Staleness and ISR_w.

Each takes the per-tick log of a performance: ``available`` is the indicator I(t)
(1 when some accompaniment could be scheduled at tick t, fresh or backup) and
``staleness`` is S(t), the scheduled frame's index in its generation sequence (-1, or
anything, on ticks with I(t) = 0: those ticks never enter a sum with weight).

For convenience every function also accepts a ``ticks`` table (``ticks.parquet`` of a
run folder, docs/design.md section 5) in place of ``available``; its ``available`` and
``staleness`` columns are then used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streammuse.contract import C as STALENESS_C  # C in ISR_w: the longest generation (section V-D)


def _columns(available, staleness=None) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(available, pd.DataFrame):
        if staleness is None and "staleness" in available:
            staleness = available["staleness"]
        available = available["available"]
    a = np.asarray(available, dtype=float).reshape(-1)
    s = None if staleness is None else np.asarray(staleness, dtype=float).reshape(-1)
    if s is not None and len(s) != len(a):
        raise ValueError(f"available has {len(a)} ticks but staleness has {len(s)}")
    return a, s


def isr(available) -> float:
    """Interaction Success Rate: the share of ticks with accompaniment to schedule.

    .. math:: ISR = \\frac{1}{N} \\sum_{t=0}^{N-1} I(t)

    Paper section V-D ("Real-time Performance").

    Parameters
    ----------
    available : array_like of {0, 1}, shape (N,), or a ticks DataFrame
        I(t) for every tick of the performance(s).

    Returns
    -------
    float
        ISR in [0, 1]; NaN when there are no ticks (N = 0).
    """
    a, _ = _columns(available)
    return float(a.mean()) if len(a) else float("nan")


def staleness(available, staleness=None) -> float:
    """Staleness: mean index S(t) of the scheduled frame in its generation sequence.

    .. math:: Staleness = \\frac{1}{|\\{t : I(t) = 1\\}|} \\sum_{t : I(t) = 1} S(t)

    Paper section V-D. S(t) = 0 is the first frame a request generated.

    Parameters
    ----------
    available : array_like of {0, 1}, shape (N,), or a ticks DataFrame
        I(t) per tick.
    staleness : array_like, shape (N,)
        S(t) per tick (ignored where I(t) = 0). Taken from the table when ``available``
        is a ticks DataFrame.

    Returns
    -------
    float
        Mean S(t) over ticks with I(t) = 1; NaN when no tick has I(t) = 1.
    """
    a, s = _columns(available, staleness)
    if s is None:
        raise ValueError("staleness: S(t) is needed (pass staleness=... or a ticks table)")
    hit = a == 1
    return float(s[hit].mean()) if hit.any() else float("nan")


def isr_w(available, staleness=None, c: int = STALENESS_C) -> float:
    """Weighted Interaction Success Rate: ISR with a staleness penalty per tick.

    .. math:: ISR_w = \\frac{1}{N} \\sum_{t=0}^{N-1} \\frac{C - S(t)}{C} \\, I(t),
              \\quad C = 32

    Paper section V-D. Ticks with I(t) = 0 add 0 whatever S(t) holds there.

    Parameters
    ----------
    available : array_like of {0, 1}, shape (N,), or a ticks DataFrame
        I(t) per tick.
    staleness : array_like, shape (N,)
        S(t) per tick. Taken from the table when ``available`` is a ticks DataFrame.
    c : int
        The constant C (default 32, the paper's value).

    Returns
    -------
    float
        ISR_w (at most ISR); NaN when there are no ticks (N = 0).
    """
    a, s = _columns(available, staleness)
    if s is None:
        raise ValueError("isr_w: S(t) is needed (pass staleness=... or a ticks table)")
    if not len(a):
        return float("nan")
    hit = a == 1
    weights = np.where(hit, (c - np.where(hit, s, 0.0)) / c, 0.0)
    return float(weights.mean())
