"""Sizing a deployment through its whole HTTP path (serving/path_probe.py): the search,
real sessions offered to a real server, and `serve`'s restart with the figure."""

from __future__ import annotations

import httpx
import pytest

from streammuse.serving.embedded import start_server
from streammuse.serving.path_probe import offer, plays_in_real_time, sessions_through_path, summary


@pytest.mark.parametrize("carried, upper, expected", [(5, 15, 5), (15, 15, 15), (0, 15, 1), (14, 15, 14), (1, 2, 1), (7, 8, 7)])
def test_the_search_finds_the_largest_count_that_fits(carried, upper, expected):
    asked = []

    def fits(n: int) -> bool:
        asked.append(n)
        return n <= carried

    n, tried = sessions_through_path(fits, upper)
    assert n == expected and tried == {k: k <= carried for k in asked}
    assert asked[0] == upper and len(asked) <= 1 + upper.bit_length()  # bisection, from the app-path figure


@pytest.fixture(scope="module")
def local_server():
    server = start_server("local", random_weights=True)
    yield server.url
    server.stop()


def test_offered_sessions_play_and_are_closed(local_server):
    # 20 BPM (tau 750 ms): the tiny model answers each request long before its tick.
    sessions = offer(local_server, 2, 3.0, bpm=20.0, interval=1, gen_len=3)
    figures = summary(sessions)
    assert [p.ticks for p in sessions] == [4, 4] and [p.tick_share for p in sessions] == [1.0, 1.0]
    # each entered with the history of a long session, staggered from (W - W/4) / 2 = 192 ticks
    # towards W / 2 = 256 (each window slides once, at its own time): one answer more each
    assert [p.context_ticks for p in sessions] == [192, 224]
    assert figures["admitted"] == 2 and figures["refused"] == 0 and figures["statuses"] == {"ok": 10}
    assert plays_in_real_time(sessions)
    # Closed afterwards: their ids are refused now (a closed session is never revived).
    with httpx.Client(transport=httpx.HTTPTransport(uds=local_server[len("unix://"):]), base_url="http://local") as http:
        r = http.post(f"/v1/sessions/{sessions[0].sid}/infer", json={"request_tick": 9, "gen_len": 1},
                      headers={"x-session-id": sessions[0].sid})
    assert r.status_code == 404 and r.json()["code"] == "unknown_session"


def test_sizing_offers_the_app_path_figure_first(local_server):
    from streammuse.serving.capacity import Plan
    from streammuse.serving.path_probe import size_through_path

    seen = {}
    n = size_through_path(local_server, Plan(bpm=20.0, interval=1, gen_len=3), 3, lambda k, f: seen.update({k: f}),
                          seconds=1.5)
    assert n == 3 and list(seen) == [3]  # three sessions at 20 BPM fit: one offer, no bisection
    assert seen[3]["admitted"] == 3 and seen[3]["tick_share_min"] == 1.0


def test_serve_sizes_through_the_path_and_restarts_with_the_figure():
    from streammuse.cli.serve import start_sized
    from streammuse.serving.app import DeployOptions
    from streammuse.serving.raylocal import stop_local

    # max_batch_size 2 bounds the app-path figure at 2; at 20 BPM two sessions play every tick.
    options = DeployOptions(min_replicas=1, max_replicas=1, num_cpus=0.5, random_weights=True, max_sessions=0,
                            max_batch_size=2, plan_bpm=20.0, plan_interval=1, plan_gen_len=3)
    url = start_sized(options, None, "127.0.0.1")
    try:
        assert options.max_sessions == 2 and options.max_sessions_per_client is None  # the user's bound, back
        assert httpx.get(f"{url}/v1/model", timeout=30).json()["max_sessions"] == 2
        figures = summary(offer(url, 3, 1.5, bpm=20.0, interval=1, gen_len=3))
        assert (figures["admitted"], figures["refused"]) == (2, 1)  # the restarted replica's admission
        assert figures["tick_share_min"] == 1.0
    finally:
        stop_local()
