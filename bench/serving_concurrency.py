"""N concurrent sessions at I=1, GL=3, 120 BPM against one CPU replica (issue 4).

Each session is a client thread that sends one request per tick (tau = 125 ms at 120 BPM,
I = 1) over HTTP to a local Ray Serve app with one replica, and records the RTT of every
request. Prints median / p95 / p99 RTT per N, and the largest N with p95 RTT < tau,
batching on (max_batch_size 32) and off (max_batch_size 1).

    .venv/bin/python bench/serving_concurrency.py [--sessions 1,2,4,8,12,16] [--seconds 10] [--max-wait-ms 2]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from streammuse.contract import CreateSessionRequest, InferRequest
from streammuse.serving.raylocal import start_local, stop_local
from streammuse.client.transports import HttpTransport, UnknownSession

TAU_MS = 60_000 / 120 / 4  # one tick (1/16 note) at 120 BPM: 125 ms
GEN_LEN = 3


def run_session(url: str, seed: int, seconds: float, rtts: list[float]) -> None:
    """One client: a request every tick for ``seconds``; RTTs (ms) appended to ``rtts``."""
    transport = HttpTransport(url)
    sid = transport.create_session(CreateSessionRequest(seed=seed)).session_id
    start = time.perf_counter()
    tick = 1
    while (now := time.perf_counter()) - start < seconds:
        t0 = time.perf_counter()
        try:
            answer = transport.infer(sid, InferRequest(request_tick=tick, gen_len=GEN_LEN, melody=[[(60 + tick % 12, 1)]]))
            if answer.status == "ok":
                rtts.append((time.perf_counter() - t0) * 1000)
        except UnknownSession:
            pass
        tick += 1
        time.sleep(max(0.0, start + tick * TAU_MS / 1000 - time.perf_counter()))
    transport.close()


def measure(url: str, n: int, seconds: float) -> np.ndarray:
    """RTTs (ms) of ``n`` sessions run at once."""
    rtts: list[float] = []
    threads = [threading.Thread(target=run_session, args=(url, i, seconds, rtts)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.asarray(rtts)


def main() -> None:
    """Sweep N for batching on and off and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", default="1,2,4,8,12,16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="how long the batcher waits for more sessions")
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="num_cpus of the replica (torch threads follow it)")
    args = parser.parse_args()
    ns = [int(x) for x in args.sessions.split(",")]
    console = Console()
    table = Table(title=f"one CPU replica, I=1, GL={GEN_LEN}, 120 BPM (tau {TAU_MS:.0f} ms)")
    for col in ("batching", "N", "requests", "median ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="right")
    best = {}
    for batch in (32, 1):
        url = start_local({"min_replicas": 1, "max_replicas": 1, "random_weights": args.random_weights,
                           "max_batch_size": batch, "max_wait_ms": args.max_wait_ms, "num_cpus": args.replica_cpus})
        try:
            for n in ns:
                rtts = measure(url, n, args.seconds)
                p50, p95, p99 = np.percentile(rtts, [50, 95, 99]) if len(rtts) else (np.nan,) * 3
                table.add_row("on" if batch > 1 else "off", str(n), str(len(rtts)), f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}")
                if p95 < TAU_MS:
                    best[batch] = n
        finally:
            stop_local()
    console.print(table)
    console.print(f"largest N with p95 RTT < {TAU_MS:.0f} ms: batching on {best.get(32, 0)}, off {best.get(1, 0)}")


if __name__ == "__main__":
    main()
