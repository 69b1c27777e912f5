"""Overload (issue 13): N sessions offered at once to one CPU replica, I = 1, GL = 3, 120 BPM.

The replica (the Serve app on a local Ray instance, ``num_cpus`` 1) measures its own
capacity at start (serving/capacity.py) and refuses sessions past it with 503. Each of
the N clients (asyncio, one process) opens a session and sends one request per tick (tau =
125 ms) with the tick's melody frame, without waiting for earlier answers (as the wall
client does; the server supersedes stale ones); a tick is *played* when an answer
covering it (s .. s+GL-1) arrived before its onset.
Prints one JSON object:

* ``capacity``: the replica's figure (``GET /v1/model``'s ``max_sessions``);
* admitted sessions: their share of ticks played (min, median), the longest wait for an
  answer (ms) and its p95;
* refused sessions: how many, and the latency of their 503 (max, ms);
* replica memory (RSS, MB) before the load and after it.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/overload.py --sessions 16 --seconds 20``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import numpy as np

from streammuse.contract import tau_ms

GEN_LEN, BPM = 3, 120.0
TAU_S = tau_ms(BPM) / 1000


class Client:
    """One session: a request per tick, sent at the tick before it without waiting for
    earlier answers (as the wall client does; the server supersedes stale ones)."""

    def __init__(self, http: httpx.AsyncClient, sid: str) -> None:
        self.http, self.sid = http, sid
        self.waits_ms: list[float] = []
        self.covered: set[int] = set()
        self.refused_ms: float | None = None
        self.ok = 0
        self.ticks = 0

    async def one(self, tick: int, start: float) -> None:
        body = {"request_tick": tick, "gen_len": GEN_LEN, "melody": [[[60 + tick % 12, 1]]], "melody_start": tick - 1}
        sent = time.perf_counter()
        r = await self.http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={"x-session-id": self.sid})
        arrived = time.perf_counter()
        if r.status_code in (429, 503):
            if self.refused_ms is None:
                self.refused_ms = (arrived - sent) * 1000
            return
        self.waits_ms.append((arrived - sent) * 1000)
        if r.status_code == 200 and r.json()["status"] == "ok":
            self.ok += 1
            # tick t's onset is start + t * tau: it plays if the answer came before it
            self.covered.update(t for t in range(tick, tick + GEN_LEN) if arrived <= start + t * TAU_S)

    async def run(self, start: float, seconds: float) -> None:
        self.ticks, tasks = int(seconds / TAU_S), []
        for tick in range(1, self.ticks + 1):
            await asyncio.sleep(max(0.0, start + (tick - 1) * TAU_S - time.perf_counter()))
            if self.refused_ms is not None and not self.ok:
                break  # refused: this session never started
            tasks.append(asyncio.create_task(self.one(tick, start)))
        await asyncio.gather(*tasks)

    @property
    def admitted(self) -> bool:
        """The replica took the session (any answer but a refusal)."""
        return bool(self.ok) or self.refused_ms is None


def replica_rss_mb() -> float:
    """Resident memory of the Serve replica's process(es), MB."""
    import psutil

    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("ServeReplica" in part for part in (proc.info["cmdline"] or [])):
            total += proc.memory_info().rss
    return total / 2**20


def offer(url: str, n: int, seconds: float) -> dict:
    """N clients at once; the figures of module docstring."""

    async def go() -> list[Client]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
            sids = [(await http.post("/v1/sessions", json={"seed": k, "bpm": BPM})).json()["session_id"] for k in range(n)]
            clients = [Client(http, sid) for sid in sids]
            start = time.perf_counter() + 0.5
            await asyncio.gather(*(c.run(start, seconds) for c in clients))
            return clients

    clients = asyncio.run(go())
    admitted = [c for c in clients if c.admitted]
    refused = [c for c in clients if not c.admitted]
    shares = [len([t for t in c.covered if t <= c.ticks]) / max(1, c.ticks) for c in admitted]
    waits = np.concatenate([c.waits_ms for c in admitted]) if admitted else np.zeros(1)
    return {"offered": n, "admitted": len(admitted), "refused": len(refused),
            "tick_share_min": round(min(shares), 4) if shares else None,
            "tick_share_median": round(float(np.median(shares)), 4) if shares else None,
            "wait_max_ms": round(float(waits.max()), 1), "wait_p95_ms": round(float(np.percentile(waits, 95)), 1),
            "refusal_max_ms": round(max(c.refused_ms for c in refused), 1) if refused else None}


def main() -> None:
    from streammuse.serving.raylocal import start_local, stop_local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    args = parser.parse_args()
    url = start_local({"min_replicas": 1, "max_replicas": 1, "num_cpus": 1, "random_weights": args.random_weights,
                       "max_sessions": 0, "max_sessions_per_client": 0, "plan_bpm": BPM, "plan_interval": 1,
                       "plan_gen_len": GEN_LEN})
    try:
        capacity = httpx.get(f"{url}/v1/model", timeout=30).json()["max_sessions"]
        before = replica_rss_mb()
        figures = offer(url, args.sessions, args.seconds)
        after = replica_rss_mb()
    finally:
        stop_local()
    print(json.dumps({"capacity": capacity, **figures, "rss_mb_before": round(before), "rss_mb_after": round(after),
                      "tau_ms": tau_ms(BPM), "seconds": args.seconds}))


if __name__ == "__main__":
    main()
