"""Autoscaling at work (issue 13): load adds a replica and new sessions land on it.

The Serve app on a local Ray instance with ``--min-replicas 1 --max-replicas 2`` (one
CPU each), each replica carrying ``--max-sessions`` sessions (pinned: the measured
figure is too high on CPU, see README), scaled by the shipped session policy
(``serving/autoscaling.py``: ceil(demand / N) replicas, upscale after 2 s).
Sessions arrive one every ``--every`` seconds; each asks GL = 3 ticks every tick (I = 1,
120 BPM) without waiting for earlier answers, as the wall client does, and a refused
one (503 ``overloaded`` or 429) asks again after its ``Retry-After`` under a new session
id (the router places a session by its id). Every second the
script counts the running replicas; every answer names the replica that gave it
(``x-streammuse-replica``).

Prints a timeline (second, replicas running, sessions admitted, sessions waiting) and
one JSON object: when the second replica was running, which replica each session's
answers came from, and per session its share of ticks played once admitted.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/autoscale.py --sessions 6 --every 4 --seconds 60

Run it on an otherwise idle machine: it measures this machine's wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx

from streammuse.contract import SESSION_HEADER, tau_ms

BPM, INTERVAL, GEN_LEN = 120.0, 1, 3
TAU_S = tau_ms(BPM) / 1000


class Session:
    """One song: open a session (again after a refusal), then a request every tick."""

    def __init__(self, http: httpx.AsyncClient, seed: int) -> None:
        self.http, self.seed = http, seed
        self.sid: str | None = None
        self.admitted_at: float | None = None
        self.refusals = 0
        self.replicas: Counter[str] = Counter()
        self.ticks = 0
        self.played: set[int] = set()

    async def _ask(self, tick: int, start: float) -> bool:
        """One request for tick ``tick``; False when the replica refused the session."""
        body = {"request_tick": tick, "gen_len": GEN_LEN, "melody": [[[60 + tick % 12, 1]]], "melody_start": tick - 1}
        r = await self.http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={SESSION_HEADER: self.sid})
        arrived = time.perf_counter()
        if r.status_code in (429, 503):
            return False
        if r.status_code == 404:  # a replica that never held it (or a new one): re-send context
            body["context"] = {"melody": [[]] * tick, "accompaniment": [[]] * tick}
            r = await self.http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={SESSION_HEADER: self.sid})
            arrived = time.perf_counter()
        if r.status_code == 200 and r.json()["status"] == "ok":
            self.replicas[r.headers.get("x-streammuse-replica", "?")[-8:]] += 1
            self.played.update(t for t in range(tick, tick + GEN_LEN) if arrived <= start + t * TAU_S)
        return r.status_code != 503

    async def run(self, t0: float, arrive_s: float, end_s: float) -> None:
        """Arrive at ``t0 + arrive_s``; play (or wait to be admitted) until ``t0 + end_s``."""
        await asyncio.sleep(max(0.0, t0 + arrive_s - time.perf_counter()))
        while time.perf_counter() < t0 + end_s:
            # The create decides admission (issue 31) and goes to a replica with room; the
            # first request may still meet a full replica (one that held no room for it).
            created = await self.http.post("/v1/sessions", json={"seed": self.seed, "bpm": BPM})
            if created.status_code == 200:
                self.sid = created.json()["session_id"]
                if await self._ask(1, time.perf_counter()):
                    break
            self.refusals += 1
            await asyncio.sleep(2.0)  # the server's Retry-After
        else:
            return
        self.admitted_at = time.perf_counter() - t0
        start = time.perf_counter() - TAU_S  # tick t's onset is start + t * tau; tick 1 was the probe
        tasks, tick = [], 2
        while start + tick * TAU_S < t0 + end_s:
            await asyncio.sleep(max(0.0, start + (tick - 1) * TAU_S - time.perf_counter()))
            tasks.append(asyncio.create_task(self._ask(tick, start)))
            tick += 1
        self.ticks = tick - 2
        await asyncio.gather(*tasks, return_exceptions=True)


def running_replicas() -> int:
    """Serve replicas of the app that are RUNNING now."""
    from ray import serve

    status = serve.status()
    return sum(dep.replica_states.get("RUNNING", 0)
               for app in status.applications.values() for dep in app.deployments.values())


async def offer(url: str, n: int, every: float, seconds: float) -> tuple[list[Session], list[tuple]]:
    """Sessions arriving every ``every`` s; the timeline sampled each second."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
        sessions = [Session(http, k) for k in range(n)]
        t0 = time.perf_counter()
        runs = [asyncio.create_task(s.run(t0, k * every, seconds)) for k, s in enumerate(sessions)]
        timeline = []
        while not all(r.done() for r in runs):
            replicas = await asyncio.to_thread(running_replicas)
            now = time.perf_counter() - t0
            timeline.append((round(now), replicas, sum(s.admitted_at is not None for s in sessions),
                             sum(s.sid is not None and s.admitted_at is None for s in sessions)))
            await asyncio.sleep(1.0)
        return sessions, timeline


def main() -> None:
    from streammuse.serving.raylocal import start_local, stop_local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--every", type=float, default=4.0, help="seconds between arriving sessions")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-sessions", type=int, default=3, help="sessions per replica")
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    args = parser.parse_args()
    url = start_local({"min_replicas": 1, "max_replicas": 2, "num_cpus": 1, "random_weights": args.random_weights,
                       "max_sessions": args.max_sessions, "max_sessions_per_client": 0, "plan_bpm": BPM,
                       "plan_interval": INTERVAL, "plan_gen_len": GEN_LEN}, num_cpus=2)
    try:
        sessions, timeline = asyncio.run(offer(url, args.sessions, args.every, args.seconds))
    finally:
        stop_local()
    for second, replicas, admitted, waiting in timeline:
        print(f"t={second:3d}s replicas={replicas} admitted={admitted} waiting={waiting}")
    second_up = next((t for t, r, _, _ in timeline if r >= 2), None)
    print(json.dumps({
        "max_sessions_per_replica": args.max_sessions, "second_replica_running_at_s": second_up,
        "sessions": [{"arrived_s": k * args.every, "admitted_s": None if s.admitted_at is None else round(s.admitted_at, 1),
                      "refusals": s.refusals, "answers_by_replica": dict(s.replicas),
                      "ticks_played": round(len([t for t in s.played if 2 <= t <= s.ticks + 1]) / max(1, s.ticks), 3)}
                     for k, s in enumerate(sessions)]}, indent=1))


if __name__ == "__main__":
    main()
