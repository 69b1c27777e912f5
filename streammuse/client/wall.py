"""The wall-clock replay: real time, real sleeps, a real server (``--clock wall``).

One asyncio loop runs every song playing at once. Per song, the clock role
(``clock.TickClock``) calls the client at each onset; each request it returns is sent
by its own task (so requests may overlap in flight; the server supersedes older ones):
sleep NL/2, call the blocking transport in a worker thread, sleep NL/2 plus the server
jitter, hand the answer to the client. Transport failures become ``failed`` requests
with backoff; an unknown session opens a new one and the next request re-sends the
context (melody so far, accompaniment as played).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from streammuse.client.clock import TickClock
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

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def run(self) -> None:
        """Play the whole song, then close its session."""
        from streammuse.client.transports import ServerUnavailable

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

        draw = self.injector.draw(rec.send_ms)
        await asyncio.sleep(draw.request_ms / 1000.0)
        # The client's own deadline: past the onset of the last tick this request covers
        # its answer is of no use, so a dead or swamped server is detected in GL ticks,
        # not after a 30 s socket timeout, and the thread is free again.
        deadline_s = self.clock.onset_s(req.request_tick + req.gen_len - 1) - asyncio.get_running_loop().time()
        sent_on = self.session_id
        called_s = asyncio.get_running_loop().time()
        try:
            response = await self._call(self.transport.infer, sent_on, req, max(deadline_s, MIN_DEADLINE_S))
        except UnknownSession:
            self.client.on_error(rec, self.clock.now_ms(), unknown_session=True)
            if sent_on == self.session_id:  # one new session per lost one, however many 404s come back
                await self._reopen()
            return
        except (ServerUnavailable, OSError, TimeoutError) as exc:
            # A 5xx (not 503: overloaded) while the server still answers is a failed
            # replica: open a session elsewhere and re-send the context at once, rather
            # than back off as from a dead server (fail-over within a bar).
            status = getattr(exc, "status", None)
            if status is not None and status != 503 and await self._moved(sent_on):
                self.client.on_error(rec, self.clock.now_ms(), unknown_session=True)
                return
            spent_s = asyncio.get_running_loop().time() - called_s
            self.client.on_error(rec, self.clock.now_ms(), unknown_session=False,
                                 timed_out=spent_s >= max(deadline_s, MIN_DEADLINE_S))
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

    async def _moved(self, sent_on: str | None) -> bool:
        """After a replica failed this session: True when the session is (now) another
        one, opened once per lost session; False when no new session can be opened."""
        if sent_on != self.session_id:
            return True  # already replaced after an earlier failure
        await self._reopen()
        return self.session_id != sent_on

    async def _reopen(self) -> None:
        from streammuse.client.transports import ServerUnavailable

        try:
            self.session_id = (await self._call(self.transport.create_session, self.session_request)).session_id
        except ServerUnavailable:
            pass  # the next request fails too and backs off; it re-sends the context


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
