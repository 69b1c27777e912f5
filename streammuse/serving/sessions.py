"""The per-replica session store and request batcher (docs/design.md section 3).

A session id is self-describing: ``<128 random bits>.<the session's settings>``. The
random half makes it unguessable; the settings half (BPM, sampling, seed) lets *any*
replica rebuild the session from the context a client re-sends, because affinity is a
cache, not the source of truth. State (history + KV cache) is created on the replica
that the consistent-hash router picks for the id, at the session's first infer.

Never stall (paper section III-D): a newer request of a session supersedes an older one
still waiting (the older is answered ``superseded``, never with a late result), and
requests of many sessions that arrive together run in one ``engine.infer_batch`` call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import secrets
import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import ValidationError

from streammuse.client.wire import frames_to_wire, wire_to_frames
from streammuse.datasets import vocab
from streammuse.errors import StreamMuseError
from streammuse.serving.protocol import (
    MAX_FRAMES_PER_REQUEST,
    CreateSessionRequest,
    CreateSessionResponse,
    InferRequest,
    InferResponse,
)

RANDOM_ID_BYTES = 16  # 128 bits: unguessable
MAX_TOMBSTONES = 10_000  # closed ids remembered so a closed session is not revived


class ApiError(StreamMuseError):
    """A request the server answers with a 4xx (HTTP status, ErrorResponse code, detail)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def unknown_session(detail: str = "unknown session: re-send the context") -> ApiError:
    """The distinct answer telling the client to rebuild with ``context`` (HTTP 404)."""
    return ApiError(404, "unknown_session", detail)


@dataclass
class StoreOptions:
    """Bounds of one replica's store and batcher."""

    session_ttl_s: float = 600.0  # idle sessions are dropped after this
    max_sessions: int = 256  # bounded memory: the least recently used is evicted
    max_batch_size: int = 32
    max_wait_ms: float = 2.0  # how long the batcher waits for more sessions' requests


def encode_session_id(request: CreateSessionRequest) -> str:
    """A fresh unguessable id carrying the session's settings."""
    settings = base64.urlsafe_b64encode(request.model_dump_json().encode()).rstrip(b"=").decode()
    return f"{secrets.token_urlsafe(RANDOM_ID_BYTES)}.{settings}"


def decode_session_id(session_id: str) -> CreateSessionRequest:
    """The settings inside ``session_id``; ApiError(unknown_session) if it is not one of ours."""
    random_part, _, settings = session_id.partition(".")
    if len(random_part) < 22 or not settings or len(session_id) > 1024:
        raise unknown_session("unknown session: malformed id")
    try:
        raw = base64.urlsafe_b64decode(settings + "=" * (-len(settings) % 4))
        return CreateSessionRequest.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, ValidationError, UnicodeDecodeError):
        raise unknown_session("unknown session: malformed id") from None


@dataclass
class Session:
    """One live session on this replica."""

    state: object  # the engine's SessionState
    last_access_s: float
    fed_until: int = 0  # the engine has the true melody for ticks [0, fed_until)
    melody: dict[int, np.ndarray] = field(default_factory=dict)  # tick -> frame not fed yet
    latest: int = 0  # number of the newest request that arrived


@dataclass
class _Job:
    session_id: str
    session: Session
    number: int
    request: InferRequest
    arrived_s: float
    future: asyncio.Future


