"""Adaptive (I, GL): the client re-plans while the latency drifts (beyond the paper).

The paper picks (I, GL) once, from a profile measured beforehand (equation 3). Here the
client keeps estimating its own p95 round trip from the answers it gets and re-solves
equation 3 between requests, so a pair chosen at bar 1 is replaced when the network
or the server drifts (``client.drift``), and given back when it recovers.

**Estimate.** Over the last ``window`` answered requests (``ok`` or ``late``, and
wall-clock requests given up at their deadline, with the time waited as their RTT and no
server time, so they do not enter s_hat;
superseded answers carry no generation, refused ones nothing: a dead server is the
backoff's job), each RTT is moved to the GL in question by the server's own time per
generated tick:

    s_hat        = median_i(inference_ms_i / GL_i)
    f95_hat(GL)  = Q95_i(rtt_ms_i - s_hat GL_i) + s_hat GL
    RT95_hat(GL) = f95_hat(GL) / tau

so a change of pair does not empty the window, and GL's cost is the server's as
measured, not the profile's.

**Choice**, two rules (``AdaptiveSettings.rule``):

* ``equation3``, the planner's rule (``streammuse.feasibility.plan_bpm`` on f95_hat):
  the feasible pair of equation 3 with the smallest I, then the smallest GL; when none
  is feasible, the widest margin the search space allows (I = min(ceil RT95_hat,
  max_i), GL = max_gl). Up at once when the pair in use turns infeasible; down only to
  a pair that stays feasible with ``down_margin_ticks`` added to RT95_hat, and at least
  ``dwell_ticks`` after the last switch.
* ``isr_w`` (default): the pair with the highest expected ISR_w under the window's RTT
  distribution (:func:`expected_isr_w`; pairs within ``min_gain`` of the best count as
  equal: the smallest I, then GL, is taken; the client also moves back to such a
  smaller pair once ``dwell_ticks`` have passed). Equation 3 asks
  that a p95 answer arrive before its *first* tick; the buffer only needs some answer
  before each tick. With RTT between 1 and 2 ticks, (1, 2) plays every tick at
  staleness 1 (ISR_w 31/32) while equation 3 demands I >= 2 (at best 0.953): the
  planner's rule gives ISR_w away. A switch must gain ``min_gain``; one gaining less
  than ``urgent_gain`` also waits ``dwell_ticks`` since the last switch.

**Load** (the ``isr_w`` rule). The paper's RTT model treats the server's time as a
function of GL alone; on a server shared by several sessions it grows with what all of
them ask, and a move that asks for more raises every session's RTT, which the estimate
would read as a slower network and answer with a longer GL: a feedback loop that ran a
shared replica into the ground (issue 33: ``replay --setting remote --adaptive``, every
song from (2, 5) to (1, 16), ISR_w 0.15 where the fixed pair played 0.92). A pair's
demand is d = GL / I, the frames the server computes per tick of the song, and it fills

    rho(I', GL') = s_hat GL' / (I' tau) x max(1, I / I')

of the server's time, seen from the pair in use (I, GL): a session that asks twice as
often meets the other sessions' requests in every batch instead of every other one (through
the app, four sessions: 19 ms of compute per generated tick at I = 2, 48 at I = 1). A
move to a pair of more demand, or to a shorter I whatever its demand, must keep rho <=
``max_utilisation``, and one to a shorter I also waits until ``min_samples`` answers were
sent since the last switch (a move is never made on an estimate its own previous move
inflated; a longer GL at the same I does not wait: a network burst needs its backup
now); when the pair in use already fills more than that, the client moves at once to
one that fits (reason ``load``). So the demand a session puts on a server can only grow
into room the server has shown.

Either way a quantile or distribution over a window reacts to two slow answers at once
but needs most of a window of fast ones to forget them, so bursts do not make the pair
flap.

A switch takes effect at once: the request schedule restarts at the next tick
(requests at s = t + 1 + k I'), so no tick is left between the old pair's last request
and the new pair's first.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from streammuse.contract import C as STALENESS_C
from streammuse.contract import TICKS_PER_BEAT
from streammuse.feasibility import Verdict, classify, plan_bpm


@dataclass(frozen=True)
class AdaptiveSettings:
    """The adaptive client's knobs (saved in the run manifest)."""

    rule: str = "isr_w"  # "isr_w": the best expected ISR_w; "equation3": the planner's rule
    window: int = 32  # answers in the estimate (moves up, gains)
    recovery_ticks: int = 128  # 8 bars (16 s at 120 BPM) that must agree before a move to a smaller pair
    min_samples: int = 8  # answers needed before the first re-plan
    quantile: float = 0.95  # the RT95 of equation 2
    down_margin_ticks: float = 0.25  # headroom a smaller pair must keep
    dwell_ticks: int = 32  # 2 bars of 4/4 between a switch and an unhurried one
    min_gain: float = 0.005  # isr_w rule: expected ISR_w a switch must gain
    urgent_gain: float = 0.02  # isr_w rule: a gain this large switches without waiting the dwell
    recovery_loss: float = 0.001  # isr_w rule: what a smaller pair may lose in the long view
    max_i: int = 8  # the search space of the re-plan
    max_gl: int = 16
    max_utilisation: float = 0.9  # isr_w rule: the rho a move to more demand may reach (see Load)

    def to_dict(self) -> dict:
        """The manifest form."""
        return asdict(self)


