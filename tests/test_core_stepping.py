"""Continuous batching: requests join a running batch between frame steps and leave when
their own GL is done; a session's tokens do not depend on when it joined."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from streammuse.contract import CreateSessionRequest, InferRequest
from streammuse.core.drivers import RealtimeDriver, run_now
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.datasets.frames import empty_frames
from streammuse.model.engine import EngineRequest, Sampling, StreamingEngine


def _unhurried() -> float:
    """The drivers' clock here, 100 times slower than the wall: requests in these tests
    wait behind a long one by design, and on a loaded machine such a wait could reach the
    point where the core answers ``expired`` (core/deadlines.py) instead of computing."""
    return time.monotonic() / 100


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine.random("tiny", seed=0)


def _melody(n: int, offset: int = 0) -> np.ndarray:
    from streammuse.contract import wire_to_frames

    return wire_to_frames([[[60 + (t + offset) % 12, 1]] if t % 3 else [] for t in range(n)])


def _req(s: int, gl: int, offset: int = 0) -> InferRequest:
    from streammuse.contract import frames_to_wire

    return InferRequest(request_tick=s, gen_len=gl, melody=frames_to_wire(_melody(s, offset)), melody_start=0)


def test_a_session_joining_midway_gets_the_tokens_it_gets_alone(engine):
    """Engine level: B (GL 3) begins after A (GL 16) has run 5 steps; both get exactly
    the tokens they get alone."""
    def alone(seed: int, s: int, gl: int, offset: int) -> np.ndarray:
        state = engine.new_session(Sampling(seed=seed))
        out = engine.infer(state, s, _melody(s, offset), gl)
        engine.release(state)
        return out

    a, b = engine.new_session(Sampling(seed=3)), engine.new_session(Sampling(seed=4))
    jobs = engine.begin([EngineRequest(a, 6, _melody(6), 16)])
    for _ in range(5):
        engine.step(jobs)
    jobs += engine.begin([EngineRequest(b, 9, _melody(9, 5), 3)])
    steps = 0
    while not jobs[1].done:
        engine.step(jobs)
        steps += 1
    assert steps == 3 and not jobs[0].done and len(jobs[0].frames) == 8
    while not jobs[0].done:
        engine.step(jobs)
    assert np.array_equal(jobs[1].result(), alone(4, 9, 3, 5))
    assert np.array_equal(jobs[0].result(), alone(3, 6, 16, 0))
    assert not a.running and not b.running
    # Not every frame is empty: the comparison says something.
    assert not np.array_equal(jobs[0].result(), empty_frames(16))


def test_a_short_request_is_answered_before_a_long_one_it_joined(engine):
    """Driver level: with a GL 16 request running, a GL 3 request of another session
    submitted after the first step is answered first, with its tokens alone."""
    driver = RealtimeDriver(SessionCore(engine, CoreOptions(max_wait_ms=0)), clock=_unhurried)
    long_id = driver.create(CreateSessionRequest(seed=1)).session_id
    short_id = driver.create(CreateSessionRequest(seed=2)).session_id
    order = []

    async def run():
        async def ask(sid, request, name):
            answer = await driver.infer(sid, request)
            order.append((name, driver.steps.steps))
            return answer

        long = asyncio.ensure_future(ask(long_id, _req(4, 16), "GL16"))
        while driver.steps.steps < 1:
            await asyncio.sleep(0.001)
        joined_at = driver.steps.steps
        short = await ask(short_id, _req(7, 3, 2), "GL3")
        return await long, short, joined_at

    long, short, joined_at = asyncio.run(asyncio.wait_for(run(), 60))
    assert [name for name, _ in order] == ["GL3", "GL16"]
    # It joins at the step boundary after the step running when it arrived: 3 steps later it is done.
    assert joined_at < 12 and order[0][1] <= joined_at + 4 and order[1][1] == 16
    assert driver.core.batch_sizes == [1, 1] and not driver.core.in_flight
    alone = SessionCore(engine)
    expected = run_now(alone, alone.create(CreateSessionRequest(seed=2)).session_id, _req(7, 3, 2))
    assert short.status == "ok" and short.accompaniment == expected.accompaniment
    assert long.status == "ok" and len(long.accompaniment) == 16


def test_requests_of_a_running_session_wait_and_a_closed_one_is_released_after(engine):
    """A session's newer requests wait while its request runs (the older one is then
    superseded); a session closed mid-run keeps its slot until its step ends."""
    driver = RealtimeDriver(SessionCore(engine, CoreOptions(max_wait_ms=0)), clock=_unhurried)
    sid = driver.create(CreateSessionRequest(seed=5)).session_id
    gone = driver.create(CreateSessionRequest(seed=6)).session_id

    async def run():
        first = asyncio.ensure_future(driver.infer(sid, _req(2, 12)))
        other = asyncio.ensure_future(driver.infer(gone, _req(2, 12)))
        while driver.steps.steps < 2:
            await asyncio.sleep(0.001)
        gone_state = driver.core.sessions[gone].state
        driver.close(gone)
        older = asyncio.ensure_future(driver.infer(sid, InferRequest(request_tick=3, gen_len=2, melody=[[]])))
        await asyncio.sleep(0)
        newer = asyncio.ensure_future(driver.infer(sid, InferRequest(request_tick=4, gen_len=2, melody=[[]])))
        while driver.steps.steps < 4:
            await asyncio.sleep(0.001)
        mid_run = (gone_state.released, other.done())
        return await first, await other, await older, await newer, gone_state, mid_run

    first, other, older, newer, gone_state, mid_run = asyncio.run(asyncio.wait_for(run(), 60))
    assert mid_run == (False, False)  # closed, but its request still runs: the slot stays
    assert (first.status, len(first.accompaniment), other.status) == ("ok", 12, "ok")
    assert older.status == "superseded" and newer.status == "ok" and len(newer.accompaniment) == 2
    assert gone_state.released and gone_state.slot is None
    assert gone not in driver.core.sessions and not driver.core.in_flight


def test_max_batch_size_caps_the_running_requests(engine):
    """With room for one running request, a GL 3 request waits for the GL 16 one."""
    driver = RealtimeDriver(SessionCore(engine, CoreOptions(max_wait_ms=0, max_batch_size=1)), clock=_unhurried)
    ids = [driver.create(CreateSessionRequest(seed=s)).session_id for s in (1, 2)]
    order = []

    async def run():
        async def ask(sid, request, name):
            await driver.infer(sid, request)
            order.append((name, driver.steps.steps))

        long = asyncio.ensure_future(ask(ids[0], _req(4, 16), "GL16"))
        while driver.steps.steps < 1:
            await asyncio.sleep(0.001)
        await ask(ids[1], _req(7, 3, 2), "GL3")
        await long

    asyncio.run(asyncio.wait_for(run(), 60))
    # Nothing runs after the GL 3 request: it ended at step 16 + 3.
    assert [name for name, _ in order] == ["GL16", "GL3"] and order[1][1] == 19
    assert driver.core.batch_sizes == [1, 1]