class SessionStore:
    """Sessions of one replica over one :class:`~streammuse.model.engine.StreamingEngine`."""

    def __init__(self, engine, options: StoreOptions | None = None) -> None:
        self.engine = engine
        self.options = options or StoreOptions()
        self.sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.closed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.batch_sizes: list[int] = []  # sizes of the infer_batch calls made (bench, tests)
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None

    # -- sessions ------------------------------------------------------------------
    def create(self, request: CreateSessionRequest) -> CreateSessionResponse:
        """A new session id; its state is made on the replica that serves its first infer."""
        return CreateSessionResponse(session_id=encode_session_id(request),
                                     model_id=str(getattr(self.engine, "model_id", "")))

    def close(self, session_id: str) -> None:
        """Forget a session here and refuse to revive it (unknown ids are ignored)."""
        self.sessions.pop(session_id, None)
        self.closed[session_id] = None
        while len(self.closed) > MAX_TOMBSTONES:
            self.closed.popitem(last=False)

    def expire(self, now_s: float | None = None) -> int:
        """Drop sessions idle for longer than the TTL; returns how many were dropped."""
        now_s = time.monotonic() if now_s is None else now_s
        stale = [sid for sid, s in self.sessions.items() if now_s - s.last_access_s > self.options.session_ttl_s]
        for sid in stale:
            del self.sessions[sid]
        return len(stale)

    def _session_for(self, session_id: str, request: InferRequest) -> Session:
        """The session's state here, made fresh when the request needs no history."""
        if session_id in self.closed:
            raise unknown_session("unknown session: it was closed")
        settings = decode_session_id(session_id)
        now_s = time.monotonic()
        self.expire(now_s)
        sess = self.sessions.get(session_id)
        if sess is None:
            start = request.melody_start if request.melody_start is not None else request.request_tick - len(request.melody)
            if request.context is None and start > 0:
                raise unknown_session()  # history is needed and this replica does not hold it
            sess = Session(self.engine.new_session(_sampling(settings)), now_s)
            self.sessions[session_id] = sess
            while len(self.sessions) > self.options.max_sessions:
                self.sessions.popitem(last=False)
        self.sessions.move_to_end(session_id)
        sess.last_access_s = now_s
        return sess

    # -- requests ------------------------------------------------------------------
    async def infer(self, session_id: str, request: InferRequest) -> InferResponse:
        """Accompaniment for ticks s .. s+GL-1, batched with other sessions' requests.

        Raises:
            ApiError: unknown session (404) or a melody chunk out of range (422).
        """
        arrived_s = time.perf_counter()
        sess = self._session_for(session_id, request)
        s = request.request_tick
        if request.context is not None:
            _rebuild(self.engine, sess, request)
        elif s < sess.fed_until:
            return InferResponse(status="superseded", request_tick=s)  # a newer request already ran
        self._accept_melody(sess, request)
        sess.latest += 1
        job = _Job(session_id, sess, sess.latest, request, arrived_s, asyncio.get_running_loop().create_future())
        await self._submit(job)
        return await job.future

    def _accept_melody(self, sess: Session, request: InferRequest) -> None:
        """Keep the chunk's true melody by tick (a superseded request's chunk is kept too)."""
        s = request.request_tick
        start = request.melody_start if request.melody_start is not None else s - len(request.melody)
        if start + len(request.melody) > s or start < 0:
            raise ApiError(422, "out_of_range", f"melody covers ticks {start}..{start + len(request.melody) - 1}, past request_tick {s} or before 0")
        if s - sess.fed_until > MAX_FRAMES_PER_REQUEST:
            raise ApiError(422, "out_of_range", f"request_tick {s} is more than {MAX_FRAMES_PER_REQUEST} ticks past the session (tick {sess.fed_until})")
        for i, frame in enumerate(wire_to_frames(request.melody)):
            if start + i >= sess.fed_until:
                sess.melody[start + i] = frame

    async def _submit(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._batcher())
        await self._queue.put(job)

    async def _batcher(self) -> None:
        """Collect jobs for up to ``max_wait_ms`` (or ``max_batch_size``), run one batch."""
        while True:
            jobs = [await self._queue.get()]
            deadline = time.perf_counter() + self.options.max_wait_ms / 1000
            while len(jobs) < self.options.max_batch_size:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            while not self._queue.empty() and len(jobs) < self.options.max_batch_size:
                jobs.append(self._queue.get_nowait())
            await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        live = []
        for job in jobs:
            if job.number != job.session.latest or job.request.request_tick < job.session.fed_until:
                _answer(job, InferResponse(status="superseded", request_tick=job.request.request_tick))
            else:
                live.append(job)
        if not live:
            return
        batch = [(j.session.state, j.request.request_tick, _melody_to_feed(j.session, j.request.request_tick), j.request.gen_len, j.session.fed_until) for j in live]
        started = time.perf_counter()
        try:
            results: list = await asyncio.to_thread(self.engine.infer_batch, batch)
        except StreamMuseError:
            # One bad request must not fail the others: run them one at a time.
            results = []
            for item in batch:
                try:
                    results.append(await asyncio.to_thread(self.engine.infer_batch, [item]))
                except StreamMuseError as exc:
                    results.append(exc)
            results = [r[0] if isinstance(r, list) else r for r in results]
        inference_ms = (time.perf_counter() - started) * 1000
        self.batch_sizes.append(len(live))
        for job, acc in zip(live, results):
            if isinstance(acc, Exception):
                _fail(job, ApiError(422, "bad_request", str(acc)))
                continue
            job.session.fed_until = job.request.request_tick
            queue_ms = (started - job.arrived_s) * 1000
            _answer(job, InferResponse(status="ok", request_tick=job.request.request_tick, accompaniment=frames_to_wire(acc),
                                       queue_ms=queue_ms, inference_ms=inference_ms))


def _melody_to_feed(sess: Session, s: int) -> np.ndarray:
    """True melody for ticks [fed_until, s); a tick nobody sent is silence."""
    empty = wire_to_frames([[]])[0]
    rows = [sess.melody.pop(t, empty) for t in range(sess.fed_until, s)]
    for t in [t for t in sess.melody if t < s]:
        del sess.melody[t]
    return np.stack(rows) if rows else np.zeros((0, vocab.FRAME_LEN), dtype=np.int16)


def _rebuild(engine, sess: Session, request: InferRequest) -> None:
    """Replace the session's history with the context the client re-sent."""
    ctx = request.context
    if len(ctx.melody) != len(ctx.accompaniment):
        raise ApiError(422, "bad_request", f"context: {len(ctx.melody)} melody frames but {len(ctx.accompaniment)} accompaniment frames")
    if len(ctx.melody) > request.request_tick:
        raise ApiError(422, "out_of_range", f"context covers {len(ctx.melody)} ticks, past request_tick {request.request_tick}")
    try:
        engine.rebuild(sess.state, melody_frames=wire_to_frames(ctx.melody), accompaniment_frames=wire_to_frames(ctx.accompaniment))
    except StreamMuseError as exc:
        raise ApiError(422, "bad_request", f"context: {exc}") from None
    sess.fed_until, sess.melody = len(ctx.melody), {}


def _sampling(settings: CreateSessionRequest):
    from streammuse.model.sampling import Sampling

    s = settings.sampling
    return Sampling(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=settings.seed)


def _answer(job: _Job, response: InferResponse) -> None:
    if not job.future.done():
        job.future.set_result(response)


def _fail(job: _Job, error: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(error)
