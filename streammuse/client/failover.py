"""The wall-clock client's fail-over rules (issue 13: fail-over within a bar).

A request that fails because its replica is gone, while the server as a whole may still
be up, moves the song to a new session at once (the next request re-sends the context)
instead of backing off as from a dead server. Two signs of a gone replica:

* a 5xx other than 503: the proxy's own answer for a dead replica (503 is the server
  saying it is full: back off);
* no answer by the client's own deadline (the onset of the last tick the request
  covers) *and* no answer to a health probe routed to the session's replica within
  ``PROBE_TIMEOUT_S``: Ray's proxy holds a dead replica's requests for seconds before it
  answers. A replica that answers the probe is alive but slow: back off (moving would
  only add a context rebuild to its load).

A new session is probed the same way before it is used (with consistent-hash affinity a
fresh id may still map to the dead replica until Ray drops it from the ring). Moves are
bounded: a song opens at most ``MOVE_BURST`` new sessions at once, then one per
``MOVE_REFILL_S`` (a token bucket), so a timeout or 5xx storm cannot become a session
storm; without a token, or when no live session can be opened (503, 429, unreachable,
its own short timeout), the failure backs off as before.

A server that cannot be reached at all (connection refused: a whole-server restart)
backs off, while one watcher per song probes ``/healthz`` every ``WATCH_EVERY_S``; when it
answers, the backoff ends at once (``SongClient.on_server_back``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MOVE_CREATE_TIMEOUT_S = 1.0  # a new session must be opened within this long, or the failure backs off
CLOSE_TIMEOUT_S = 0.5  # the session left behind is closed best-effort within this long
PROBE_TIMEOUT_S = 0.5  # a live replica answers /healthz within this long, even when busy
MOVE_BURST = 3  # new sessions a song may open at once
MOVE_REFILL_S = 4.0  # past the burst, one new session per this many seconds
WATCH_EVERY_S = 0.25  # how often an unreachable server's /healthz is probed


def classify(exc: BaseException, timed_out: bool) -> str:
    """What a failed request says: ``"replica"`` (a 5xx other than 503: the proxy's
    answer for a dead replica), ``"deadline"`` (no answer by the client's deadline:
    dead or slow, a probe tells), ``"unreachable"`` (no server answered at all), or
    ``"busy"`` (503: full; other refusals)."""
    status = getattr(exc, "status", None)
    if status is not None:
        return "replica" if status >= 500 and status != 503 else "busy"
    if timed_out or getattr(exc, "timed_out", False):
        return "deadline"
    return "unreachable"


@dataclass
class MoveBudget:
    """A token bucket of session moves: ``burst`` at once, then one per ``refill_s``."""

    burst: int = MOVE_BURST
    refill_s: float = MOVE_REFILL_S
    tokens: float = field(default=-1.0)
    last_s: float | None = None

    def take(self, now_s: float) -> bool:
        """Spend one move at ``now_s`` (seconds, any monotonic clock); False when none is left."""
        if self.last_s is None:
            self.tokens = float(self.burst)
        else:
            self.tokens = min(float(self.burst), self.tokens + (now_s - self.last_s) / self.refill_s)
        self.last_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
