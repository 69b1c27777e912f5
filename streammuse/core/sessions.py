"""One replica's sessions and the rules that decide what they play (docs/design.md section 3).

Every clock drives this object the same way (``drivers.py``):

0. :meth:`SessionCore.create` (with the driver's clock) admits a new session where it is
   created (issue 31: a full replica refuses the create, not the song's first tick) and
   holds its room; its engine state is made by its first request.
1. :meth:`SessionCore.submit` at the moment a request reaches the replica: the session is
   found (or made, when the request needs no history), the melody chunk is kept by tick,
   and the request waits as a :class:`Job`. Refusals are :class:`~streammuse.contract.ApiError`.
2. :meth:`SessionCore.next_batch_at` says when the next batch starts: the batching window
   (``max_wait_ms``) after the first waiting request, or at once when ``max_batch_size``
   sessions wait; never while a batch runs.
3. :meth:`SessionCore.take_batch` applies superseding (paper section III-D, never stall:
   of a session's waiting requests only the newest runs, the older ones are answered
   ``superseded``, never with a late result), answers ``expired`` a newest one whose
   answer could no longer be played (``deadlines.py``), and freezes the engine's inputs.
4. :meth:`SessionCore.compute` runs the batch in one ``engine.infer_batch`` call; it touches
   only the batch's engine states, so it may run in a worker thread while requests keep
   arriving. A context re-sent by a client is applied here, serialised with its engine work.
5. :meth:`SessionCore.finish` answers the batch's requests.

Everything but ``compute`` runs on the driver's one thread.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from streammuse.contract import (
    MAX_FRAMES_PER_REQUEST,
    ApiError,
    CreateSessionRequest,
    CreateSessionResponse,
    InferRequest,
    InferResponse,
    frames_to_wire,
    unknown_session,
    wire_to_frames,
)
from streammuse.core.admission import ClosedIds, RefusedSessions, admit, idle_first, per_client_limit
from streammuse.core.deadlines import expired
from streammuse.core.engine_inputs import check_context, engine_item, freeze_context, session_sampling
from streammuse.core.session_ids import SessionIds
from streammuse.errors import StreamMuseError
from streammuse.model.requests import EngineRequest

@dataclass
class CoreOptions:
    """Bounds of one replica's store and batcher."""

    session_ttl_s: float = 600.0  # idle sessions are dropped after this
    # Admission (core/admission.py): past this many live sessions a new one is refused
    # (503 overloaded), never made by evicting a live one, so admitted sessions keep playing.
    max_sessions: int = 256
    max_batch_size: int = 32
    max_wait_ms: float = 2.0  # how long a batch waits for more sessions' requests
    # One client's share of max_sessions (429 too_many_sessions past it); None: half, 0: no
    # bound (in-process cores: a simulation or a replay has one client); servers: DeployOptions.
    max_sessions_per_client: int | None = 0
    session_idle_s: float = 30.0  # not asked for this long: not live, its room goes first (admission.idle_first)
    # Answer ``expired`` without computing a request whose answer could no longer be played
    # (core/deadlines.py); off only where no musician waits (the capacity measurement).
    drop_expired: bool = True


@dataclass
class Session:
    """One live session on this replica."""

    state: object  # the engine's SessionState; None: admitted at create, no request yet
    settings: CreateSessionRequest
    last_access_s: float
    fed_until: int = 0  # the engine has (or the running batch gives it) M[0 .. fed_until)
    melody: dict[int, np.ndarray] = field(default_factory=dict)  # tick -> frame not fed yet
    latest: int = 0  # number of the newest request that arrived
    client: str | None = None  # who opened it (core/admission.py)


@dataclass
class Job:
    """One request waiting for, or holding, its answer."""

    session_id: str
    session: Session
    number: int
    request: InferRequest
    arrived_s: float
    response: InferResponse | None = None
    error: ApiError | None = None
    on_done: Callable[[Job], None] | None = None  # a driver's hook (wake a future)

    @property
    def done(self) -> bool:
        """True once the job has its answer (a response or an error)."""
        return self.response is not None or self.error is not None

    def answer(self, response: InferResponse | None = None, error: ApiError | None = None) -> None:
        """Set the answer once and tell the driver."""
        if self.done:
            return
        self.response, self.error = response, error
        if self.on_done is not None:
            self.on_done(self)


