"""Latency that moves during a song: the ``drift`` of a latency profile (beyond the paper).

The paper's RTT model (section IV-C, ``streammuse.rtt``) is stationary: one network
model and one server model for the whole run. A profile may add ``drift``, a list of
events, each changing the latency of requests *sent* while it is active:

* ``network_add_ms``: extra network latency NL (split like NL: half out, half back);
* ``server_scale``: the server's time multiplied by k >= 1. The client cannot slow a
  real server, so both clocks inject it the same way: the answer is held back by
  (k - 1) x the inference time the server reported for it. The server itself is not
  slowed, so requests queued behind it are not delayed either.

An event starts at ``start_s`` (seconds from the onset of the song's tick 0, the clock
both the wall and the sim clock keep), lasts ``duration_s`` (None: to the end of the
song), repeats every ``every_s`` (None: once), and rises linearly over its first
``ramp_s`` seconds (0: a step). Events add their network terms and multiply their
server factors. Shipped examples: ``drift-step``, ``drift-ramp``, ``drift-bursts``,
``drift-contention`` (``streammuse/client/profiles``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriftEvent:
    """One change of latency over time (see the module docstring)."""

    start_s: float
    duration_s: float | None = None
    every_s: float | None = None
    ramp_s: float = 0.0
    network_add_ms: float = 0.0
    server_scale: float = 1.0

    def strength(self, t_s: float) -> float:
        """How much of the event applies at song time ``t_s``: 0 (inactive) .. 1 (full)."""
        since = t_s - self.start_s
        if since < 0:
            return 0.0
        if self.every_s is not None:
            since %= self.every_s
        if self.duration_s is not None and since >= self.duration_s:
            return 0.0
        return 1.0 if self.ramp_s <= 0 else min(1.0, since / self.ramp_s)


@dataclass(frozen=True)
class DriftState:
    """The latency change in force at one moment."""

    network_add_ms: float = 0.0
    server_scale: float = 1.0


def drift_at(events: tuple[DriftEvent, ...], t_s: float) -> DriftState:
    """The combined change at song time ``t_s``: network terms add, server factors multiply
    (each scaled by its event's strength: 1 + (k - 1) x strength)."""
    add, scale = 0.0, 1.0
    for e in events:
        w = e.strength(t_s)
        add += w * e.network_add_ms
        scale *= 1.0 + (e.server_scale - 1.0) * w
    return DriftState(add, scale)
