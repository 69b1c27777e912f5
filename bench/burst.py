"""Bursts and refusals (issue 31): 16 sessions created together against one CPU replica,
then the admitted ones play (I = 1, GL = 3, 120 BPM) while new sessions keep asking.

The client here is written from the README's API section with httpx alone (not the
project's SongClient, nor ``serving/path_probe.py``), so that what it measures is what
any client meets:

1. the replica is started as ``streammuse serve`` starts it (``cli.serve.start_sized``:
   its capacity N measured through its app, then through the whole HTTP path), unless
   ``--max-sessions`` is given;
2. ``--sessions`` creates are sent at once; each answer is timed and must be 200, or a
   503 / 429 with ``{code, detail}`` and Retry-After;
3. each admitted session plays for ``--seconds``: the request for ticks s .. s+GL-1 is
   sent at the onset of tick s-1 carrying melody frame s-1 (the first, s = 1, at the
   onset of tick 0 with frame 0), without waiting for earlier answers; tick t counts as
   played when an answer covering it arrived before the onset of t. Every tick from 1
   on is judged, the session's first ones included;
4. meanwhile one more create every ``--refusal-every`` seconds (the replica is full:
   each should be a coded 503) times the refusals while the replica serves its capacity;
5. every 4xx / 5xx of the run is checked for ``{code, detail}`` JSON (Ray's proxy
   answers its own backpressure in plain text); the replica's memory is sampled.

Prints one JSON object. Run (as measured, see the README's benchmark table):

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/burst.py --sessions 16 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import httpx
import numpy as np
from overload import replica_rss_mb  # bench/overload.py (this script's folder is on sys.path)

GEN_LEN, INTERVAL, BPM = 3, 1, 120.0
TAU_S = 60.0 / (4 * BPM)


class Tally:
    """Every answer of the run: statuses, and those outside the contract."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}
        self.uncoded: list[str] = []  # 4xx / 5xx without {code, detail} JSON

    def see(self, what: str, r: httpx.Response) -> None:
        key = f"{what} {r.status_code}"
        if r.status_code >= 400:
            try:
                body = r.json()
                coded = isinstance(body, dict) and set(body) == {"code", "detail"}
            except ValueError:
                coded = False
            if not coded:
                self.uncoded.append(f"{what} {r.status_code} {r.text[:100]!r}")
                key += " plain"
            else:
                key += f" {body['code']}"
                if r.status_code in (429, 503) and "retry-after" not in r.headers:
                    self.uncoded.append(f"{what} {r.status_code} without Retry-After")
        self.statuses[key] = self.statuses.get(key, 0) + 1


def melody(t: int) -> list:
    """Melody frame t: one note per tick."""
    return [[60 + (t * 5) % 12, 1]]