@dataclass
class Switch:
    """One change of pair: a row of ``switches.parquet``."""

    song: str
    tick: int  # the onset at which the new pair took over
    old_interval: int
    old_gen_len: int
    new_interval: int
    new_gen_len: int
    rt95_ms: float  # f95_hat at the new GL when it was chosen
    reason: str  # "infeasible", "none-feasible" (equation3); "gain", "load" (isr_w); "recovered"


class RttEstimator:
    """f95_hat(GL) over the last ``window`` answers, or over the answers to requests
    sent in the last ``horizon_ticks`` ticks (module docstring)."""

    def __init__(self, window: int | None = None, quantile: float = 0.95, horizon_ticks: int | None = None) -> None:
        self.samples: deque[tuple[int, float, float]] = deque(maxlen=window)
        self.sent: deque[int] = deque(maxlen=window)
        self.quantile = quantile
        self.horizon_ticks = horizon_ticks
        self._fit: tuple[float, float] | None = None

    def add(self, gen_len: int, rtt_ms: float, inference_ms: float, send_tick: int = 0) -> None:
        """One answered request: its GL, its RTT, the server's reported time (NaN: the
        client gave up at its deadline, no answer), when it was sent."""
        if math.isfinite(rtt_ms) and gen_len > 0:
            srv = max(0.0, float(inference_ms)) if math.isfinite(inference_ms) else math.nan
            self.samples.append((gen_len, float(rtt_ms), srv))
            self.sent.append(send_tick)
            while self.horizon_ticks is not None and self.sent[0] < send_tick - self.horizon_ticks:
                self.sent.popleft()
                self.samples.popleft()
            self._fit = None

    def __len__(self) -> int:
        return len(self.samples)

    def sent_since(self, tick: int) -> int:
        """How many of the samples were sent at or after ``tick``."""
        return sum(t >= tick for t in self.sent)

    def _params(self) -> tuple[float, float]:
        if self._fit is None:
            gl, rtt, srv = (np.array(c, dtype=float) for c in zip(*self.samples))
            # Given-up requests say nothing of the server's time per tick: counted as 0, a
            # server too slow to answer made GL look free (issue 33).
            answered = np.isfinite(srv)
            per_tick = float(np.median(srv[answered] / gl[answered])) if answered.any() else 0.0
            self._fit = (float(np.quantile(rtt - per_tick * gl, self.quantile)), per_tick)
        return self._fit

    @property
    def per_tick_ms(self) -> float:
        """s_hat: the server's compute per generated tick (0 before any answer)."""
        return self._params()[1]

    def f95_ms(self, gen_len: float) -> float:
        """f95_hat(GL) in ms (needs at least one sample)."""
        base, per_tick = self._params()
        return base + per_tick * float(gen_len)

    def rtt_ms(self, gen_len: int) -> np.ndarray:
        """Every sample's RTT moved to ``gen_len`` (rtt_i - s_hat GL_i + s_hat GL), sorted."""
        _, per_tick = self._params()
        gl, rtt, _ = (np.array(c, dtype=float) for c in zip(*self.samples))
        return np.sort(rtt + per_tick * (gen_len - gl))


