"""One song's client, with the paper's roles kept apart (section IV-A).

* :class:`MelodyInput` - the input role: releases the true melody frame M[t] at tick t.
* :class:`InferenceRole` - every I ticks builds the request for ticks s .. s+GL-1 and
  sends it at the onset of tick s-1, carrying the melody frames released since the last
  answered request, M[s-1] included (equation 1: A[s] depends on M[<s] only). The first
  request (s = 0) goes out at tick -1, a one-tick count-in, with no melody. While
  requests overlap in flight their chunks overlap too (the server keeps the frames it
  has not seen), so a request that is lost, reordered or superseded never leaves a
  gap in the server's melody.
* :class:`Player` - the tick-aligned buffer (``buffer.TickBuffer``) played at each onset.

:class:`SongClient` wires them together and knows nothing about time: a clock (wall or
virtual, ``clock.py``) calls :meth:`SongClient.on_tick` at each tick's onset and a
sender calls :meth:`SongClient.on_reply` / :meth:`SongClient.on_error` when a response
arrives, so both clocks share every rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from streammuse.client.adaptive import Adapter
from streammuse.client.buffer import Played, TickBuffer
from streammuse.contract import InferRequest, InferResponse, SessionContext, frames_to_wire
from streammuse.datasets.song import Song, note_array

MAX_BACKOFF_TICKS = 64  # 2 bars of 4/4: long enough to stop hammering a dead server


@dataclass
class RequestRecord:
    """One request's row in ``requests.parquet`` (docs/design.md section 5).

    Times are ms from the onset of tick 0 (the count-in request has a negative send_ms).
    ``status``: ``ok`` (arrived before tick s started), ``late`` (answered, but after the
    onset of tick s), ``superseded`` (the server dropped it for a newer one), ``expired``
    (the server dropped it: its answer could no longer be played), ``failed``
    (no answer: server unreachable, unknown session, timeout), ``pending`` only while in
    flight.
    """

    song: str
    request_id: int
    send_tick: int
    request_tick: int
    gen_len: int
    send_ms: float
    recv_ms: float = math.nan
    rtt_ms: float = math.nan
    inference_ms: float = math.nan
    queue_ms: float = math.nan
    network_ms: float = math.nan
    status: str = "pending"
    interval: int = 0  # I in force when it was sent
    rt95_est_ms: float = math.nan  # adaptive client: f95_hat(GL) when it was sent


@dataclass
class TickRecord:
    """One tick's row in ``ticks.parquet``: I(t), S(t), the frame's request, and the
    pair (I, GL) in force at the tick's onset."""

    song: str
    tick: int
    available: int
    staleness: int
    request_id: int
    fresh: bool = False
    interval: int = 0
    gen_len: int = 0


class MelodyInput:
    """The input role: M[t] becomes known at the onset of tick t, as the musician plays it."""

    def __init__(self, melody_frames: np.ndarray) -> None:
        self.melody_frames = melody_frames
        self.released = 0  # ticks [0, released) are known

    def release(self, tick: int) -> None:
        """Release M[tick]."""
        self.released = max(self.released, tick + 1)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """The released frames for ticks [start, stop)."""
        if stop > self.released:
            raise ValueError(f"M[{stop - 1}] is not released yet (released up to {self.released - 1})")
        return self.melody_frames[start:stop]


class Player:
    """The playback role: the buffer and what it played, tick by tick."""

    def __init__(self, n_ticks: int) -> None:
        self.buffer = TickBuffer(n_ticks)
        self.played: list[Played] = []
        self.pairs: list[tuple[int, int]] = []

    def play(self, tick: int, pair: tuple[int, int] = (0, 0)) -> Played:
        """Play tick ``tick`` from the buffer (``pair``: the (I, GL) in force, for the log)."""
        p = self.buffer.play(tick)
        self.played.append(p)
        self.pairs.append(pair)
        return p

    def played_wire(self, stop: int) -> list[list]:
        """The accompaniment as played for ticks [0, stop), as wire frames (misses empty)."""
        return [p.frame if p.available else [] for p in self.played[:stop]]


