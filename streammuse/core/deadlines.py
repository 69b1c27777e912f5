"""When an answer can no longer be played: the server's side of "never stall" (issue 13).

A client sends the request for ticks s .. s+GL-1 at the onset of tick s-1 (paper section
III-D, ``client/session.py``), so the last tick the answer covers, s+GL-1, starts GL * tau
after it was sent. An answer that reaches the client after that onset plays nothing. The
replica sees only part of the trip, the time the request has waited since it arrived;
the network and the compute still to come are counted as 0, so a request is given up
only when nothing could save it:

    expired  <=>  waited >= GL * tau,    tau = 60000 / (4 BPM) ms

An expired request is answered ``expired`` at once, without computing; its melody is kept
(the session's next request feeds it), exactly as for a superseded one.

No forecast of the compute time is added: one was tried (the fastest of the last 16
answers' engine times), and after a spell of overload it condemned every later request,
which then never ran to lower the forecast again (``bench/overload.py``, 2026-11-29).
"""

from __future__ import annotations

from streammuse.contract import tau_ms


def answer_deadline_ms(gen_len: int, bpm: float) -> float:
    """GL * tau: from the request's send (the onset of tick s-1) to the onset of the last
    tick its answer covers, s+GL-1; an answer later than that plays nothing. The one
    home of the rule: the replica's expiry, the capacity plan's latency bound and the
    path probe's client timeout all read it."""
    return gen_len * tau_ms(bpm)


def expired(waited_ms: float, gen_len: int, bpm: float) -> bool:
    """True when an answer cannot reach the client before the onset of the last tick it
    covers: ``waited >= GL * tau`` (module docstring)."""
    return waited_ms >= answer_deadline_ms(gen_len, bpm)