def expected_isr_w(on_time: np.ndarray, interval: int, gen_len: int, c: int = STALENESS_C) -> float:
    """The ISR_w a pair would get if each answer's RTT were drawn independently:

    E[ISR_w] = 1/I sum_{j<I} sum_{m>=0, S=j+mI<GL} (C - S)/C F(S + 1) prod_{m'<m} (1 - F(j + m'I + 1))

    where F(x) = P(RTT < x ticks) (``on_time[x - 1]``): tick t, j ticks after the newest
    request tick s0 <= t, plays the frame of request s0 - mI at staleness S = j + mI when
    that answer (sent at the onset of s0 - mI - 1) came before t's onset and no newer
    one did.
    """
    total = 0.0
    for j in range(interval):
        missed = 1.0
        for stale in range(j, gen_len, interval):
            p = on_time[stale]
            total += (c - stale) / c * p * missed
            missed *= 1.0 - p
    return total / interval


class Adapter:
    """Decides at each tick onset whether to change (I, GL) (module docstring).

    Two views of the same answers: ``estimate`` (the last ``window``) decides moves to a
    larger pair and the gains; ``history`` (requests sent in the last ``recovery_ticks``)
    must agree before a move to a smaller one, so a burst that left the short window but
    recurs within the long one does not take the backup away.
    """

    def __init__(self, song: str, tau_ms: float, settings: AdaptiveSettings | None = None) -> None:
        self.song = song
        self.tau_ms = tau_ms
        self.settings = settings or AdaptiveSettings()
        self.estimate = RttEstimator(self.settings.window, self.settings.quantile)
        self.history = RttEstimator(None, self.settings.quantile, horizon_ticks=self.settings.recovery_ticks)
        self.switches: list[Switch] = []
        self.last_switch_tick = -(10**9)
        self._cache: dict = {}  # re-plans, until the next answer

    @property
    def bpm(self) -> float:
        """The tempo the plan is made for: tau = 60000 / (4 BPM)."""
        return 60_000.0 / (TICKS_PER_BEAT * self.tau_ms)

    def add(self, gen_len: int, rtt_ms: float, inference_ms: float, send_tick: int) -> None:
        """One answered request (ok or late) into both views."""
        self.estimate.add(gen_len, rtt_ms, inference_ms, send_tick)
        self.history.add(gen_len, rtt_ms, inference_ms, send_tick)
        self._cache = {}

    def rt95_ms(self, gen_len: int) -> float:
        """f95_hat(GL) over the short window, NaN before the first answer."""
        return self.estimate.f95_ms(gen_len) if len(self.estimate) else math.nan

    def decide(self, tick: int, interval: int, gen_len: int) -> tuple[int, int] | None:
        """The pair to switch to at the onset of ``tick``, or None to keep (I, GL)."""
        if len(self.estimate) < self.settings.min_samples:
            return None
        rule = self._equation3 if self.settings.rule == "equation3" else self._isr_w
        choice = rule(tick, interval, gen_len)
        if choice is None or choice[0] == (interval, gen_len):
            return None
        new, reason = choice
        self.switches.append(Switch(self.song, tick, interval, gen_len, *new, self.estimate.f95_ms(new[1]), reason))
        self.last_switch_tick = tick
        return new

    def _settled(self, tick: int) -> bool:
        return tick - self.last_switch_tick >= self.settings.dwell_ticks

    # -- rule "equation3" ----------------------------------------------------------------
    def plan(self, est: RttEstimator, margin_ticks: float = 0.0) -> tuple[int, int] | None:
        """The planner's pair under ``est`` with ``margin_ticks`` added to RT95_hat."""
        key = ("plan", id(est), margin_ticks)
        if key not in self._cache:
            s, margin_ms = self.settings, margin_ticks * self.tau_ms
            self._cache[key] = plan_bpm(lambda gl: est.f95_ms(gl) + margin_ms, self.bpm, s.max_i, s.max_gl).recommended
        return self._cache[key]

    def _widest(self) -> tuple[int, int]:
        s = self.settings
        k = math.ceil(max(0.0, self.estimate.f95_ms(s.max_gl)) / self.tau_ms)
        return min(max(k, 1), s.max_i), s.max_gl

    def _equation3(self, tick: int, interval: int, gen_len: int):
        rt95 = max(0.0, self.estimate.f95_ms(gen_len)) / self.tau_ms
        if classify(interval, gen_len, rt95) is not Verdict.VALID:  # up at once
            best = self.plan(self.estimate)
            return (best, "infeasible") if best is not None else (self._widest(), "none-feasible")
        if self._settled(tick):  # down only with a margin, after a dwell, when the long view agrees
            new = self.plan(self.history, self.settings.down_margin_ticks)
            if new is not None and new < (interval, gen_len):
                return new, "recovered"
        return None

    # -- rule "isr_w" --------------------------------------------------------------------
    def expected(self, est: RttEstimator, interval: int, gen_len: int) -> float:
        """E[ISR_w] of the pair under ``est``'s RTTs (:func:`expected_isr_w`), with
        F(x) = #(RTT < x ticks) / (n + 1): one imagined answer that never comes, so a
        window that has seen no slow answer still prefers a pair with a backup."""
        ticks = est.rtt_ms(gen_len) / self.tau_ms
        on_time = np.searchsorted(ticks, np.arange(1, gen_len + 1), side="left") / (len(ticks) + 1)
        return expected_isr_w(on_time, interval, gen_len)

    def utilisation(self, interval: int, gen_len: int, from_interval: int) -> float:
        """rho of the pair (``interval``, ``gen_len``) for a session now at
        ``from_interval`` (module docstring, "Load")."""
        rho = self.estimate.per_tick_ms * gen_len / (interval * self.tau_ms)
        return rho * max(1.0, from_interval / interval)

    def allowed(self, interval: int, gen_len: int) -> frozenset[tuple[int, int]]:
        """The pairs the server has room for, seen from the pair in use (module
        docstring, "Load"); none: the fewest requests (I = ``max_i``)."""
        s = self.settings
        now = gen_len / interval
        full = self.utilisation(interval, gen_len, interval) > s.max_utilisation
        fresh = self.estimate.sent_since(self.last_switch_tick) >= s.min_samples

        def room(i: int, gl: int) -> bool:
            fits = self.utilisation(i, gl, interval) <= s.max_utilisation
            if i >= interval and gl / i <= now + 1e-9:  # asks no more, no more often
                return fits or not full
            return fits and (fresh or i >= interval)  # asking more often waits for fresh answers

        pairs = [(i, gl) for gl in range(1, s.max_gl + 1) for i in range(1, min(s.max_i, gl) + 1)]
        return frozenset(p for p in pairs if room(*p)) or frozenset((s.max_i, gl) for gl in range(s.max_i, s.max_gl + 1))

    def choice(self, est: RttEstimator, allowed: frozenset[tuple[int, int]]) -> tuple[tuple[int, int], dict]:
        """The pair the ``isr_w`` rule wants among ``allowed`` under ``est``, and their E[ISR_w]."""
        key = ("choice", id(est), allowed)
        if key not in self._cache:
            scores = {p: self.expected(est, *p) for p in allowed}
            top = max(scores.values())
            # Pairs within min_gain of the best are as good: the smallest I, then GL (the
            # freshest, cheapest), not a long GL whose extra backup buys almost nothing.
            self._cache[key] = min(p for p, v in scores.items() if v >= top - self.settings.min_gain), scores
        return self._cache[key]

    def _isr_w(self, tick: int, interval: int, gen_len: int):
        s = self.settings
        allowed = self.allowed(interval, gen_len)
        best, scores = self.choice(self.estimate, allowed)
        if (interval, gen_len) not in allowed:
            return best, "load"  # at once: the pair in use fills more of the server than it has
        gain = scores[best] - scores[(interval, gen_len)]
        if gain >= s.urgent_gain or (gain >= s.min_gain and self._settled(tick)):
            return best, "gain"
        if self._settled(tick) and best < (interval, gen_len):
            # Fresher or cheaper, and as good in the long view: it loses at most
            # recovery_loss there, where a burst that recurs still counts.
            _, calm = self.choice(self.history, allowed)
            floor = calm[(interval, gen_len)] - s.recovery_loss
            smaller = [p for p, v in calm.items() if p < (interval, gen_len) and v >= floor]
            if smaller:
                return min(smaller), "recovered"
        return None


__all__ = ["AdaptiveSettings", "Adapter", "RttEstimator", "Switch"]
