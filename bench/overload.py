"""Overload (issue 13): N sessions offered at once to one CPU replica, I = 1, GL = 3, 120 BPM.

The replica (the Serve app on a local Ray instance, ``num_cpus`` 1) measures its own
capacity at start (serving/capacity.py) and refuses sessions past it with 503. Each of
the N clients is a thread that opens a session and sends one request per tick (tau =
125 ms), the tick's melody frame, waiting for each answer (HTTP, one request in flight);
a tick is *played* when an answer covering it (s .. s+GL-1) arrived before its onset.
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
import json
import threading
import time

import httpx
import numpy as np

from streammuse.contract import tau_ms

GEN_LEN, BPM = 3, 120.0
TAU_S = tau_ms(BPM) / 1000


class Client:
    """One session: a request per tick; what it played, how long it waited."""

    def __init__(self, url: str, seed: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=30.0)
        self.sid = self.http.post("/v1/sessions", json={"seed": seed, "bpm": BPM}).json()["session_id"]
        self.waits_ms: list[float] = []
        self.covered: set[int] = set()
        self.refused_ms: float | None = None
        self.ticks = 0

    def run(self, start: float, seconds: float) -> None:
        tick = 1
        while time.perf_counter() - start < seconds:
            body = {"request_tick": tick, "gen_len": GEN_LEN, "melody": [[[60 + tick % 12, 1]]],
                    "melody_start": tick - 1}
            sent = time.perf_counter()
            r = self.http.post(f"/v1/sessions/{self.sid}/infer", json=body, headers={"x-session-id": self.sid})
            arrived = time.perf_counter()
            if r.status_code in (429, 503) and tick == 1:
                self.refused_ms = (arrived - sent) * 1000
                return
            self.waits_ms.append((arrived - sent) * 1000)
            if r.status_code == 200 and r.json()["status"] == "ok":
                # tick t's onset is start + t * tau: it plays if the answer came before it
                self.covered.update(t for t in range(tick, tick + GEN_LEN) if arrived <= start + t * TAU_S)
            tick = max(tick + 1, int((time.perf_counter() - start) / TAU_S) + 1)  # skip ticks already past
            time.sleep(max(0.0, start + (tick - 1) * TAU_S - time.perf_counter()))
        self.ticks = int(seconds / TAU_S)


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
    clients = [Client(url, seed) for seed in range(n)]
    start = time.perf_counter() + 0.5
    threads = [threading.Thread(target=c.run, args=(start, seconds)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = [c for c in clients if c.refused_ms is None]
    refused = [c for c in clients if c.refused_ms is not None]
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
