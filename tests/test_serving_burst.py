"""Bursts keep the contract through Ray Serve (issue 31): one small replica (N = 1) met by
creates, first infers, deletes and health probes sent together; every answer is the
app's own (a 4xx / 5xx is ``{code, detail}`` JSON), never the proxy's plain text."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from streammuse.serving.raylocal import redeploy, start_local, stop_local

OPTIONS = {"min_replicas": 1, "max_replicas": 1, "random_weights": True, "num_cpus": 0.5, "max_sessions": 1,
           "max_sessions_per_client": 0}
BURST = 48


@pytest.fixture(scope="module")
def url():
    base = start_local(OPTIONS, num_cpus=2)
    yield base
    stop_local()


def _burst(url: str) -> tuple[list[httpx.Response], str]:
    """Open one session, then send BURST creates, BURST // 4 health probes, deletes of
    junk ids and infers of the admitted session, all at once; every answer, and the id."""

    async def go():
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
        async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
            first = await http.post("/v1/sessions", json={"seed": 0})
            assert first.status_code == 200, first.text
            sid = first.json()["session_id"]
            head = {"x-session-id": sid}
            calls = [http.post("/v1/sessions", json={"seed": k}) for k in range(1, BURST + 1)]
            calls += [http.get("/healthz", headers=head) for _ in range(BURST // 4)]
            calls += [http.delete(f"/v1/sessions/junk-{k}") for k in range(BURST // 4)]
            calls += [http.post(f"/v1/sessions/{sid}/infer", json={"request_tick": t, "gen_len": 3}, headers=head)
                      for t in (0, 0, 0, 0)]
            answers = list(await asyncio.gather(*calls))
            await http.delete(f"/v1/sessions/{sid}", headers=head)
            return answers, sid

    return asyncio.run(go())


def _plain(answers: list[httpx.Response]) -> list[str]:
    """The answers that are not the app's (no ``code`` in a JSON body)."""
    bad = []
    for r in answers:
        if r.status_code < 400:
            continue
        try:
            body = r.json()
        except ValueError:
            bad.append(f"{r.status_code} {r.text[:80]}")
            continue
        if set(body) != {"code", "detail"}:
            bad.append(f"{r.status_code} {r.text[:80]}")
    return bad


def test_a_burst_on_a_full_replica_gets_coded_answers_only(url):
    answers, _ = _burst(url)
    creates = answers[:BURST]
    assert {r.status_code for r in creates} == {503}  # the replica holds its one session
    assert all(r.json()["code"] == "overloaded" and r.headers["retry-after"] == "2" for r in creates)
    assert all(r.status_code == 200 for r in answers[BURST:BURST + BURST // 4])  # health
    assert all(r.status_code == 204 for r in answers[BURST + BURST // 4:BURST + BURST // 2])  # junk deletes
    infers = answers[BURST + BURST // 2:]
    assert all(r.status_code == 200 and r.json()["status"] in ("ok", "superseded") for r in infers)
    assert _plain(answers) == []


def test_the_old_queue_of_n_gave_the_proxys_plain_text(url):
    """The finding reproduced: with Ray's queue at N (the limits before issue 31), the
    same burst meets "Request dropped due to backpressure" in plain text; with the queue
    sized for bursts (the test above) it does not. The app is then restored."""
    redeploy({**OPTIONS, "max_queued_requests": 1}, url)
    try:
        answers, _ = _burst(url)
        plain = _plain(answers)
        assert plain and all("backpressure" in p for p in plain), plain[:3]
    finally:
        redeploy(OPTIONS, url)
