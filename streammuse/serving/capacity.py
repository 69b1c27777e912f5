"""How many real-time sessions one replica carries, from its own measured step time, and
the Ray Serve limits that follow from that figure (docs/deploy.md, "Capacity"). Pure arithmetic; T(B) is measured by
:mod:`streammuse.serving.capacity_probe`.

A replica is sized for a *plan*: sessions at ``bpm`` that each ask for GL ticks every I
ticks (paper section III: tau = 60000 / (4 BPM) ms, inference_interval I, gen_len GL).
With T(B) the time of one batched request step of B sessions (each session sending I new
melody rows and asking for GL ticks at once, through the replica's own app: parsing, the
session core and batcher, the engine, the answer), the replica carries

    B* = max { B <= max_batch_size :  T(B) <= rho * I * tau          (throughput)
                                   and 2 T(B) + NL95 <= GL * tau }  (latency)

* throughput: every session asks once per I * tau, and one batch serves all of them, so
  a batch must end within I * tau; rho (0.8) leaves headroom for jitter;
* latency: a request that just missed a batch waits for it and then runs in the next
  one (2 T), and must still reach the client (NL95, the 95th percentile of the network
  model of ``streammuse.rtt``; 0 on a LAN or the Local setting) before the last of the
  GL ticks it covers is due.

T(B) is :class:`~streammuse.rtt.ServerModel`'s batched form ``f(GL) (1 + batch_slope
(B - 1))``, fitted by least squares to the measured table (so B* may fall between two
measured sizes), and no measured size up to B* may break either bound. A replica that
cannot carry even one session in real time still admits one (B* = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from streammuse.contract import tau_ms
from streammuse.core.deadlines import answer_deadline_ms
from streammuse.rtt import NetworkModel, ServerModel

UTILISATION = 0.8  # rho: the share of each I * tau a batch may fill


@dataclass(frozen=True)
class Plan:
    """The load a replica is sized for (``serve --plan-bpm/--plan-interval/--plan-gen-len``)."""

    bpm: float = 120.0
    interval: int = 1  # I
    gen_len: int = 3  # GL
    utilisation: float = UTILISATION  # rho
    network: NetworkModel | None = None  # None: NL = 0 (LAN, Local setting)

    @property
    def budget_ms(self) -> float:
        """rho * I * tau: the longest a batch may take."""
        return self.utilisation * self.interval * tau_ms(self.bpm)

    @property
    def deadline_ms(self) -> float:
        """GL * tau - NL95: the longest a request may take from arrival to its answer."""
        nl95 = self.network.quantile_ms(0.95) if self.network is not None else 0.0
        return answer_deadline_ms(self.gen_len, self.bpm) - nl95


def fit_server_model(step_ms: dict[int, float], gen_len: int) -> ServerModel:
    """The batched :class:`ServerModel` through a table {B: T(B) ms}: T(B) = c (1 + slope
    (B - 1)), least squares (one size: slope 0); ``a = b = 0``, so ``c`` is T(1) at this GL."""
    sizes = np.array(sorted(step_ms), dtype=float)
    times = np.array([step_ms[int(b)] for b in sizes])
    if len(sizes) == 1:
        return ServerModel(0.0, 0.0, float(times[0]))
    slope, intercept = np.polyfit(sizes, times, 1)
    t1 = max(float(intercept + slope), 1e-6)
    return ServerModel(0.0, 0.0, t1, batch_slope=max(0.0, float(slope)) / t1)


def sessions_for(step_ms: dict[int, float], plan: Plan, max_batch_size: int) -> int:
    """B* (module docstring) from a measured table {B: T(B) ms}."""

    def fits(t: float) -> bool:
        return t <= plan.budget_ms and 2 * t <= plan.deadline_ms

    model = fit_server_model(step_ms, plan.gen_len)
    best = 1
    for b in range(1, max_batch_size + 1):
        if not fits(model.mean_ms(plan.gen_len, b)) or any(not fits(t) for s, t in step_ms.items() if s <= b):
            break
        best = b
    return best


class RayLimits(NamedTuple):
    """Ray Serve's per-replica limits for a replica that carries ``sessions`` sessions."""

    max_ongoing_requests: int
    max_queued_requests: int
    target_ongoing_requests: float


# Requests a replica answers without its engine (creates, refusals, deletes, probes) that
# may be in it at once: a burst of new musicians must reach the replica and get its 503
# "overloaded" (with Retry-After), not make Ray's proxy refuse everyone's requests alike,
# the admitted sessions' too (measured: with room for 2, the one admitted session of 16
# offered got 1 answer in 160 requests, 2026-11-29 18:50 UTC).
ROOM_WITHOUT_ENGINE = 32
# Requests the proxy may hold for a replica at once. Ray counts a request as queued while
# its replica is being chosen, not only while every replica is full, so a burst of cheap
# calls fills it within milliseconds: with the old N (1 on a small CPU replica), 8 of 16
# creates sent together got Ray's plain-text "Request dropped due to backpressure"
# (issue 31). Admission bounds what waits on the engine (2 N requests); the rest are
# answered without it, within milliseconds, so a queue this deep drains as fast as it fills.
QUEUE_FOR_BURSTS = 512


def ray_limits(sessions: int) -> RayLimits:
    """From B* (N): superseding keeps at most two requests of a session in a replica (one
    in the running batch, one waiting), so ``max_ongoing_requests = 2 N +
    ROOM_WITHOUT_ENGINE``; the proxy holds ``max_queued_requests = 2 N + QUEUE_FOR_BURSTS``
    more (a burst of creates, deletes and probes is answered by the replica, with a code,
    not refused by the proxy in plain text); autoscaling adds a replica when the replicas
    average more than rho N requests in flight (a session has about one in flight at a time)."""
    return RayLimits(2 * sessions + ROOM_WITHOUT_ENGINE, 2 * sessions + QUEUE_FOR_BURSTS,
                     float(max(1, math.floor(UTILISATION * sessions))))


def ladder(max_batch_size: int) -> list[int]:
    """Batch sizes to measure: 1, 2, 4, ... and ``max_batch_size``."""
    sizes = [1 << k for k in range(max_batch_size.bit_length()) if 1 << k < max_batch_size]
    return sizes + [max_batch_size]
