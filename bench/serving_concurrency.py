"""N concurrent sessions at I=1, GL=3, 120 BPM against one CPU replica (issues 4 and 14).

Each session is a client thread that follows the client's schedule (``client/session.py``):
at the onset of tick t it sends the request for s = t + 1, carrying the melody frames
M[..t] the server has not seen, over HTTP to a local Ray Serve app with one replica. A
client thread waits for its answer before the next send; an onset that passed meanwhile
is skipped (the next request is for the tick now due). Tick t is played when a request
covering it (s in t-GL+1 .. t) came back before t's onset (tau = 125 ms at 120 BPM).
Prints median / p95 / p99 RTT and the share of ticks played per N, the cores the replica,
Ray's HTTP proxy and the client threads kept busy (CPU seconds / wall seconds, from
/proc), and the largest N with p95 RTT < tau and >= 99 % ticks played.

    PYTHONPATH=. .venv/bin/python bench/serving_concurrency.py [--sessions 4,8,12] [--seconds 10] [--batching on,off]
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from streammuse.client.transports import HttpTransport, UnknownSession
from streammuse.contract import CreateSessionRequest, InferRequest
from streammuse.serving.raylocal import start_local, stop_local

TAU_MS = 60_000 / 120 / 4  # one tick (1/16 note) at 120 BPM: 125 ms
GEN_LEN = 3
LEAD_IN = 4  # ticks at the start not counted (sessions are opening)


def run_session(url: str, seed: int, seconds: float, out: list) -> None:
    """One client for ``seconds``; appends ``(rtts ms, ticks played, ticks counted)`` to ``out``."""
    transport = HttpTransport(url)
    sid = transport.create_session(CreateSessionRequest(seed=seed)).session_id
    tau = TAU_MS / 1000
    start = time.perf_counter() + tau
    arrived: dict[int, float] = {}  # request tick s -> arrival (s after start)
    rtts, fed, t = [], 0, 0
    last = int(seconds / tau)
    while t < last:
        time.sleep(max(0.0, start + t * tau - time.perf_counter()))
        s = t + 1
        melody = [[(60 + k % 12, 1)] if k % 4 else [] for k in range(fed, s)]
        t0 = time.perf_counter()
        try:
            answer = transport.infer(sid, InferRequest(request_tick=s, gen_len=GEN_LEN, melody=melody, melody_start=fed))
            if answer.status == "ok":
                rtts.append((time.perf_counter() - t0) * 1000)
                arrived[s] = time.perf_counter() - start
            fed = s
        except UnknownSession:
            pass
        t = max(t + 1, math.ceil((time.perf_counter() - start) / tau))
    transport.close_session(sid)
    transport.close()
    ticks = range(LEAD_IN, last)
    played = sum(any(arrived.get(s, math.inf) <= u * tau for s in range(u - GEN_LEN + 1, u + 1)) for u in ticks)
    out.append((rtts, played, len(ticks)))


CPU_ROLES = {"replica": "ServeReplica", "proxy": "ProxyActor"}


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of the replica, the proxy and this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {role: 0.0 for role in (*CPU_ROLES, "clients")}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(pid) == os.getpid():
            out["clients"] += used
        for role, name in CPU_ROLES.items():
            if name in cmd:
                out[role] += used
    return out


def measure(url: str, n: int, seconds: float) -> tuple[np.ndarray, float, dict[str, float]]:
    """RTTs (ms) of ``n`` sessions run at once, the share of their ticks played, and the
    cores each role kept busy meanwhile."""
    out: list = []
    threads = [threading.Thread(target=run_session, args=(url, i, seconds, out)) for i in range(n)]
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu1, wall = cpu_seconds(), time.perf_counter() - wall0
    rtts = np.asarray([r for rs, _, _ in out for r in rs])
    cores = {role: (cpu1[role] - cpu0[role]) / wall for role in cpu0}
    return rtts, sum(p for _, p, _ in out) / max(1, sum(c for _, _, c in out)), cores


def main() -> None:
    """Sweep N (batching on and/or off) and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", default="4,8,12")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batching", default="on", help="on, off or on,off (off: max_batch_size 1)")
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="how long the batcher waits for more sessions")
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="num_cpus of the replica (torch threads follow it)")
    args = parser.parse_args()
    ns = [int(x) for x in args.sessions.split(",")]
    console = Console(width=140)
    table = Table(title=f"one Ray Serve replica over HTTP, I=1, GL={GEN_LEN}, 120 BPM (tau {TAU_MS:.0f} ms)")
    for col in ("batching", "N", "requests", "median ms", "p95 ms", "p99 ms", "ticks played",
                "cores: replica / proxy / clients"):
        table.add_column(col, justify="right")
    best = {}
    for mode in args.batching.split(","):
        batch = 32 if mode == "on" else 1
        url = start_local({"min_replicas": 1, "max_replicas": 1, "random_weights": args.random_weights,
                           "max_batch_size": batch, "max_wait_ms": args.max_wait_ms, "num_cpus": args.replica_cpus})
        try:
            for n in ns:
                rtts, played, cores = measure(url, n, args.seconds)
                p50, p95, p99 = np.percentile(rtts, [50, 95, 99]) if len(rtts) else (np.nan,) * 3
                table.add_row(mode, str(n), str(len(rtts)), f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", f"{played:.1%}",
                              " / ".join(f"{cores[k]:.2f}" for k in ("replica", "proxy", "clients")))
                if p95 < TAU_MS and played >= 0.99:
                    best[mode] = n
        finally:
            stop_local()
    console.print(table)
    console.print(f"largest N with p95 RTT < {TAU_MS:.0f} ms and >= 99 % ticks played: "
                  + ", ".join(f"batching {m} {best.get(m, 0)}" for m in args.batching.split(",")))


if __name__ == "__main__":
    main()
