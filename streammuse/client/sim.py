"""The sim clock: songs replayed on a virtual timeline against one virtual replica.

What is simulated is *time*, never the rules: requests go to the session core through
a front (``CoreFront``: the core's virtual driver; ``AsgiFront``: the real HTTP app in
process over that driver), so batching window, queueing, superseding, rebuilds and
batching across songs are the server's own. Events, in virtual ms:

* a song starts (at 0 for the first ``concurrency`` songs, then when one ends, as the
  wall clock's pool does); its session is opened, tick -1 (the count-in) is at once and
  tick t's onset ``tau`` later per tick;
* at a tick onset the client plays, releases M[t] and maybe sends a request;
* a request reaches the replica ``NL/2`` after it was sent, and waits in the core;
* the replica starts a batch when the core says (``next_batch_at``) and ends it
  ``server_ms(batch)`` later: the batch's measured compute time, or a draw from a
  profile's measured server model (see ``experiment``);
* an answer reaches the client ``NL/2`` (+ the profile's server jitter) after its batch
  ended;
* a song ends at the end of its last tick, once its requests are answered (at most
  ``DRAIN_S`` later).

At equal times a tick onset comes first, so an answer arriving exactly at a tick's
onset is late for that tick (the strict arrival rule). Randomness comes from seeded
generators drawn in event order, so a modelled server time and a fixed seed give the
same event log on every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from streammuse.client.latency import DelayDraw, LatencyInjector
from streammuse.client.session import RequestRecord, SongClient
from streammuse.client.transports import ServerUnavailable, UnknownSession
from streammuse.contract import CreateSessionRequest, InferRequest

DRAIN_S = 2.0  # as the wall clock: answers in flight after the last tick are awaited this long
_ONSET, _ARRIVE, _REPLICA, _ANSWER, _START, _END = 0, 1, 2, 3, 4, 5  # order of events at equal times


@dataclass
class SimSong:
    """One song of a simulation: its client, its injected delays, its session settings."""

    client: SongClient
    injector: LatencyInjector
    session_request: CreateSessionRequest
    origin_ms: float = 0.0  # virtual time of tick 0's onset
    session_id: str = ""
    front: object = None  # how its requests reach its replica
    driver: object = None  # its replica's virtual driver
    in_flight: int = 0
    ended: bool = False  # its last tick has passed
    finished: bool = False  # its session is closed and its logs are final


@dataclass
class _Sent:
    song: SimSong
    rec: RequestRecord
    req: InferRequest
    draw: DelayDraw
    task: asyncio.Task | None = None
    job: object = None
    session_id: str = ""  # the session it was sent on


@dataclass
class _Timeline:
    events: list = field(default_factory=list)
    seq: itertools.count = field(default_factory=itertools.count)

    def push(self, time_ms: float, kind: int, payload=None) -> None:
        heapq.heappush(self.events, (time_ms, kind, next(self.seq), payload))


async def simulate(songs: list[SimSong], server, concurrency: int = 1, on_done=None) -> None:
    """Play ``songs`` (at most ``concurrency`` at once) on one virtual timeline;
    ``await on_done(song)`` after each song ends.

    ``server()`` gives a starting song its ``(front, driver)``: the same pair every time
    for one shared replica, a new pair per song for one replica per song (the paper's
    single-user setting, each song's events as if it played alone).
    """
    sim = _Sim(server, on_done, list(songs))
    for _ in range(min(concurrency, len(songs))):
        sim.timeline.push(0.0, _START, sim.waiting.pop(0))
    await sim.run()


def shared(front, driver):
    """A ``server`` for :func:`simulate`: every song on one replica."""
    return lambda: (front, driver)


def run_simulation(songs: list[SimSong], server, concurrency: int = 1, on_done=None) -> None:
    """:func:`simulate` on a fresh event loop (the loop only runs coroutines: no real time passes)."""
    asyncio.run(simulate(songs, server, concurrency, on_done))


class _Sim:
    def __init__(self, server, on_done, waiting: list[SimSong]) -> None:
        self.server, self.on_done = server, on_done
        self.drivers: dict[int, object] = {}  # the replicas in use, by id
        self.users: dict[int, int] = {}  # songs playing on each
        self.waiting = waiting  # songs not started yet
        self.timeline = _Timeline()
        self.at_replica: list[_Sent] = []

    async def run(self) -> None:
        events = self.timeline.events
        while True:
            due = [(at, k, d) for k, d in self.drivers.items() if (at := d.next_event_s()) is not None]
            replica_s, _, driver = min(due, key=lambda x: x[:2]) if due else (None, 0, None)
            if not events and replica_s is None:
                break
            if replica_s is not None and (not events or (replica_s * 1000.0, _REPLICA) < events[0][:2]):
                await self._replica(replica_s, driver)
                continue
            now, kind, _, payload = heapq.heappop(events)
            for d in self.drivers.values():
                d.virtual_s = now / 1000.0
            if kind == _ONSET:
                self._onset(now, *payload)
            elif kind == _ARRIVE:
                await self._arrive(now, payload)
            elif kind == _ANSWER:
                await self._answer(now, *payload)
            elif kind == _START:
                await self._start(now, payload)
            elif kind == _END:
                await self._end(now, payload)

    async def _start(self, now: float, song: SimSong) -> None:
        song.front, song.driver = self.server()
        song.driver.virtual_s = now / 1000.0
        self.drivers[id(song.driver)] = song.driver
        self.users[id(song.driver)] = self.users.get(id(song.driver), 0) + 1
        song.session_id = (await song.front.create_session(song.session_request)).session_id
        song.origin_ms = now + song.client.tau_ms
        for t in range(-1, song.client.n_ticks):
            self.timeline.push(song.origin_ms + t * song.client.tau_ms, _ONSET, (song, t))
        self.timeline.push(song.origin_ms + song.client.n_ticks * song.client.tau_ms, _END, song)

    def _onset(self, now: float, song: SimSong, tick: int) -> None:
        for rec, req in song.client.on_tick(tick, now - song.origin_ms):
            sent = _Sent(song, rec, req, song.injector.draw(rec.send_ms))
            song.in_flight += 1
            self.timeline.push(now + sent.draw.request_ms, _ARRIVE, sent)

    async def _arrive(self, now: float, sent: _Sent) -> None:
        core = sent.song.driver.core
        before = core.submissions
        sent.session_id = sent.song.session_id
        sent.task = asyncio.ensure_future(sent.song.front.infer(sent.session_id, sent.req))
        while core.submissions == before and not sent.task.done():
            await asyncio.sleep(0)  # let the front's request reach the core
        if core.submissions != before:
            sent.job = core.pending[-1]
            self.at_replica.append(sent)
        else:
            self._reply(now, sent)

    async def _replica(self, now_s: float, driver) -> None:
        # The driver's own time, not a ms round trip: it must see its batch as due.
        driver.advance(now_s)
        now = now_s * 1000.0
        answered = [s for s in self.at_replica if s.job.done]
        self.at_replica = [s for s in self.at_replica if not s.job.done]
        for sent in answered:
            await asyncio.wait({sent.task})
            self._reply(now, sent)

    def _reply(self, now: float, sent: _Sent) -> None:
        answered = sent.task.done() and not sent.task.cancelled() and sent.task.exception() is None
        delay = sent.draw.response_delay_ms(sent.task.result().inference_ms if answered else 0.0)
        self.timeline.push(now + delay, _ANSWER, (sent, sent.task))

    async def _answer(self, now: float, sent: _Sent, task: asyncio.Task) -> None:
        song, client = sent.song, sent.song.client
        song.in_flight -= 1
        if song.finished:
            return  # the song gave up on it (DRAIN_S), as the wall clock cancels it
        local_ms = now - song.origin_ms
        error = task.exception()
        if error is None:
            client.on_reply(sent.rec, task.result(), local_ms, sent.draw.network_ms)
        elif isinstance(error, UnknownSession):
            client.on_error(sent.rec, local_ms, unknown_session=True)
            if sent.session_id == song.session_id:  # one new session per lost one, as the wall clock
                try:
                    song.session_id = (await song.front.create_session(song.session_request)).session_id
                except ServerUnavailable:
                    pass  # the next request fails too and backs off; it re-sends the context
        elif isinstance(error, ServerUnavailable):
            client.on_error(sent.rec, local_ms, unknown_session=False)
        else:
            raise error  # a 4xx on our own client's request is a bug
        if song.ended and song.in_flight == 0:
            await self._finish(now, song)

    async def _end(self, now: float, song: SimSong) -> None:
        if not song.ended:
            song.ended = True
            if song.in_flight:
                self.timeline.push(now + DRAIN_S * 1000.0, _END, song)
                return
        await self._finish(now, song)

    async def _finish(self, now: float, song: SimSong) -> None:
        if song.finished:
            return
        song.finished = True
        song.client.finish_pending()
        self.users[id(song.driver)] -= 1
        if not self.users[id(song.driver)] and song.driver.next_event_s() is None:
            del self.drivers[id(song.driver)], self.users[id(song.driver)]  # a song's own replica
        try:
            await song.front.close_session(song.session_id)
        except (ServerUnavailable, UnknownSession):
            pass  # a session we cannot close expires on its TTL
        if self.on_done is not None:
            await self.on_done(song)
        if self.waiting:
            self.timeline.push(now, _START, self.waiting.pop(0))