@dataclass
class Batch:
    """The jobs one engine call serves, with their frozen engine inputs."""

    jobs: list[Job]
    items: list[EngineRequest]  # what the engine is asked, one per job
    contexts: list[tuple[np.ndarray, np.ndarray] | None]  # a rebuild before the infer
    started_s: float
    results: list = field(default_factory=list)  # frames, or an exception, per job
    compute_ms: float = 0.0  # measured time of the engine work
    server_ms: float = 0.0  # the time a virtual replica lets it take


class SessionCore:
    """Sessions of one replica over one :class:`~streammuse.model.engine.StreamingEngine`."""

    def __init__(self, engine, options: CoreOptions | None = None, secret: str | bytes | None = None,
                 tag: str = "") -> None:
        self.engine = engine
        self.options = options or CoreOptions()
        self.ids = SessionIds(secret, tag)  # tag: the replica its ids route to (serving/router.py)
        self.sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.closed = ClosedIds()
        self.refused = RefusedSessions()  # refused for room lately: demand the autoscaler sees
        self.pending: list[Job] = []
        self.in_flight: set[int] = set()  # id() of the sessions whose request is in the engine
        self.busy = False
        self.idle_since_s = -float("inf")
        self.batch_sizes: list[int] = []  # sizes of the engine calls made (bench, tests)
        self._released: list[Session] = []  # gone sessions whose engine state awaits release
        self.submissions = 0  # requests accepted so far (a sim waits on this)

    # -- sessions ------------------------------------------------------------------
    def create(self, request: CreateSessionRequest, now_s: float | None = None,
               client: str | None = None) -> CreateSessionResponse:
        """A new session id. With ``now_s`` (a driver) the session is admitted now
        (core/admission.py) and holds its room; its engine state is made by its first
        request. Without it, an id only (callers that drive the core themselves).

        Raises:
            ApiError: 503 overloaded (the replica is full), 429 too_many_sessions.
        """
        session_id = self.ids.encode(request)
        if now_s is not None:
            self.expire(now_s)
            # A refused create leaves no id: a musician retrying (same settings, address) is one demand.
            key = f"create:{client}:{request.model_dump_json()}"
            self._admit(key, now_s, client)
            self.refused.discard(key)  # admitted now: it no longer waits
            self.sessions[session_id] = Session(None, request, now_s, client=client)
        return CreateSessionResponse(session_id=session_id, model_id=str(getattr(self.engine, "model_id", "")))

    def _admit(self, key: str, now_s: float, client: str | None) -> None:
        """Room for one more session (sessions that stopped asking give theirs first), or
        ApiError; a refusal for room counts ``key`` as demand."""
        opts = self.options
        for sid in idle_first(self.sessions, now_s, opts.session_idle_s, self.in_flight,
                              len(self.sessions) + 1 - opts.max_sessions):
            self._forget(sid)
        admit((s.client for s in self._live(now_s)), client, opts.max_sessions,
              per_client_limit(opts.max_sessions, opts.max_sessions_per_client),
              lambda: self.refused.add(key, now_s))

    def close(self, session_id: str, client: str | None = None) -> None:
        """Forget a session here and refuse to revive it. Ids this deployment did not
        issue are ignored, and each client's closed ids are bounded apart (so junk or
        mass deletes cannot flush the closed ids of others' sessions)."""
        try:
            self.ids.decode(session_id)
        except ApiError:
            return
        self._forget(session_id)
        self.closed.add(session_id, client)

    def expire(self, now_s: float) -> int:
        """Drop sessions idle for longer than the TTL; returns how many were dropped."""
        ttl = self.options.session_ttl_s
        stale = [sid for sid, s in self.sessions.items() if now_s - s.last_access_s > ttl]
        for sid in stale:
            self._forget(sid)
        return len(stale)

    def demand(self, now_s: float) -> int:
        """Live sessions plus those refused for room that still ask: what autoscaling sizes for."""
        return len(self._live(now_s)) + self.refused.waiting(now_s, self.sessions)

    def room(self, now_s: float) -> int:
        """Sessions this replica would still admit now (the router places creates by it)."""
        return max(0, self.options.max_sessions - len(self._live(now_s)))

    def _live(self, now_s: float) -> list[Session]:
        return [sess for sess in self.sessions.values() if now_s - sess.last_access_s <= self.options.session_idle_s]

    def _forget(self, session_id: str) -> None:
        """Drop a session; its engine state (a KV-cache slot) is released before the next
        batch starts, never under a running one."""
        sess = self.sessions.pop(session_id, None)
        if sess is not None:
            self._released.append(sess)

    def _release_gone(self) -> None:
        release = getattr(self.engine, "release", None)
        gone, self._released = self._released, []
        for sess in gone:
            if id(sess) in self.in_flight:
                self._released.append(sess)  # its request still runs: released after it
            elif release is not None and sess.state is not None and not any(j.session is sess for j in self.pending):
                release(sess.state)

    def _session_for(self, session_id: str, request: InferRequest, now_s: float, client: str | None = None) -> Session:
        """The session's state here, made fresh (admitted at create or now) if the request needs no history."""
        if session_id in self.closed:
            raise unknown_session("unknown session: it was closed")
        settings = self.ids.decode(session_id)
        self.expire(now_s)
        sess = self.sessions.get(session_id)
        if (sess is None or sess.state is None) and request.context is None and request.chunk_start() > 0:
            raise unknown_session()  # history is needed and this replica does not hold it
        if sess is None:  # not created here, or its room went to another after an idle spell
            self._admit(session_id, now_s, client)
            sess = Session(None, settings, now_s, client=client)
            self.sessions[session_id] = sess
        if sess.state is None:
            sess.state = self.engine.new_session(session_sampling(settings))
        self.sessions.move_to_end(session_id)
        sess.last_access_s = now_s
        return sess

    # -- requests ------------------------------------------------------------------
    def submit(self, session_id: str, request: InferRequest, now_s: float, client: str | None = None) -> Job:
        """A request from ``client`` (core/admission.py) reaches the replica at ``now_s``:
        a waiting :class:`Job`, or one already answered ``superseded`` (a newer request
        of its session already ran).

        Raises:
            ApiError: unknown session (404), a context or melody chunk out of range (422),
                no room for a new session (503 overloaded, 429 too_many_sessions).
        """
        sess = self._session_for(session_id, request, now_s, client)
        s = request.request_tick
        if request.context is not None:
            check_context(request)
        elif s < sess.fed_until:
            job = Job(session_id, sess, sess.latest, request, now_s)
            job.answer(InferResponse(status="superseded", request_tick=s))
            return job
        self._accept_melody(sess, request)
        sess.latest += 1
        job = Job(session_id, sess, sess.latest, request, now_s)
        self.pending.append(job)
        self.submissions += 1
        return job

    def _accept_melody(self, sess: Session, request: InferRequest) -> None:
        """Keep the chunk's true melody by tick (a superseded request's chunk is kept too)."""
        s, start = request.request_tick, request.chunk_start()
        if start + len(request.melody) > s or start < 0:
            raise ApiError(422, "out_of_range", f"melody covers ticks {start}..{start + len(request.melody) - 1}, past request_tick {s} or before 0")
        base = 0 if request.context is not None else sess.fed_until
        if s - base > MAX_FRAMES_PER_REQUEST:
            raise ApiError(422, "out_of_range", f"request_tick {s} is more than {MAX_FRAMES_PER_REQUEST} ticks past the session (tick {base})")
        for i, frame in enumerate(wire_to_frames(request.melody)):
            if start + i >= base:
                sess.melody[start + i] = frame

    # -- batches -------------------------------------------------------------------
    def next_batch_at(self, now_s: float) -> float | None:
        """When the next batch starts: None while one runs or nothing waits; else the
        batching window after the first waiting request (or after the last batch ended,
        whichever is later), or ``now_s`` once ``max_batch_size`` sessions wait."""
        if self.busy or not self.pending:
            return None
        if len({j.session_id for j in self.pending}) >= self.options.max_batch_size:
            return now_s
        return max(self.pending[0].arrived_s, self.idle_since_s) + self.options.max_wait_ms / 1000.0

    def take_batch(self, now_s: float) -> Batch:
        """Start a batch at ``now_s``: the newest waiting request of up to
        ``max_batch_size`` sessions; each session's older waiting requests are answered
        ``superseded`` (a context they carried passes to the newest). A session whose
        request is still in the engine (continuous batching) keeps waiting, untouched."""
        self._release_gone()  # no engine step runs now: slots can go back
        newest: dict[int, Job] = {}
        carried: dict[int, object] = {}
        held = [job for job in self.pending if id(job.session) in self.in_flight]
        room = self.options.max_batch_size - len(self.in_flight)
        for job in self.pending:
            if id(job.session) in self.in_flight:
                continue
            key = id(job.session)
            older = newest.get(key)
            if older is not None:
                if older.request.context is not None and job.request.context is None:
                    carried[key] = older.request.context
                older.answer(InferResponse(status="superseded", request_tick=older.request.request_tick,
                                           queue_ms=(now_s - older.arrived_s) * 1000))
            newest[key] = job
        live, rest = [], []
        for job in newest.values():
            no_context = job.request.context is None and carried.get(id(job.session)) is None
            if job.number != job.session.latest or (no_context and job.request.request_tick < job.session.fed_until):
                job.answer(InferResponse(status="superseded", request_tick=job.request.request_tick,
                                         queue_ms=(now_s - job.arrived_s) * 1000))
            elif no_context and self.options.drop_expired and expired((now_s - job.arrived_s) * 1000, job.request.gen_len,
                                                                      job.session.settings.bpm):  # a rebuild is never skipped
                job.answer(InferResponse(status="expired", request_tick=job.request.request_tick,
                                         queue_ms=(now_s - job.arrived_s) * 1000))
            elif len(live) < room:
                live.append(job)
                self.in_flight.add(id(job.session))
            else:
                rest.append(job)
        waiting = {id(job) for job in held + rest}
        self.pending = [job for job in self.pending if id(job) in waiting]
        self.busy = True
        batch = Batch(live, [], [], now_s)
        for job in live:
            context = job.request.context or carried.get(id(job.session))
            batch.contexts.append(freeze_context(job.session, context))
            batch.items.append(engine_item(job.session, job.request))
        return batch

    def compute(self, batch: Batch, run: Callable[[list[EngineRequest]], list] | None = None) -> None:
        """Run the batch's engine work (rebuilds, then one ``infer_batch``, or ``run``:
        ``engine.begin`` for continuous batching); any thread.

        A bad request (a ``StreamMuseError`` from the engine) fails alone: the batch is re-run
        one request at a time. Any other exception fails the whole batch with
        ``internal_error`` and never escapes: no request waits for an answer that won't come.
        """
        started = time.perf_counter()
        try:
            batch.results = self._compute(batch, run or self.engine.infer_batch)
        except Exception as exc:  # noqa: BLE001 - every waiting request must be answered
            batch.results = [ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")] * len(batch.jobs)
        batch.compute_ms = (time.perf_counter() - started) * 1000

    def _compute(self, batch: Batch, run: Callable[[list[EngineRequest]], list]) -> list:
        items, failed = [], {}
        for k, (item, context) in enumerate(zip(batch.items, batch.contexts)):
            if context is not None:
                try:
                    self.engine.rebuild(item.state, melody_frames=context[0], accompaniment_frames=context[1])
                except StreamMuseError as exc:
                    failed[k] = ApiError(422, "bad_request", f"context: {exc}")
            items.append(item)
        live = [k for k in range(len(items)) if k not in failed]
        try:
            out = dict(zip(live, run([items[k] for k in live]))) if live else {}
        except StreamMuseError:
            out = {}
            for k in live:  # one bad request must not fail the others
                try:
                    out[k] = run([items[k]])[0]
                except StreamMuseError as exc:
                    out[k] = ApiError(422, "bad_request", str(exc))
        return [failed.get(k, out.get(k)) for k in range(len(items))]

    def finish(self, batch: Batch, now_s: float, server_ms: float | None = None) -> None:
        """End the batch at ``now_s`` and answer its requests. ``server_ms`` is the time
        the batch is reported to have taken (default: its measured compute time)."""
        self.busy = False
        self.idle_since_s = now_s
        self.batch_sizes.append(len(batch.jobs))
        server_ms = batch.compute_ms if server_ms is None else server_ms
        for job, result in zip(batch.jobs, batch.results):
            self.answer_job(job, result, batch.started_s, server_ms)

    def answer_job(self, job: Job, result, started_s: float, server_ms: float) -> None:
        """Answer one request the engine ran (started at ``started_s``, ``server_ms`` of
        engine time): its frames, or an ApiError that also forgets its session."""
        self.in_flight.discard(id(job.session))
        if isinstance(result, ApiError):
            # The engine state may be half-updated: forget the session, so the
            # client's next request re-sends its context (404 unknown_session).
            if self.sessions.get(job.session_id) is job.session:
                self._forget(job.session_id)
            job.answer(error=result)
            return
        job.answer(InferResponse(status="ok", request_tick=job.request.request_tick,
                                 accompaniment=frames_to_wire(result),
                                 queue_ms=(started_s - job.arrived_s) * 1000, inference_ms=server_ms))

    def fail_all(self, error: ApiError) -> None:
        """Answer every waiting request with ``error`` (a driver shutting down)."""
        jobs, self.pending = self.pending, []
        for job in jobs:
            job.answer(error=error)