@dataclass
class InferenceRole:
    """The inference role: request schedule (every I ticks from ``phase``), melody
    chunks, backoff."""

    interval: int
    gen_len: int
    n_ticks: int
    phase: int = 0  # requests go for s = phase + k I (an adaptive switch moves it)
    acked_until: int = 0  # the server has answered a request for this tick, so holds M[<it]
    failures: int = 0  # consecutive failed requests
    next_allowed_send_tick: int = -1
    failure_counted_at: int = -1  # the tick at which the last failure raised the backoff
    need_context: bool = False
    context_request: int = -1  # the request that last carried the context

    def due(self, tick: int) -> int | None:
        """The request tick s to send at the onset of ``tick`` (s = tick + 1), or None."""
        s = tick + 1
        if s >= self.n_ticks or (s - self.phase) % self.interval or tick < self.next_allowed_send_tick:
            return None
        return s

    def switch(self, tick: int, interval: int, gen_len: int) -> None:
        """Take the pair (I, GL) from the onset of ``tick``: the next request is for
        s = tick + 1, then every I ticks."""
        self.interval, self.gen_len, self.phase = interval, gen_len, tick + 1

    def on_failure(self, now_tick: int, sent_tick: int) -> None:
        """Back off: after k failures in a row, wait I * 2^(k-1) ticks (at most 64). A
        request sent before the last failure was counted was already in flight then: its
        failure is the same outage, not one more (a slow start that timed out three
        requests in flight escalated to 64 ticks, 8 s, of silence)."""
        if sent_tick < self.failure_counted_at:
            return
        self.failure_counted_at = now_tick
        self.failures += 1
        wait = min(self.interval * 2 ** (self.failures - 1), MAX_BACKOFF_TICKS)
        self.next_allowed_send_tick = max(self.next_allowed_send_tick, now_tick + wait - 1)


