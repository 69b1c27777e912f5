"""How many real-time sessions one replica carries, from its own measured step time, and
the Ray Serve limits that follow from that figure (docs/deploy.md, "Capacity").

A replica is sized for a *plan*: sessions at ``bpm`` that each ask for GL ticks every I
ticks (paper section III: tau = 60000 / (4 BPM) ms, inference_interval I, gen_len GL).
With T(B) the time of one batched request step of B sessions (``engine.infer_batch``,
each session feeding I new melody rows and generating GL ticks), the replica carries

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
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from streammuse.contract import tau_ms
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
        return self.gen_len * tau_ms(self.bpm) - nl95


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


def ray_limits(sessions: int) -> RayLimits:
    """From B* (N): superseding keeps at most two requests of a session in a replica (one
    in the running batch, one waiting), so ``max_ongoing_requests = 2 N + 2`` (2 for
    creates, deletes, probes); past it the proxy queues at most one request per session
    (``max_queued_requests = N``; beyond, Ray answers 503 at once instead of holding
    requests nothing can supersede); autoscaling adds a replica when the replicas average
    more than rho N requests in flight (a session has about one in flight at a time)."""
    return RayLimits(2 * sessions + 2, sessions, float(max(1, math.floor(UTILISATION * sessions))))


def _melody(ticks: int) -> np.ndarray:
    from streammuse.contract import wire_to_frames

    return wire_to_frames([[[60 + (t * 5) % 12, 1]] for t in range(ticks)])


def measure_step_ms(engine, plan: Plan, sizes: list[int], history: int = 64, repeats: int = 3) -> dict[int, float]:
    """T(B) in ms (median of ``repeats`` after one warm-up) for each B in ``sizes``, in
    order, on sessions warmed with ``history`` ticks; stops after the first B whose step
    exceeds the plan's budget (larger batches only take longer)."""
    import torch

    from streammuse.model.sampling import Sampling

    melody, table = _melody(history + (repeats + 1) * plan.interval), {}
    for b in sizes:
        states = [engine.new_session(Sampling(seed=k)) for k in range(b)]
        engine.infer_batch([(st, history, melody[:history], 1) for st in states])
        times = []
        for r in range(repeats + 1):
            s = history + (r + 1) * plan.interval
            started = time.perf_counter()
            engine.infer_batch([(st, s, melody[s - plan.interval:s], plan.gen_len) for st in states])
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            times.append((time.perf_counter() - started) * 1000)
        for st in states:
            engine.release(st)
        table[b] = float(np.median(times[1:]))
        if table[b] > plan.budget_ms:
            break
    return table


def ladder(max_batch_size: int) -> list[int]:
    """Batch sizes to measure: 1, 2, 4, ... and ``max_batch_size``."""
    sizes = [1 << k for k in range(max_batch_size.bit_length()) if 1 << k < max_batch_size]
    return sizes + [max_batch_size]
