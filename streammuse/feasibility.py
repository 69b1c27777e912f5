"""Real-time feasibility of (I, GL) pairs: paper section IV-D, equation 3.

tau_tick = 60000 / (4 BPM)            ms per tick (a tick is a 16th note)
RT95(GL) = f95(GL) / tau_tick          95th-percentile RTT in ticks (equation 2)
C1  real-time safety:     ceil(RT95) <= I
C2  playback continuity:  GL >= I + ceil(RT95)
feasible iff ceil(RT95) <= I <= GL - ceil(RT95)      (equation 3)
Corollary: a feasible GL has GL >= 2 ceil(RT95).

The search space is every pair with 1 <= I <= max_i and 1 <= GL <= max_gl.
The planner (``streammuse plan``, ``replay --auto``) applies it once, from a profile; the
adaptive client (``client.adaptive``) re-applies it during a song, from its own RTTs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from streammuse.contract import TICKS_PER_BEAT, tau_ms
from streammuse.errors import StreamMuseError


class Verdict(str, Enum):
    """The four colours of the paper's Fig. 4."""

    VALID = "valid"
    C1 = "C1"  # I < ceil(RT95): requests outpace responses
    C2 = "C2"  # GL < I + ceil(RT95): the backup runs out before the next response
    BOTH = "C1+C2"


def tick_ms(bpm: float) -> float:
    """tau_tick = 60000 / (4 BPM) ms. BPM <= 0 is a user error."""
    if not bpm > 0 or not math.isfinite(bpm):
        raise StreamMuseError(f"BPM must be a positive number, got {bpm}")
    return tau_ms(bpm)


def rt95_ticks(f95_ms: Callable[[float], float], gen_len: int, bpm: float) -> float:
    """RT95(GL) = f95(GL) / tau_tick. A fitted curve that dips below zero is read as 0 ms."""
    return max(0.0, float(f95_ms(gen_len))) / tick_ms(bpm)


def classify(interval: int, gen_len: int, rt95: float) -> Verdict:
    """Verdict for the pair (I, GL) given RT95(GL) in ticks (equation 3)."""
    k = math.ceil(rt95)
    c1 = interval < k
    c2 = gen_len < interval + k
    if c1 and c2:
        return Verdict.BOTH
    if c1:
        return Verdict.C1
    if c2:
        return Verdict.C2
    return Verdict.VALID


def passes_corollary(gen_len: int, rt95: float) -> bool:
    """The necessary condition GL >= 2 ceil(RT95): no I can be feasible at this GL otherwise."""
    return gen_len >= 2 * math.ceil(rt95)


@dataclass(frozen=True)
class Plan:
    """Every pair's verdict at one BPM. ``verdicts[i-1][gl-1]`` is the pair (I=i, GL=gl)."""

    bpm: float
    tick_ms: float
    max_i: int
    max_gl: int
    rt95: tuple[float, ...]  # RT95(GL) in ticks, GL = 1 .. max_gl
    verdicts: tuple[tuple[Verdict, ...], ...]

    @property
    def feasible_pairs(self) -> list[tuple[int, int]]:
        """All valid (I, GL), I ascending then GL ascending."""
        return [
            (i, gl)
            for i in range(1, self.max_i + 1)
            for gl in range(1, self.max_gl + 1)
            if self.verdicts[i - 1][gl - 1] is Verdict.VALID
        ]

    @property
    def feasible_share(self) -> float:
        """Valid pairs / all pairs in the search space."""
        return len(self.feasible_pairs) / (self.max_i * self.max_gl)

    @property
    def recommended(self) -> tuple[int, int] | None:
        """The feasible pair with the smallest I, then the smallest GL; None if none."""
        pairs = self.feasible_pairs
        return pairs[0] if pairs else None

    def counts(self) -> dict[str, int]:
        """How many pairs got each verdict."""
        out = {v.value: 0 for v in Verdict}
        for row in self.verdicts:
            for v in row:
                out[v.value] += 1
        return out


def _check_range(name: str, value: int) -> None:
    if value < 1:
        raise StreamMuseError(f"{name} must be >= 1 (the search range is empty), got {value}")


def plan_bpm(f95_ms: Callable[[float], float], bpm: float, max_i: int = 16, max_gl: int = 16) -> Plan:
    """Classify every (I, GL) in [1, max_i] x [1, max_gl] at one BPM."""
    _check_range("max I", max_i)
    _check_range("max GL", max_gl)
    tau = tick_ms(bpm)
    rt95 = tuple(rt95_ticks(f95_ms, gl, bpm) for gl in range(1, max_gl + 1))
    verdicts = tuple(
        tuple(classify(i, gl, rt95[gl - 1]) for gl in range(1, max_gl + 1))
        for i in range(1, max_i + 1)
    )
    return Plan(bpm=bpm, tick_ms=tau, max_i=max_i, max_gl=max_gl, rt95=rt95, verdicts=verdicts)


def recommend_pair(f95_ms: Callable[[float], float], bpm: float, max_i: int = 16, max_gl: int = 16) -> tuple[int, int]:
    """The recommended (I, GL) at this BPM; StreamMuseError with a remedy if none is feasible."""
    plan = plan_bpm(f95_ms, bpm, max_i=max_i, max_gl=max_gl)
    if plan.recommended is None:
        raise StreamMuseError(infeasible_advice(f95_ms, bpm, max_i=max_i, max_gl=max_gl))
    return plan.recommended


def _widest_margin(gen_len: int, max_i: int) -> int:
    """The largest ceil(RT95) any I can absorb at this GL: k <= I <= min(max_i, GL - k)."""
    return min(max_i, gen_len // 2)


def max_feasible_bpm(f95_ms: Callable[[float], float], max_i: int = 16, max_gl: int = 16) -> tuple[float, int]:
    """The largest BPM at which some pair is feasible, and the GL that achieves it.

    At GL the widest margin is k = min(max_i, floor(GL / 2)); a pair exists iff
    f95(GL) / tau <= k, i.e. BPM <= 15000 k / f95(GL). Returns (inf, GL) if f95(GL) <= 0.
    """
    _check_range("max I", max_i)
    _check_range("max GL", max_gl)
    best = (0.0, 0)
    for gl in range(2, max_gl + 1):
        f = float(f95_ms(gl))
        k = _widest_margin(gl, max_i)
        bpm = math.inf if f <= 0 else 60_000.0 * k / (TICKS_PER_BEAT * f)
        if bpm > best[0]:
            best = (bpm, gl)
    return best


def infeasible_advice(f95_ms: Callable[[float], float], bpm: float, max_i: int = 16, max_gl: int = 16) -> str:
    """One sentence for an empty plan: the largest BPM that works and the p95 RTT this BPM needs."""
    tau = tick_ms(bpm)
    best_bpm, gl = max_feasible_bpm(f95_ms, max_i=max_i, max_gl=max_gl)
    if gl == 0:
        return f"no (I, GL) pair is feasible: with GL <= {max_gl} there is no room for I and a backup (needs GL >= 2)"
    needed_ms = _widest_margin(gl, max_i) * tau
    return (
        f"no (I, GL) pair with I <= {max_i}, GL <= {max_gl} is feasible at {bpm:g} BPM: "
        f"the largest BPM that works is {math.floor(best_bpm * 10) / 10:g} (at GL={gl}), "
        f"or the p95 RTT at GL={gl} would need to drop from {float(f95_ms(gl)):.1f} ms "
        f"to <= {needed_ms:.1f} ms"
    )
