"""Session core: superseding, batching, TTL, bounded memory, errors; the Local socket server."""

from __future__ import annotations

import asyncio

import pytest

from streammuse.client.transports import HttpTransport, ServerUnavailable, UnknownSession
from streammuse.contract import ApiError, CreateSessionRequest, InferRequest
from streammuse.core.drivers import RealtimeDriver, run_now
from streammuse.core.session_ids import SessionIds
from streammuse.core.sessions import CoreOptions, SessionCore
from streammuse.model.engine import StreamingEngine
from streammuse.serving.embedded import start_server


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine.random("tiny", seed=0)


def _req(s: int, gl: int = 2) -> InferRequest:
    return InferRequest(request_tick=s, gen_len=gl, melody=[[(60 + t % 5, 1)] for t in range(s)])


def test_newer_request_supersedes_one_still_waiting(engine):
    driver = RealtimeDriver(SessionCore(engine))
    sid = driver.create(CreateSessionRequest(seed=4)).session_id

    async def both():
        return await asyncio.gather(driver.infer(sid, _req(1)), driver.infer(sid, InferRequest(request_tick=2, gen_len=2, melody=[[(62, 1)]])))

    older, newer = asyncio.run(both())
    assert older.status == "superseded" and older.accompaniment == []
    assert newer.status == "ok" and len(newer.accompaniment) == 2
    assert driver.core.sessions[sid].fed_until == 2  # the superseded chunk (tick 0) was kept
    assert driver.core.batch_sizes == [1]


def test_many_sessions_run_in_one_batch(engine):
    seeds = [1, 2, 3]
    batched = RealtimeDriver(SessionCore(engine, CoreOptions(max_wait_ms=50)))
    ids = [batched.create(CreateSessionRequest(seed=s)).session_id for s in seeds]

    async def together():
        return await asyncio.gather(*(batched.infer(i, _req(3)) for i in ids))

    out = asyncio.run(together())
    assert batched.core.batch_sizes == [3]
    single = SessionCore(engine, CoreOptions(max_batch_size=1))
    alone = [run_now(single, single.create(CreateSessionRequest(seed=s)).session_id, _req(3)) for s in seeds]
    assert single.batch_sizes == [1, 1, 1]
    assert [r.accompaniment for r in out] == [r.accompaniment for r in alone]
    assert all(r.status == "ok" and len(r.accompaniment) == 2 for r in out + alone)


def test_ttl_expiry_and_admission(engine):
    core = SessionCore(engine, CoreOptions(session_ttl_s=10.0, max_sessions=2))
    ids = [core.create(CreateSessionRequest(seed=s)).session_id for s in range(3)]
    for i in ids[:2]:  # no engine call needed: state is made on first use
        core._session_for(i, InferRequest(request_tick=0, gen_len=1), now_s=100.0)
    # A third session is refused, not made by evicting a live one.
    with pytest.raises(ApiError) as err:
        core._session_for(ids[2], InferRequest(request_tick=0, gen_len=1), now_s=101.0)
    assert (err.value.status, err.value.code) == (503, "overloaded") and list(core.sessions) == ids[:2]
    assert core.expire(105.0) == 0
    assert core.expire(110.5) == 2 and not core.sessions
    # Expired, so a request that needs history is an unknown session; a fresh one is admitted.
    with pytest.raises(ApiError) as err:
        core.submit(ids[0], InferRequest(request_tick=4, gen_len=1, melody=[[]]), now_s=111.0)
    assert (err.value.status, err.value.code) == (404, "unknown_session")
    core._session_for(ids[2], InferRequest(request_tick=0, gen_len=1), now_s=111.0)


def test_an_engine_that_raises_answers_every_request_and_the_batcher_survives(engine):
    class Broken:
        model_id, device = "broken", "cpu"

        def __init__(self):
            self.calls = 0

        def new_session(self, sampling):
            return engine.new_session(sampling)

        def infer_batch(self, items):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")  # our bug, not the user's: not a StreamMuseError
            return engine.infer_batch(items)

    driver = RealtimeDriver(SessionCore(Broken(), CoreOptions(max_wait_ms=30)))
    ids = [driver.create(CreateSessionRequest(seed=s)).session_id for s in (1, 2)]

    async def run():
        first = await asyncio.gather(*(driver.infer(i, _req(2)) for i in ids), return_exceptions=True)
        # The sessions were dropped: a retry without context needs history -> 404 ...
        again = await asyncio.gather(driver.infer(ids[0], InferRequest(request_tick=4, gen_len=1, melody=[[]])),
                                     return_exceptions=True)
        # ... and a fresh session on the same driver is served: the batcher lives on.
        fresh = await driver.infer(driver.create(CreateSessionRequest(seed=3)).session_id, _req(2))
        return first, again, fresh

    first, again, fresh = asyncio.run(asyncio.wait_for(run(), 30))
    assert [(e.status, e.code) for e in first] == [(500, "internal_error")] * 2
    assert again[0].code == "unknown_session"
    assert fresh.status == "ok"


