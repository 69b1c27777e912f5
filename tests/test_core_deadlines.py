"""Requests whose answer could no longer be played are answered ``expired`` without
computing (core/deadlines.py, issue 13), on every driver, and both clients keep going."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from streammuse.client.session import SongClient
from streammuse.contract import CreateSessionRequest, InferRequest, InferResponse, SessionContext, tau_ms
from streammuse.core.deadlines import expired
from streammuse.core.drivers import RealtimeDriver
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames
from streammuse.model.engine import StreamingEngine


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine.random("tiny", seed=0)


def _chunk(first: int, n: int) -> list:
    return [[[60 + t % 12, 1]] for t in range(first, first + n)]


def test_the_rule_is_gl_tau_from_the_send():
    # 120 BPM: tau = 125 ms, GL = 3: the last tick starts 375 ms after the send.
    assert tau_ms(120) == 125.0
    assert expired(375.0, 3, 120.0) and not expired(374.9, 3, 120.0)
    assert expired(75.0, 2, 400.0) and not expired(74.0, 2, 400.0)  # tau = 37.5 ms


def test_a_request_that_waited_past_its_last_tick_is_not_computed(engine):
    core = SessionCore(engine)
    sid = core.create(CreateSessionRequest(seed=1, bpm=120.0)).session_id
    job = core.submit(sid, InferRequest(request_tick=4, gen_len=3, melody=_chunk(0, 4), melody_start=0), 0.0)
    batch = core.take_batch(0.376)
    assert batch.jobs == [] and job.response.status == "expired" and job.response.accompaniment == []
    assert job.response.queue_ms == pytest.approx(376.0)
    sess = core.sessions[sid]
    assert sess.fed_until == 0 and sorted(sess.melody) == [0, 1, 2, 3]  # its melody is kept
    core.finish(batch, 0.376)
    # The next request feeds the expired one's melody too (ticks 0..4), and runs.
    nxt = core.submit(sid, InferRequest(request_tick=5, gen_len=3, melody=_chunk(4, 1), melody_start=4), 0.4)
    batch = core.take_batch(0.4)
    assert batch.jobs == [nxt]
    item = batch.items[0]
    assert (item.request_tick, item.melody_start, item.gen_len) == (5, 0, 3)
    assert [vocab.token_to_note(int(row[0]))[0] for row in item.melody_frames] == [60, 61, 62, 63, 64]
    core.compute(batch)
    core.finish(batch, 0.45)
    assert nxt.response.status == "ok" and len(nxt.response.accompaniment) == 3


def test_a_request_just_in_time_runs_and_a_rebuild_never_expires(engine):
    core = SessionCore(engine)
    sid = core.create(CreateSessionRequest(seed=2, bpm=120.0)).session_id

    def ask(s: int, at: float, start: float, **kw):
        job = core.submit(sid, InferRequest(request_tick=s, gen_len=3, **kw), at)
        batch = core.take_batch(start)
        core.busy = False
        core.in_flight.clear()
        return job, batch

    job, batch = ask(1, 0.0, 0.374, melody=_chunk(0, 1))
    assert batch.jobs == [job]  # 374 ms waited: an instant answer would still play tick 3
    context = SessionContext(melody=_chunk(0, 5), accompaniment=[[]] * 5)
    job, batch = ask(5, 1.0, 2.0, context=context)
    assert batch.jobs == [job]  # 1 s late, but it carries the session's history


class _SlowEngine:
    """The engine, with every batch taking at least ``seconds`` (an overloaded replica);
    whole batches only (the stepping driver admits through the same ``take_batch``)."""

    begin = step = None

    def __init__(self, engine, seconds: float) -> None:
        self.engine, self.seconds, self.calls = engine, seconds, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def infer_batch(self, items):
        self.calls.append([item.request_tick for item in items])
        started = time.monotonic()
        out = self.engine.infer_batch(items)
        time.sleep(max(0.0, self.seconds - (time.monotonic() - started)))
        return out


def test_an_overloaded_replica_answers_hopeless_requests_at_once(engine):
    # 400 BPM: tau = 37.5 ms, GL = 2: a request is hopeless 75 ms after it arrived.
    slow = _SlowEngine(engine, 0.3)
    driver = RealtimeDriver(SessionCore(slow, CoreOptions(max_wait_ms=1.0)))
    a = driver.create(CreateSessionRequest(seed=3, bpm=400.0)).session_id
    b = driver.create(CreateSessionRequest(seed=4, bpm=400.0)).session_id

    async def timed(sid):
        answer = await driver.infer(sid, InferRequest(request_tick=1, gen_len=2, melody=_chunk(0, 1)))
        return answer, time.monotonic()

    async def scenario():
        first = asyncio.create_task(timed(a))
        await asyncio.sleep(0.05)  # a's batch is running (300 ms): b waits behind it
        other = asyncio.create_task(timed(b))
        return await first, await other

    (first, first_at), (other, other_at) = asyncio.run(scenario())
    assert first.status == "ok" and other.status == "expired" and other.queue_ms >= 75.0
    assert slow.calls == [[1]]  # b never reached the engine
    assert other_at - first_at < 0.1  # answered as a's batch ended, not after a batch of its own


def test_clients_treat_expired_like_superseded():
    melody = empty_frames(6)
    melody[:, 0] = vocab.note_to_token(60 + np.arange(6), 1)
    melody[:, 1] = vocab.EOF
    c = SongClient("x", melody, interval=1, gen_len=3, tau_ms=125.0)
    [(rec0, _)] = c.on_tick(-1, -125.0)
    c.on_reply(rec0, InferResponse(status="ok", request_tick=0, accompaniment=[[[48, 2]]] * 3), -1.0, 0.0)
    [(rec1, _)] = c.on_tick(0, 0.0)
    assert c.on_reply(rec1, InferResponse(status="expired", request_tick=1, queue_ms=400.0), 400.0, 0.0) == 0
    assert rec1.status == "expired" and c.inference.acked_until == 0  # not acknowledged:
    [(_, req2)] = c.on_tick(1, 125.0)
    assert (req2.melody_start, len(req2.melody)) == (0, 2)  # the next request re-sends M[0], M[1]
    assert c.inference.failures == 0  # an answer, not a failure: no backoff


def test_the_capacity_measurement_drops_nothing(engine):
    core = SessionCore(engine, CoreOptions(drop_expired=False))  # as serving/capacity.py times T(B)
    sid = core.create(CreateSessionRequest(seed=1, bpm=120.0)).session_id
    job = core.submit(sid, InferRequest(request_tick=4, gen_len=3, melody=_chunk(0, 4), melody_start=0), 0.0)
    assert core.take_batch(5.0).jobs == [job]  # 5 s late, computed all the same
