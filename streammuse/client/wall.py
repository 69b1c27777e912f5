"""The wall-clock replay: real time, real sleeps, a real server (``--clock wall``).

One asyncio loop runs every song playing at once. Per song, the clock role
(``clock.TickClock``) calls the client at each onset; each request it returns is sent
by its own task (so requests may overlap in flight; the server supersedes older ones):
sleep NL/2, call the blocking transport in a worker thread, sleep NL/2 plus the server
jitter, hand the answer to the client. Transport failures become ``failed`` requests
with backoff; an unknown session opens a new one and the next request re-sends the
context (melody so far, accompaniment as played). A failed replica (a 5xx other than
503, or no answer by the request's own deadline) moves the song to a new session at
once, within a bounded budget (``client/failover.py``).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from streammuse.client.clock import TickClock
from streammuse.client.failover import (
    CLOSE_TIMEOUT_S,
    MOVE_CREATE_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    WATCH_EVERY_S,
    MoveBudget,
    classify,
)
from streammuse.client.latency import LatencyInjector
from streammuse.client.session import RequestRecord, SongClient
from streammuse.contract import CreateSessionRequest, InferRequest

DRAIN_S = 2.0  # after the last tick, how long answers still in flight are awaited
MIN_DEADLINE_S = 0.05  # a request is given at least this long, even when already late
START_RETRY_S = 10.0  # how long a song waits for an unreachable server before failing alone


class WallSong:
    """One song on the wall clock: its client, clock, session and in-flight sends."""

    def __init__(self, client: SongClient, transport, injector: LatencyInjector,
                 session_request: CreateSessionRequest, bpm: float, executor: ThreadPoolExecutor) -> None:
        self.client = client
        self.transport = transport
        self.injector = injector
        self.session_request = session_request
        self.clock = TickClock(bpm)
        self.executor = executor
        self.session_id: str | None = None
        self.start_error: str | None = None  # set when the song could not start at all
        self.tasks: set[asyncio.Task] = set()
        self.moves = MoveBudget()  # new sessions after failed replicas (client/failover.py)
        self.watcher: asyncio.Task | None = None  # probes an unreachable server's /healthz
        self.move_lock = asyncio.Lock()

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def run(self) -> None:
        """Play the whole song, then close its session."""
        self.session_id = await self._open_with_retry()
        if self.session_id is None:
            self.start_error = "server unreachable when the song started"
            return  # this song alone fails; the others play on, --resume plays it later
        async for tick in self.clock.ticks(self.client.n_ticks):
            for rec, req in self.client.on_tick(tick, self.clock.now_ms()):
                task = asyncio.create_task(self._send(rec, req))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=DRAIN_S)
        for task in list(self.tasks):
            task.cancel()
        self.client.finish_pending()
        try:
            await self._call(self.transport.close_session, self.session_id)
        except Exception:  # noqa: BLE001 - a session we cannot close expires on its TTL
            pass

    async def _send(self, rec: RequestRecord, req: InferRequest) -> None:
        from streammuse.client.transports import ServerUnavailable, UnknownSession

        loop = asyncio.get_running_loop()
        draw = self.injector.draw(rec.send_ms)
        await asyncio.sleep(draw.request_ms / 1000.0)
        # The client's own deadline: past the onset of the last tick this request covers
        # its answer is of no use, so a dead or swamped server is detected in GL ticks,
        # not after a 30 s socket timeout, and the thread is free again.
        deadline_s = max(self.clock.onset_s(req.request_tick + req.gen_len - 1) - loop.time(), MIN_DEADLINE_S)
        sent_on = self.session_id
        called_s = loop.time()
        try:
            response = await self._call(self.transport.infer, sent_on, req, deadline_s)
        except UnknownSession:
            if sent_on != self.session_id:  # old news: the song already left that session
                self.client.on_lost(rec, self.clock.now_ms())
                return
            # the next request re-sends the context: on a new session (one per lost one,
            # however many 404s come back), or on the same id if none could be opened
            self.client.on_error(rec, self.clock.now_ms(), unknown_session=True)
            await self._move(sent_on)
            return
        except (ServerUnavailable, OSError, TimeoutError) as exc:
            timed_out = loop.time() - called_s >= deadline_s
            if sent_on != self.session_id:  # old news: the song already moved (or backs off there)
                self.client.on_lost(rec, self.clock.now_ms())
                return
            kind = classify(exc, timed_out)
            # A failed replica (a 5xx other than 503, or no answer by the deadline from a
            # replica that does not answer a probe either: the proxy holds a dead
            # replica's requests): open a session elsewhere and re-send the context at
            # once, rather than back off as from a dead server.
            if kind == "replica" or (kind == "deadline" and not await self._alive(sent_on)):
                moved = await self._move(sent_on)
                if moved is None:
                    self.client.on_lost(rec, self.clock.now_ms())
                    return
                if moved:
                    self.client.on_error(rec, self.clock.now_ms(), unknown_session=True)
                    return
            if kind == "busy" and getattr(exc, "status", None) == 503 and not self._admitted():
                # Refused for room before the song was ever admitted: the router places a
                # session by its id, so the same id would meet the same full replica again
                # after the backoff (even once a scale-out added one with room). Ask again
                # under a new id (bounded by the move budget), still after the backoff.
                await self._move(sent_on)
            self.client.on_error(rec, self.clock.now_ms(), unknown_session=False, timed_out=timed_out)
            if kind == "unreachable":
                self._watch()
            return
        await asyncio.sleep(draw.response_delay_ms(response.inference_ms) / 1000.0)
        self.client.on_reply(rec, response, self.clock.now_ms(), draw.network_ms)

    async def _open_with_retry(self) -> str | None:
        """A new session, retried with backoff for up to ``START_RETRY_S``; None if the
        server stays unreachable."""
        from streammuse.client.transports import ServerUnavailable

        loop = asyncio.get_running_loop()
        give_up, wait_s = loop.time() + START_RETRY_S, 0.25
        while True:
            try:
                return (await self._call(self.transport.create_session, self.session_request)).session_id
            except ServerUnavailable:
                if loop.time() + wait_s > give_up:
                    return None
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, 2.0)

    def _admitted(self) -> bool:
        """True once any request of the song was answered (the server took its session)."""
        return any(r.status in ("ok", "late", "superseded", "expired") for r in self.client.requests)

    async def _alive(self, session_id: str | None) -> bool:
        """True when the session's replica answers a health probe within PROBE_TIMEOUT_S
        (a transport that cannot probe: False, a timeout is taken as a dead replica)."""
        probe = getattr(self.transport, "probe", None)
        if probe is None:
            return False
        return await self._call(probe, session_id, PROBE_TIMEOUT_S)

    async def _move(self, lost: str | None) -> bool | None:
        """After ``lost`` failed (its replica is gone, or the server forgot it): True when
        this call moved the song to a new session, False when none could be opened (the
        song stays, backs off, re-sends the context), None when another request already
        moved it (this failure is old news). One move at a time per song."""
        async with self.move_lock:
            if lost != self.session_id:
                return None
            await self._reopen(lost)
            return self.session_id != lost

    async def _reopen(self, lost: str | None) -> None:
        """Open a new, live session in place of ``lost`` (each try within
        MOVE_CREATE_TIMEOUT_S + PROBE_TIMEOUT_S, as many as the move budget allows) and
        close ``lost`` best-effort; on any refusal (503, 429, unreachable) keep ``lost``:
        the next request fails too, backs off and re-sends the context."""
        from streammuse.errors import StreamMuseError

        loop = asyncio.get_running_loop()
        while self.moves.take(loop.time()):
            try:
                created = await self._call(self.transport.create_session, self.session_request,
                                           MOVE_CREATE_TIMEOUT_S)
            except StreamMuseError:
                return
            if self.session_id != lost:  # another request moved it meanwhile: keep theirs
                self._forget(created.session_id)
                return
            if await self._call(getattr(self.transport, "probe", lambda *a: True), created.session_id,
                                PROBE_TIMEOUT_S):
                self.session_id = created.session_id
                self._forget(lost)
                return
            self._forget(created.session_id)  # its id maps to the dead replica too: another

    def _watch(self) -> None:
        """While the server is unreachable, probe /healthz every WATCH_EVERY_S; when it
        answers, end the backoff (one watcher per song)."""
        probe = getattr(self.transport, "probe", None)
        if probe is None or self.watcher is not None:
            return

        async def watch() -> None:
            try:
                while not await self._call(probe, None, PROBE_TIMEOUT_S):
                    await asyncio.sleep(WATCH_EVERY_S)
                self.client.on_server_back()
            finally:
                self.watcher = None

        self.watcher = asyncio.create_task(watch())
        self.tasks.add(self.watcher)
        self.watcher.add_done_callback(self.tasks.discard)

    def _forget(self, session_id: str | None) -> None:
        """Close a session we no longer use, in the background, within CLOSE_TIMEOUT_S
        (it would otherwise hold a place on its replica until its TTL)."""
        if session_id is None:
            return

        async def close() -> None:
            try:
                await self._call(self.transport.close_session, session_id, CLOSE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a session we cannot close expires on its TTL
                pass

        task = asyncio.create_task(close())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def play_songs_wall(songs: list[WallSong], concurrency: int, on_done=None, watch=None,
                          watch_every_s: float = 0.25) -> None:
    """Play ``songs`` with at most ``concurrency`` at once; ``await on_done(song)`` after each.

    ``watch(playing)``, if given, is called every ``watch_every_s`` with the songs playing
    (for progress bars); it must be quick, it runs on the clock's loop.
    """
    gate = asyncio.Semaphore(concurrency)
    playing: list[WallSong] = []

    async def one(song: WallSong) -> None:
        async with gate:
            playing.append(song)
            try:
                await song.run()
            finally:
                playing.remove(song)
            if on_done is not None:
                await on_done(song)

    async def watcher() -> None:
        while True:
            watch(list(playing))
            await asyncio.sleep(watch_every_s)

    watch_task = asyncio.create_task(watcher()) if watch is not None else None
    try:
        await asyncio.gather(*(one(s) for s in songs))
    finally:
        if watch_task is not None:
            watch_task.cancel()
            watch([])
