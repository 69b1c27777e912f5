"""One session core, every path: the same scripted requests get the same answers through
the sim clock (virtual driver, direct and through the HTTP app), the in-process
transport, the HTTP app on a real-time driver, and the Local socket server."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from streammuse.client.transports import (
    AsgiFront,
    CoreFront,
    HttpTransport,
    InProcessTransport,
    UnknownSession,
    raise_for,
)
from streammuse.contract import CreateSessionRequest, InferRequest, InferResponse
from streammuse.core.drivers import RealtimeDriver, VirtualDriver
from streammuse.core.sessions import SessionCore
from streammuse.model.engine import StreamingEngine
from streammuse.serving.app import create_app
from streammuse.serving.embedded import start_server


def _frame(t: int) -> list:
    return [[60 + t % 7, 1]] if t % 3 else []


def _chunk(start: int, stop: int) -> list:
    return [_frame(t) for t in range(start, stop)]


# (request, what it exercises). Every path must answer each one the same way.
SCRIPT = [
    (InferRequest(request_tick=2, gen_len=3, melody=_chunk(0, 2), melody_start=0), "first request"),
    (InferRequest(request_tick=4, gen_len=3, melody=_chunk(2, 4), melody_start=2), "steady state"),
    (InferRequest(request_tick=8, gen_len=4, melody=_chunk(6, 8), melody_start=6), "gap: ticks 4, 5 never sent"),
    (InferRequest(request_tick=6, gen_len=2, melody=_chunk(4, 6), melody_start=4), "older than the last run: superseded"),
    (InferRequest(request_tick=12, gen_len=3, melody=[], melody_start=12,
                  context={"melody": _chunk(0, 12), "accompaniment": [[[48, 2]]] * 12}), "rebuild from context"),
    (InferRequest(request_tick=14, gen_len=2, melody=_chunk(12, 14), melody_start=12), "after the rebuild"),
]
NEEDS_HISTORY = InferRequest(request_tick=9, gen_len=1, melody=_chunk(5, 9), melody_start=5)
SETTINGS = CreateSessionRequest(bpm=120.0, seed=11)


def _answer(call) -> tuple:
    """(status, accompaniment) of a response, or ("error", code) of a refusal."""
    try:
        response: InferResponse = call()
    except UnknownSession:
        return ("error", "unknown_session")
    return (response.status, response.accompaniment)


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine.random("tiny", seed=0)


def _blocking(transport) -> list[tuple]:
    sid = transport.create_session(SETTINGS).session_id
    out = [_answer(lambda r=r: transport.infer(sid, r)) for r, _ in SCRIPT]
    other = transport.create_session(SETTINGS).session_id
    return out + [_answer(lambda: transport.infer(other, NEEDS_HISTORY))]


def _virtual(engine, http: bool) -> list[tuple]:
    """The sim clock's path: each request reaches the replica after the previous answer,
    the virtual replica advancing its clock between them."""
    driver = VirtualDriver(SessionCore(engine), lambda batch: 5.0)
    front = AsgiFront(create_app(driver)) if http else CoreFront(driver)

    async def run() -> list[tuple]:
        sid = (await front.create_session(SETTINGS)).session_id
        out = []
        for request, _ in [*SCRIPT, (NEEDS_HISTORY, "")]:
            if request is NEEDS_HISTORY:
                sid = (await front.create_session(SETTINGS)).session_id
            task = asyncio.ensure_future(front.infer(sid, request))
            while not task.done():
                await asyncio.sleep(0)
                at = driver.next_event_s()
                if at is not None:
                    driver.advance(at)
            try:
                response = task.result()
                out.append((response.status, response.accompaniment))
            except UnknownSession:
                out.append(("error", "unknown_session"))
        return out

    return asyncio.run(run())


class _TestClientTransport:
    """The HTTP app on its real-time driver through FastAPI's TestClient."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def create_session(self, request):
        from streammuse.contract import CreateSessionResponse

        return CreateSessionResponse.model_validate(self.client.post("/v1/sessions", json=request.model_dump()).json())

    def infer(self, sid, request):
        r = self.client.post(f"/v1/sessions/{sid}/infer", json=request.model_dump(exclude_none=True),
                             headers={"x-session-id": sid})
        raise_for(r.status_code, r.json())
        return InferResponse.model_validate(r.json())


def test_every_path_answers_the_script_identically(engine):
    in_process = _blocking(InProcessTransport(SessionCore(engine)))
    with TestClient(create_app(RealtimeDriver(SessionCore(engine)))) as client:
        http_realtime = _blocking(_TestClientTransport(client))
    sim_direct = _virtual(engine, http=False)
    sim_http = _virtual(engine, http=True)
    server = start_server("local", random_weights=True)  # its own engine: random tiny, seed 0
    try:
        local_socket = _blocking(HttpTransport(server.url))
    finally:
        server.stop()

    statuses = [a[0] for a in in_process]
    assert statuses == ["ok", "ok", "ok", "superseded", "ok", "ok", "error"]
    assert in_process[-1] == ("error", "unknown_session")
    assert [len(a[1]) for a in in_process[:3]] == [3, 3, 4]
    for name, got in [("http app", http_realtime), ("sim clock", sim_direct), ("sim clock via http", sim_http),
                      ("local socket", local_socket)]:
        assert got == in_process, name
