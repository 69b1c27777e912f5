"""The sim clock: a discrete-event replay of one song on a virtual clock.

Events, in virtual ms from the onset of tick 0:

* tick onset t at ``t * tau`` (t = -1 is the count-in): the client plays, releases M[t]
  and maybe sends a request;
* a request reaches the server at ``send + NL/2``;
* the server works on one request of a session at a time. When it is free it takes the
  newest request waiting and answers the older waiting ones ``superseded`` (the newest
  chunk covers theirs: chunks start at the last answered request); one older than the
  last it ran is answered ``superseded`` at once; the run takes IL, the modelled ``server_model`` time (+ the profile's server
  jitter) or, with ``server_time="measured"``, the engine's measured compute time;
* the answer reaches the client at ``server end + NL/2``.

At equal times a tick onset comes first, so an answer arriving exactly at a tick's
onset is late for that tick (the strict arrival rule). All randomness comes from one
seeded Generator drawn in event order, and the engine is called in event order, so a
modelled server time and a fixed seed give the same event log on every run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from dataclasses import dataclass, field

from streammuse.client.latency import DelayDraw, LatencyInjector
from streammuse.client.session import RequestRecord, SongClient
from streammuse.serving.protocol import CreateSessionRequest, InferRequest, InferResponse

_ONSET, _SERVER_ARRIVE, _SERVER_DONE, _CLIENT_ARRIVE, _CLIENT_ERROR = 0, 1, 2, 3, 4


@dataclass
class _InFlight:
    rec: RequestRecord
    req: InferRequest
    draw: DelayDraw
    arrive_ms: float = 0.0


@dataclass
class _Server:
    busy: bool = False
    waiting: list[_InFlight] = field(default_factory=list)


def simulate_song(
    client: SongClient,
    transport,
    injector: LatencyInjector,
    session_request: CreateSessionRequest,
    server_time: str = "modelled",
) -> None:
    """Replay ``client``'s song on the virtual clock against ``transport`` (in process).

    A transport that raises ``ServerUnavailable`` or ``UnknownSession`` (a fault-injecting
    wrapper, say) fails the request as the wall clock would: the client learns of it
    when the answer would have arrived, backs off, and after an unknown session opens a
    new one and re-sends its context.
    """
    UnknownSession, ServerUnavailable = transport_errors()
    tau = client.tau_ms
    session = {"id": transport.create_session(session_request).session_id}
    server = _Server()
    events: list = []
    seq = itertools.count()

    def push(time_ms: float, kind: int, payload=None) -> None:
        heapq.heappush(events, (time_ms, 0 if kind == _ONSET else 1, next(seq), kind, payload))

    def start_next(now: float) -> None:
        if server.busy or not server.waiting:
            return
        *older, job = server.waiting
        server.waiting = []
        for old in older:
            push(now + old.draw.response_ms, _CLIENT_ARRIVE,
                 (old, InferResponse(status="superseded", request_tick=old.rec.request_tick, queue_ms=now - old.arrive_ms)))
        try:
            response = transport.infer(session["id"], job.req)
        except (UnknownSession, ServerUnavailable) as exc:
            push(now + job.draw.response_ms, _CLIENT_ERROR, (job, isinstance(exc, UnknownSession)))
            start_next(now)
            return
        il_ms = injector.server_ms(job.rec.gen_len) if server_time == "modelled" else response.inference_ms
        il_ms += job.draw.server_jitter_ms
        response = response.model_copy(update={"inference_ms": il_ms, "queue_ms": now - job.arrive_ms})
        server.busy = True
        push(now + il_ms, _SERVER_DONE, (job, response))

    for t in range(-1, client.n_ticks):
        push(t * tau, _ONSET, t)
    while events:
        now, _, _, kind, payload = heapq.heappop(events)
        if kind == _ONSET:
            for rec, req in client.on_tick(payload, now):
                job = _InFlight(rec, req, injector.draw())
                push(now + job.draw.request_ms, _SERVER_ARRIVE, job)
        elif kind == _SERVER_ARRIVE:
            payload.arrive_ms = now
            server.waiting.append(payload)
            start_next(now)
        elif kind == _SERVER_DONE:
            job, response = payload
            server.busy = False
            push(now + job.draw.response_ms, _CLIENT_ARRIVE, (job, response))
            start_next(now)
        elif kind == _CLIENT_ARRIVE:
            job, response = payload
            client.on_reply(job.rec, response, now, job.draw.network_ms)
        else:
            job, unknown_session = payload
            client.on_error(job.rec, now, unknown_session)
            if unknown_session:
                with contextlib.suppress(ServerUnavailable):
                    session["id"] = transport.create_session(session_request).session_id
    client.finish_pending()
    transport.close_session(session["id"])


def transport_errors() -> tuple[type[BaseException], type[BaseException]]:
    """``(UnknownSession, ServerUnavailable)`` as the serving transports raise them.

    Without ``streammuse.serving.transport`` (a client-only install) nothing raises them,
    so classes that are never raised stand in.
    """
    try:
        from streammuse.serving.transport import ServerUnavailable, UnknownSession
    except ImportError:
        return _NeverRaised, _NeverRaised
    return UnknownSession, ServerUnavailable


class _NeverRaised(Exception):
    """Stands in for a transport error when no serving transport is installed."""
