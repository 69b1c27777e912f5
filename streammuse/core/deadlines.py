"""When an answer can no longer be played: the server's side of "never stall" (issue 13).

A client sends the request for ticks s .. s+GL-1 at the onset of tick s-1 (paper section
III-D, ``client/session.py``), so the last tick the answer covers, s+GL-1, starts GL * tau
after it was sent. An answer that reaches the client after that onset plays nothing. The
replica sees only part of the trip: the time the request has waited since it arrived,
and, as a forecast of its own compute, the fastest engine time among its last
``RECENT_ANSWERS`` answers (the least a request takes at the present load: one slow
rebuild, a cold start or a hiccup of the host does not condemn the next requests; 0
until the replica has answered that many). Network time is
unknown to it and counted as 0, so a request is given up only when even an instant
network could not save it:

    expired  <=>  waited + compute_min >= GL * tau,    tau = 60000 / (4 BPM) ms

An expired request is answered ``expired`` at once, without computing; its melody is kept
(the session's next request feeds it), exactly as for a superseded one.
"""

from __future__ import annotations

from streammuse.contract import tau_ms

RECENT_ANSWERS = 16  # the forecast is the fastest of this many latest answers


def compute_floor_ms(recent_ms) -> float:
    """compute_min: the fastest of the last ``RECENT_ANSWERS`` engine times (ms), 0 while
    fewer have been seen."""
    return min(recent_ms) if len(recent_ms) >= RECENT_ANSWERS else 0.0


def expired(waited_ms: float, compute_min_ms: float, gen_len: int, bpm: float) -> bool:
    """True when an answer computed now cannot reach the client before the onset of the
    last tick it covers: ``waited + compute_min >= GL * tau`` (module docstring)."""
    return waited_ms + compute_min_ms >= gen_len * tau_ms(bpm)