class Song:
    """One admitted session playing in real time."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.played: set[int] = set()
        self.waits_ms: list[float] = []
        self.first_wait_ms: float | None = None
        self.ticks = 0

    async def one(self, http: httpx.AsyncClient, tally: Tally, s: int, start: float) -> None:
        body = {"request_tick": s, "gen_len": GEN_LEN, "melody": [melody(s - 1)], "melody_start": s - 1}
        sent = time.perf_counter()
        try:
            r = await http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={"x-session-id": self.sid})
        except httpx.HTTPError as exc:
            tally.statuses[f"infer {type(exc).__name__}"] = tally.statuses.get(f"infer {type(exc).__name__}", 0) + 1
            return
        arrived = time.perf_counter()
        tally.see("infer", r)
        wait = (arrived - sent) * 1000
        self.waits_ms.append(wait)
        if s == 1:
            self.first_wait_ms = wait
        if r.status_code == 200 and r.json()["status"] == "ok":
            self.played.update(t for t in range(s, s + GEN_LEN) if arrived <= start + t * TAU_S)

    async def play(self, http: httpx.AsyncClient, tally: Tally, start: float, seconds: float) -> None:
        self.ticks = int(seconds / TAU_S)
        tasks = []
        for s in range(1, self.ticks + 1, INTERVAL):
            await asyncio.sleep(max(0.0, start + (s - 1) * TAU_S - time.perf_counter()))
            tasks.append(asyncio.create_task(self.one(http, tally, s, start)))
        await asyncio.gather(*tasks)

    @property
    def share(self) -> float:
        return len([t for t in self.played if 1 <= t <= self.ticks]) / max(1, self.ticks)


async def create(http: httpx.AsyncClient, tally: Tally, seed: int) -> tuple[httpx.Response, float]:
    sent = time.perf_counter()
    r = await http.post("/v1/sessions", json={"bpm": BPM, "seed": seed})
    took = (time.perf_counter() - sent) * 1000
    tally.see("create", r)
    return r, took


async def refusals(http: httpx.AsyncClient, tally: Tally, until: float, every_s: float, into: list[float]) -> None:
    """A new session every ``every_s`` until ``until``: the refusal latencies (a full replica)."""
    seed = 1000
    while time.perf_counter() < until:
        r, took = await create(http, tally, seed)
        seed += 1
        if r.status_code in (429, 503):
            into.append(took)
        elif r.status_code == 200:  # room after all: give it back
            await http.delete(f"/v1/sessions/{r.json()['session_id']}")
        await asyncio.sleep(every_s)


async def run(url: str, n: int, seconds: float, every_s: float) -> dict:
    tally = Tally()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
        capacity = (await http.get("/v1/model")).json()["max_sessions"]
        created = await asyncio.gather(*(create(http, tally, k) for k in range(n)))
        songs = [Song(r.json()["session_id"]) for r, _ in created if r.status_code == 200]
        start = time.perf_counter() + TAU_S  # tick 0 starts a tick after the creates came back
        latencies: list[float] = []
        rss = [round(replica_rss_mb())]

        async def sample() -> None:
            while time.perf_counter() < start + seconds:
                await asyncio.sleep(seconds / 10)
                rss.append(round(replica_rss_mb()))

        await asyncio.gather(*(song.play(http, tally, start, seconds) for song in songs),
                             refusals(http, tally, start + seconds, every_s, latencies), sample())
        for song in songs:
            r = await http.delete(f"/v1/sessions/{song.sid}", headers={"x-session-id": song.sid})
            tally.see("delete", r)
        probe = await http.get("/healthz")
        tally.see("healthz", probe)
    create_ms = [took for _, took in created]
    waits = np.array([w for song in songs for w in song.waits_ms] or [0.0])
    return {
        "capacity": capacity, "offered": n, "admitted": len(songs),
        "create_status": sorted({r.status_code for r, _ in created}),
        "create_max_ms": round(max(create_ms), 1), "create_p50_ms": round(float(np.median(create_ms)), 1),
        "creates_within_100ms": sum(1 for t in create_ms if t <= 100.0),
        "tick_share": [round(song.share, 4) for song in songs],
        "first_request_ms": [round(song.first_wait_ms or -1, 1) for song in songs],
        "missed_ticks": [sorted(set(range(1, song.ticks + 1)) - song.played)[:12] for song in songs],
        "answer_p50_ms": round(float(np.median(waits)), 1), "answer_p95_ms": round(float(np.percentile(waits, 95)), 1),
        "answer_max_ms": round(float(waits.max()), 1),
        "refusals": len(latencies),
        "refusal_p50_ms": round(float(np.median(latencies)), 1) if latencies else None,
        "refusal_p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
        "refusal_max_ms": round(max(latencies), 1) if latencies else None,
        "uncoded": tally.uncoded[:10], "uncoded_count": len(tally.uncoded), "statuses": tally.statuses,
        "rss_mb": rss, "seconds": seconds, "tau_ms": TAU_S * 1000,
    }


def main() -> None:
    from streammuse.cli.serve import start_sized
    from streammuse.serving.app import DeployOptions
    from streammuse.serving.raylocal import stop_local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--refusal-every", type=float, default=0.25, help="seconds between refusal probes")
    parser.add_argument("--max-sessions", type=int, default=0, help="0: measured as `serve` measures it")
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    args = parser.parse_args()
    options = DeployOptions(min_replicas=1, max_replicas=1, num_cpus=1, random_weights=args.random_weights,
                            max_sessions=args.max_sessions, plan_bpm=BPM, plan_interval=INTERVAL, plan_gen_len=GEN_LEN)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = os.getloadavg()[0]
    url = start_sized(options, None, "127.0.0.1")
    try:
        figures = asyncio.run(run(url, args.sessions, args.seconds, args.refusal_every))
    finally:
        stop_local()
    print(json.dumps({"started": started, "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                      **figures}))


if __name__ == "__main__":
    main()