def test_rebuild_during_a_running_batch_is_serialised(engine):
    """Issue 13's race: a context rebuild arriving while the session's previous request
    is being computed is applied after that batch, never under it."""
    driver = RealtimeDriver(SessionCore(engine, CoreOptions(max_wait_ms=0)))
    sid = driver.create(CreateSessionRequest(seed=9)).session_id
    rebuild = InferRequest(request_tick=6, gen_len=32, context={"melody": [[]] * 6, "accompaniment": [[]] * 6})

    async def run():
        first = asyncio.ensure_future(driver.infer(sid, InferRequest(request_tick=2, melody=[[], []], gen_len=32)))
        await asyncio.sleep(0.01)
        second = await driver.infer(sid, rebuild)
        return await first, second

    first, second = asyncio.run(asyncio.wait_for(run(), 30))
    assert first.status == "ok" and second.status == "ok" and len(second.accompaniment) == 32


def test_session_id_carries_its_settings_and_is_signed():
    ids = SessionIds("deployment-secret")
    request = CreateSessionRequest(bpm=96.0, seed=7)
    issued = ids.encode(request)
    assert ids.decode(issued) == request
    # Another replica of the same deployment (same secret) accepts it ...
    assert SessionIds("deployment-secret").decode(issued) == request
    # ... an edited settings half, a forged id or another deployment's id is unknown.
    random_part, settings, signature = issued.split(".")
    edited = CreateSessionRequest(bpm=96.0, seed=8).model_dump_json().encode()
    import base64

    forged = f"{random_part}.{base64.urlsafe_b64encode(edited).rstrip(b'=').decode()}.{signature}"
    for bad in (forged, "A" * 22 + ".!!notbase64.x", "A" * 22 + "." + settings + "." + signature):
        with pytest.raises(ApiError) as err:
            ids.decode(bad)
        assert err.value.code == "unknown_session"
    with pytest.raises(ApiError):
        SessionIds("other-deployment").decode(issued)


def test_local_socket_server_round_trip():
    server = start_server("local", random_weights=True)
    transport = HttpTransport(server.url)
    try:
        sid = transport.create_session(CreateSessionRequest(seed=5)).session_id
        answer = transport.infer(sid, _req(2, gl=3))
        assert answer.status == "ok" and answer.request_tick == 2 and len(answer.accompaniment) == 3
        with pytest.raises(UnknownSession):
            other = transport.create_session(CreateSessionRequest(seed=6)).session_id
            transport.infer(other, InferRequest(request_tick=40, gen_len=1, melody=[[]]))  # needs history
        transport.close_session(sid)
        with pytest.raises(UnknownSession):
            transport.infer(sid, _req(3))
    finally:
        server.stop()
    with pytest.raises(ServerUnavailable):
        transport.infer(sid, _req(3))
    transport.close()


def test_junk_deletes_cannot_flush_the_closed_ids(engine):
    from streammuse.core import admission as sessions

    core = SessionCore(engine)
    sid = core.create(CreateSessionRequest(seed=1)).session_id
    core.close(sid)
    for k in range(sessions.MAX_TOMBSTONES + 1):
        core.close(f"junk-{k}")
    assert list(core.closed) == [sid]
    with pytest.raises(ApiError) as err:
        core.submit(sid, InferRequest(request_tick=0, gen_len=1), now_s=0.0)
    assert err.value.code == "unknown_session"  # a closed session is not revived


def test_one_clients_deletes_cannot_flush_anothers_closed_ids(engine):
    from streammuse.core import admission

    core = SessionCore(engine)
    theirs = core.create(CreateSessionRequest(seed=1)).session_id
    core.close(theirs, client="10.0.0.2")
    for _ in range(admission.MAX_TOMBSTONES_PER_CLIENT + 5):  # valid ids, mass-closed by one client
        core.close(core.create(CreateSessionRequest(seed=2)).session_id, client="10.0.0.1")
    assert theirs in core.closed and len(core.closed) == admission.MAX_TOMBSTONES_PER_CLIENT + 1
    with pytest.raises(ApiError) as err:
        core.submit(theirs, InferRequest(request_tick=0, gen_len=1), now_s=0.0, client="10.0.0.2")
    assert err.value.code == "unknown_session"