class SongClient:
    """One song streamed through the client: M in, A played, everything recorded.

    Args:
        name: the song's name (rows of the logs).
        melody_frames: the true melody M, ``(T, FRAME_LEN)`` token frames.
        interval: I, ticks between requests.
        gen_len: GL, ticks asked for per request.
        tau_ms: tau = 60000 / (4 BPM), one tick in ms.
        adapter: re-plans (I, GL) during the song (``client.adaptive``); None: fixed pair.
    """

    def __init__(self, name: str, melody_frames: np.ndarray, interval: int, gen_len: int, tau_ms: float,
                 adapter: Adapter | None = None) -> None:
        self.name = name
        self.n_ticks = len(melody_frames)
        self.tau_ms = tau_ms
        self.input = MelodyInput(melody_frames)
        self.inference = InferenceRole(interval, gen_len, self.n_ticks)
        self.player = Player(self.n_ticks)
        self.requests: list[RequestRecord] = []
        self.adapter = adapter

    # -- the clock calls this at each onset -------------------------------------------
    def on_tick(self, tick: int, now_ms: float) -> list[tuple[RequestRecord, InferRequest]]:
        """Onset of tick ``tick`` (-1 is the count-in): play A[t], release M[t], maybe send.

        Order matters: the slot is played before anything else can arrive in this tick,
        which is what makes the arrival rule strict. An adaptive client re-plans after
        playing, so a new pair's first request goes out at this very onset.
        """
        inf = self.inference
        if tick >= 0:
            self.player.play(tick, (inf.interval, inf.gen_len))
            self.input.release(tick)
        if self.adapter is not None:
            new = self.adapter.decide(tick, inf.interval, inf.gen_len)
            if new is not None:
                inf.switch(tick, *new)
        s = self.inference.due(tick)
        return [] if s is None else [self._request(s, tick, now_ms)]

    def _request(self, s: int, tick: int, now_ms: float) -> tuple[RequestRecord, InferRequest]:
        inf = self.inference
        rec = RequestRecord(self.name, len(self.requests), tick, s, inf.gen_len, now_ms, interval=inf.interval)
        if self.adapter is not None:
            rec.rt95_est_ms = self.adapter.rt95_ms(inf.gen_len)
        self.requests.append(rec)
        if inf.need_context:
            context = SessionContext(
                melody=frames_to_wire(self.input.frames(0, s)), accompaniment=self.player.played_wire(s)
            )
            req = InferRequest(request_tick=s, gen_len=inf.gen_len, melody=[], melody_start=s, context=context)
            inf.need_context = False
            inf.context_request = rec.request_id
            start = s
        else:
            start = inf.acked_until
            req = InferRequest(
                request_tick=s,
                gen_len=inf.gen_len,
                melody=frames_to_wire(self.input.frames(start, s)),
                melody_start=start,
            )
        return rec, req

    # -- a sender calls these when a request ends ---------------------------------------
    def on_reply(self, rec: RequestRecord, response: InferResponse, recv_ms: float, network_ms: float) -> int:
        """A response arrived at ``recv_ms``: offer its frames to the buffer.

        Returns:
            How many frames were written (0 for a superseded, expired or entirely late answer).
        """
        self._finish(rec, recv_ms, network_ms)
        rec.inference_ms = float(response.inference_ms)
        rec.queue_ms = float(response.queue_ms)
        self.inference.failures = 0
        if response.status in ("superseded", "expired"):
            rec.status = response.status
            return 0
        self.inference.acked_until = max(self.inference.acked_until, rec.request_tick)
        late = self.player.buffer.next_tick > rec.request_tick
        rec.status = "late" if late else "ok"
        if self.adapter is not None:
            self.adapter.add(rec.gen_len, rec.rtt_ms, rec.inference_ms, rec.send_tick)
        frames = [[list(n) for n in f] for f in response.accompaniment]
        return self.player.buffer.offer(rec.request_id, rec.request_tick, frames)

    def on_error(self, rec: RequestRecord, recv_ms: float, unknown_session: bool, timed_out: bool = False) -> None:
        """The request got no answer. Server unreachable: back off. Session unknown (the
        server is up but lost it): no backoff, the next request re-sends the context.
        ``timed_out``: the client gave up at its deadline, so its RTT is at least
        ``recv_ms - send_ms``; an adaptive client counts that lower bound as an answer's
        RTT (otherwise a network slower than the deadline would never raise its estimate)."""
        self._finish(rec, recv_ms, math.nan)
        rec.status = "failed"
        if timed_out and self.adapter is not None:
            self.adapter.add(rec.gen_len, rec.rtt_ms, math.nan, rec.send_tick)  # no server time: not in s_hat
        inf = self.inference
        if unknown_session:
            inf.need_context = True
            inf.acked_until = 0
            inf.failures, inf.next_allowed_send_tick = 0, -1
        else:
            # a refused context (503 on a new session, server down) never arrived: the
            # next request after the backoff carries it again; one that timed out may
            # still be rebuilt by the server (a 404 asks for it again if not)
            inf.need_context = inf.need_context or (rec.request_id == inf.context_request and not timed_out)
            inf.on_failure(self.player.buffer.next_tick, rec.send_tick)

    def on_lost(self, rec: RequestRecord, recv_ms: float) -> None:
        """The request failed on a session the song has since left (its replica died and
        the song moved): failed, and nothing else changes (the move already asked for the
        context; its failure is not news about the new session)."""
        self._finish(rec, recv_ms, math.nan)
        rec.status = "failed"

    def on_server_back(self) -> None:
        """The unreachable server answers again (its health probe): end the backoff, so
        the next request goes out at its usual tick."""
        self.inference.failures, self.inference.next_allowed_send_tick = 0, -1

    def _finish(self, rec: RequestRecord, recv_ms: float, network_ms: float) -> None:
        rec.recv_ms = recv_ms
        rec.rtt_ms = recv_ms - rec.send_ms
        rec.network_ms = network_ms

    # -- results ------------------------------------------------------------------------
    def finish_pending(self) -> None:
        """Mark requests still in flight when the song ended as failed."""
        for rec in self.requests:
            if rec.status == "pending":
                rec.status = "failed"

    def tick_records(self) -> list[TickRecord]:
        """ticks.parquet rows; ``fresh``: the frame came from the newest request whose
        range s .. s+GL-1 covers the tick (no newer generation was lost or late)."""
        newest = np.full(self.n_ticks, -1, dtype=np.int64)
        for rec in self.requests:  # in send order, so later requests win
            newest[rec.request_tick : rec.request_tick + rec.gen_len] = rec.request_id
        return [
            TickRecord(self.name, p.tick, int(p.available), p.staleness, p.request_id,
                       bool(p.available and p.request_id == newest[p.tick]), *pair)
            for p, pair in zip(self.player.played, self.player.pairs)
        ]

    def request_rows(self) -> list[dict]:
        """requests.parquet rows."""
        return [asdict(r) for r in self.requests]

    def switch_rows(self) -> list[dict]:
        """switches.parquet rows: the adaptive client's changes of pair (none for a fixed pair)."""
        return [asdict(s) for s in self.adapter.switches] if self.adapter is not None else []

    def performance(self, melody: np.ndarray) -> Song:
        """The performance as heard: the true melody and the accompaniment as played."""
        notes = [(p.tick, dur, pitch) for p in self.player.played if p.available for pitch, dur in p.frame]
        return Song(self.name, note_array(melody), note_array(notes))


__all__ = ["SongClient", "RequestRecord", "TickRecord", "MelodyInput", "InferenceRole", "Player"]
