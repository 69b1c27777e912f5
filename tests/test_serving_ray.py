"""Integration: the Serve app on a local Ray instance with 2 replicas; a replica dies and
its session is rebuilt from the context the client holds, and the song goes on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray

from streammuse.core.session_ids import routing_tag
from streammuse.serving.raylocal import redeploy, start_local, stop_local
from streammuse.serving.router import ranks_for_create

# A fixed capacity: measured on a loaded test machine it can read 1, and the rebuilt
# session would then be refused (503) by the surviving replica.
OPTIONS = {"min_replicas": 2, "max_replicas": 2, "random_weights": True, "num_cpus": 0.5, "max_sessions": 8}


@pytest.fixture(scope="module")
def url():
    base = start_local(OPTIONS, num_cpus=2)
    yield base
    stop_local()


class Song:
    """A client: sends one melody frame per tick and keeps what it played, for context."""

    def __init__(self, url: str, seed: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=60.0)
        self.id = self.http.post("/v1/sessions", json={"seed": seed}).json()["session_id"]
        self.melody: list = []
        self.played: list = []
        self.rebuilds = 0
        self.replica = ""

    def step(self, with_context: bool = False) -> httpx.Response:
        s = len(self.melody) + 1
        self.melody.append([[60 + s % 7, 1]])
        body = {"request_tick": s, "gen_len": 2, "melody": self.melody[-1:]}
        if with_context:
            body = {"request_tick": s, "gen_len": 2, "context": {"melody": self.melody, "accompaniment": self.played + [[]]}}
        r = self.http.post(f"/v1/sessions/{self.id}/infer", json=body, headers={"x-session-id": self.id})
        if r.status_code == 200:
            self.played.append(r.json()["accompaniment"][0])
            self.replica = r.headers["x-streammuse-replica"]
        else:
            self.melody.pop()
        return r

    def step_rebuilding(self) -> str:
        """One tick; on unknown_session re-send the context (the client's side of affinity)."""
        deadline = time.monotonic() + 60
        while True:
            r = self.step()
            if r.status_code == 404 and r.json()["code"] == "unknown_session":
                self.rebuilds += 1
                r = self.step(with_context=True)
            if r.status_code == 200 or time.monotonic() > deadline:
                return r.json()["status"] if r.status_code == 200 else f"{r.status_code}"
            time.sleep(0.5)  # the dying replica's requests fail until the router drops it


def test_a_killed_replica_session_rebuilds_from_context(url):
    songs = [Song(url, seed=1), Song(url, seed=2)]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            assert list(pool.map(lambda song: song.step().json()["status"], songs)) == ["ok", "ok"]
    for song in songs:  # affinity: every request of a session reached one replica, the one its id names
        first = song.replica
        assert song.step().status_code == 200 and song.replica == first
        assert first.endswith(f"#{routing_tag(song.id)}")
    victim = songs[0].replica
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    killed = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(Song.step_rebuilding, songs)) == ["ok", "ok"]
        # Issue 13: the router drops the dead replica from its ring as soon as it sees it
        # died (serving/router.py), so the victim's session is rebuilt elsewhere within a
        # bar; Ray's own ring waits for the controller and held its requests for 6-10 s.
        assert time.monotonic() - killed < 2.0
        assert list(pool.map(Song.step_rebuilding, songs)) == ["ok", "ok"]
    assert songs[0].rebuilds >= 1 and songs[0].replica != victim
    assert [len(s.played) for s in songs] == [5, 5]


def test_the_jam_page_is_served_through_ray_serve(url):
    """`streammuse jam --server URL` opens URL/jam/: the Serve ingress serves the page too."""
    page = httpx.get(f"{url}/jam/", timeout=30.0)
    assert page.status_code == 200 and 'src="static/jam.js"' in page.text
    assert "text/javascript" in httpx.get(f"{url}/jam/static/client.js", timeout=30.0).headers["content-type"]
    assert httpx.get(f"{url}/jam/config.json", timeout=30.0).json()["takes"] is False  # replicas keep no takes


def test_creates_are_ranked_by_the_room_replicas_report():
    class Replica:  # what the router reads of a replica: the routing stats it last reported
        def __init__(self, name: str, stats: dict) -> None:
            self.name, self.routing_stats = name, stats

    full, a, b, unreported = Replica("full", {"room": 0}), Replica("a", {"room": 3}), Replica("b", {"room": 3}), Replica("new", {})
    ranks = ranks_for_create([full, a, b, unreported])
    assert [[r.name for r in rank] for rank in ranks] == [["a", "b"], ["new"], ["full"]]


def test_a_create_lands_where_there_is_room(url):
    """Issue 31: with one session of room per replica, the second create goes to the
    replica that has room (creates carry no session id: Ray's ring would draw a replica
    at random), and the third, with none left, is refused at create."""
    redeploy({**OPTIONS, "max_sessions": 1, "max_sessions_per_client": 0}, url)
    http = httpx.Client(base_url=url, timeout=60.0)
    replicas = []
    for _ in range(2):
        time.sleep(2.5)  # the replicas' room reaches the router about every second
        r = http.post("/v1/sessions", json={})
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        played = http.post(f"/v1/sessions/{sid}/infer", json={"request_tick": 0, "gen_len": 1}, headers={"x-session-id": sid})
        assert played.status_code == 200
        replicas.append(played.headers["x-streammuse-replica"])
        assert replicas[-1].endswith(f"#{routing_tag(sid)}")
    assert replicas[0] != replicas[1]
    time.sleep(2.5)
    full = http.post("/v1/sessions", json={})
    assert full.status_code == 503 and full.json()["code"] == "overloaded"
