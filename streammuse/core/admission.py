"""Who may open a session on a replica, and which closed ids it remembers.

A *client* is the key the HTTP layer gives a request: the remote address (the bearer
token is one per deployment, not per user, so it cannot tell users apart); None when
there is no such key (the in-process transport, a simulation), which no per-client
bound applies to. Bounds (docs/deploy.md, "Admission"):

* the replica: past ``max_sessions`` live sessions a new one is refused with 503
  ``overloaded``, never made by evicting a live one;
* each client: past its share of live sessions on this replica a new one is refused
  with 429 ``too_many_sessions`` (the share is half of ``max_sessions``, rounded up,
  unless set), so one client cannot fill the replica and lock others out;
* closed ids: each client's are remembered in its own bounded list, so one client's
  deletes cannot push out the tombstones of others' sessions.

What a replica refused is also what the autoscaler needs to see (serving/autoscaling.py):
:class:`RefusedSessions` remembers the sessions refused for room in the last seconds,
so a replica reports its *demand* (live sessions plus those still asking), not only the
requests it runs.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Iterator

from streammuse.contract import ApiError

MAX_TOMBSTONES = 10_000  # closed ids remembered in all
MAX_TOMBSTONES_PER_CLIENT = 1_000  # of which one client's


DEFAULT_CLIENT_FLOOR = 4  # a replay's default --concurrency: one user's songs at once


def per_client_limit(max_sessions: int, max_sessions_per_client: int | None) -> int | None:
    """A client's share of one replica's sessions: the set value (0: no per-client
    bound, None returned), else ceil(max_sessions / 2), but at least
    min(max_sessions, 4) so one musician's default replay is never refused by its own
    share on a replica that measured a small capacity."""
    if max_sessions_per_client is None:
        return max(1, math.ceil(max_sessions / 2), min(max_sessions, DEFAULT_CLIENT_FLOOR))
    return max_sessions_per_client or None


def admit(clients: Iterable[str | None], client: str | None, max_sessions: int, per_client: int | None,
          on_full: Callable[[], None] | None = None) -> None:
    """Refuse a new session (``clients``: the client key of each live session here);
    ``on_full`` is called before a 503 (the refusal is demand: :class:`RefusedSessions`).

    Raises:
        ApiError: 503 ``overloaded`` when the replica is full; 429 ``too_many_sessions``
            when ``client`` already holds its share.
    """
    clients = list(clients)
    if len(clients) >= max_sessions:
        if on_full is not None:
            on_full()
        raise ApiError(503, "overloaded", f"this replica holds {len(clients)} live sessions, its limit; retry later")
    if client is not None and per_client is not None:
        held = sum(1 for c in clients if c == client)
        if held >= per_client:
            raise ApiError(429, "too_many_sessions",
                           f"this client holds {held} live sessions on this replica, its limit; close one or retry later")


DEMAND_WINDOW_S = 10.0  # a refused session counts as demand this long (its client retries every 2 s)


def idle_first(sessions: dict, now_s: float, idle_s: float, busy: set[int], count: int) -> list[str]:
    """Up to ``count`` ids of sessions that have not asked for ``idle_s`` seconds, least
    recently used first (``sessions`` is kept in that order), none with a request in the
    engine (``busy``: their ``id()``s). A playing song asks every I ticks; a session the
    router moved to another replica, or one that ended without closing, never asks here
    again, so it gives its room to a new session first."""
    idle = [sid for sid, sess in sessions.items() if now_s - sess.last_access_s > idle_s and id(sess) not in busy]
    return idle[: max(0, count)]


class RefusedSessions:
    """Session ids refused with 503 ``overloaded`` in the last ``window_s`` seconds (their
    clients retry after Retry-After), bounded: each id once, the oldest dropped first."""

    def __init__(self, window_s: float = DEMAND_WINDOW_S, limit: int = MAX_TOMBSTONES) -> None:
        self.window_s, self.limit = window_s, limit
        self._at: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, session_id: str, now_s: float) -> None:
        """``session_id`` was refused at ``now_s``."""
        self._at.pop(session_id, None)
        self._at[session_id] = now_s
        while len(self._at) > self.limit:
            self._at.popitem(last=False)

    def discard(self, session_id: str) -> None:
        """``session_id`` was admitted after all: it no longer waits."""
        self._at.pop(session_id, None)

    def waiting(self, now_s: float, live: Iterable[str] = ()) -> int:
        """How many refused sessions are still asking (refused within the window and not
        admitted since: not in ``live``)."""
        while self._at and now_s - next(iter(self._at.values())) > self.window_s:
            self._at.popitem(last=False)
        live = set(live)
        return sum(1 for sid in self._at if sid not in live)


class ClosedIds:
    """Closed session ids (tombstones), oldest dropped first: at most ``per_client`` of
    one client's and ``total`` in all."""

    def __init__(self, total: int = MAX_TOMBSTONES, per_client: int = MAX_TOMBSTONES_PER_CLIENT) -> None:
        self.total, self.per_client = total, per_client
        self._all: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._by_client: dict[str | None, collections.OrderedDict[str, None]] = {}

    def add(self, session_id: str, client: str | None) -> None:
        """Remember ``session_id`` as closed by ``client``."""
        self._drop(session_id)
        self._all[session_id] = client
        mine = self._by_client.setdefault(client, collections.OrderedDict())
        mine[session_id] = None
        if len(mine) > self.per_client:
            self._drop(next(iter(mine)))
        while len(self._all) > self.total:
            self._drop(next(iter(self._all)))

    def _drop(self, session_id: str) -> None:
        if session_id not in self._all:
            return
        client = self._all.pop(session_id)
        mine = self._by_client[client]
        del mine[session_id]
        if not mine:
            del self._by_client[client]

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)
