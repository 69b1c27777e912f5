"""Could this machine keep real time? A wall-clock run's own evidence, in its manifest.

A low ISR from a machine too busy to tick on time is the machine's, not the model's.
The wall clock records each tick's lateness (how long after its ideal onset the client
acted) and the load average; a run whose 99th-percentile lateness passes a fraction of
a tick, or that ran with more runnable processes than cores, is marked as not having
kept real time, and the summary says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

# A tick onset more than a tenth of a tick late moves the arrival rule's boundary by
# that much: answers that should have been in time are judged late.
MAX_LATENESS_FRACTION = 0.1


@dataclass
class RealtimeHealth:
    """What the wall clock saw of this machine during a run."""

    tick_lateness_p99_ms: float
    tick_lateness_max_ms: float
    load_average_1m: float
    cpus: int
    kept_real_time: bool
    reason: str

    def to_dict(self) -> dict:
        """The manifest's ``realtime_health`` object."""
        return asdict(self)


def load_average() -> float:
    """The 1-minute load average (runnable processes), NaN where the OS has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def assess(lateness_ms: list[float], tau_ms: float, load_1m: float, cpus: int | None = None) -> RealtimeHealth:
    """Judge a run from its ticks' lateness and the load average seen during it."""
    cpus = cpus or os.cpu_count() or 1
    p99 = float(np.percentile(lateness_ms, 99)) if lateness_ms else float("nan")
    worst = float(np.max(lateness_ms)) if lateness_ms else float("nan")
    reasons = []
    if p99 > MAX_LATENESS_FRACTION * tau_ms:
        reasons.append(f"tick onsets were late by up to {p99:.1f} ms (p99), over {MAX_LATENESS_FRACTION:.0%} of a tick")
    if load_1m > cpus:
        reasons.append(f"load average {load_1m:.1f} on {cpus} CPUs, this run's own server and clients included")
    return RealtimeHealth(p99, worst, load_1m, cpus, not reasons, "; ".join(reasons) or "ok")


def server_limit(inference_ms, queue_ms, interval: int, tau_ms: float) -> str | None:
    """When the server itself was too slow for the pair: its median time per request
    (inference + queue, as each answer reports) past I x tau, the time between a
    session's requests, so requests pile up whatever else the machine does. None if not."""
    server = np.asarray(inference_ms, dtype=float) + np.asarray(queue_ms, dtype=float)
    server = server[np.isfinite(server)]
    budget = interval * tau_ms
    if not len(server) or float(np.median(server)) <= budget:
        return None
    return (f"the server took a median {float(np.median(server)):.0f} ms per request (inference + queue) against "
            f"the pair's I x tau = {budget:.0f} ms: its compute, not other work, was the limit; `streammuse doctor` "
            "says what this machine carries; try a smaller --concurrency, or the planner's pair for this server "
            "(`streammuse profile --out p.json`, then `--profile p.json --auto`)")
