"""Overload (issue 13): N sessions offered at once to one CPU replica, I = 1, GL = 3, 120 BPM.

The replica is started as ``streammuse serve`` starts it (``cli.serve.start_sized``): its
capacity measured through its app on this host, then through the whole HTTP path (Ray's
proxy, the app, clients on this host: serving/path_probe.py), and the app restarted with
that figure; past it, new sessions get 503. Then N sessions are offered at once through
the same ``path_probe.offer`` the sizing used (one request per tick, sent at the onset of
tick s-1 without waiting for earlier answers; a tick is *played* when an answer covering
it arrived before its onset). Prints one JSON object:

* ``capacity``: the replica's figure (``GET /v1/model``'s ``max_sessions``);
* admitted sessions: their share of ticks played (min, median), the longest wait for an
  answer (ms) and its p95, the answers' statuses (``expired``: dropped unanswered by the
  replica, core/deadlines.py);
* the same from the end of the sizing's 1 s warm-up on (``after_warmup``: the first
  second is when the 16 sessions are created and refused at once);
* refused sessions: how many, and the latency of their 503 (max, ms);
* replica memory (RSS, MB) before the load, every tenth of the offer (does it level off?)
  and after it.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/overload.py --sessions 16 --seconds 20``
"""

from __future__ import annotations

import argparse
import json
import threading

import httpx

from streammuse.contract import tau_ms

GEN_LEN, BPM = 3, 120.0


def sample_rss(every_s: float, into: list[float], stop: threading.Event) -> None:
    """Append the replica's RSS (MB) every ``every_s`` until ``stop`` is set."""
    while not stop.wait(every_s):
        into.append(round(replica_rss_mb()))


def replica_rss_mb() -> float:
    """Resident memory of the Serve replica's process(es), MB."""
    import psutil

    total = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("ServeReplica" in part for part in (proc.info["cmdline"] or [])):
            total += proc.memory_info().rss
    return total / 2**20


def main() -> None:
    from streammuse.cli.serve import start_sized
    from streammuse.serving.app import DeployOptions
    from streammuse.serving.path_probe import WARMUP_S, offer, summary
    from streammuse.serving.raylocal import stop_local

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--random-weights", action="store_true", help="random tiny weights (no trained checkpoint)")
    args = parser.parse_args()
    options = DeployOptions(min_replicas=1, max_replicas=1, num_cpus=1, random_weights=args.random_weights,
                            max_sessions=0, max_sessions_per_client=0, plan_bpm=BPM, plan_interval=1,
                            plan_gen_len=GEN_LEN)
    url = start_sized(options, None, "127.0.0.1")
    try:
        capacity = httpx.get(f"{url}/v1/model", timeout=30).json()["max_sessions"]
        before, during, stop = replica_rss_mb(), [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(args.seconds / 10, during, stop), daemon=True)
        sampler.start()
        sessions = offer(url, args.sessions, args.seconds, BPM, 1, GEN_LEN)
        stop.set()
        sampler.join()
        figures = summary(sessions)  # every tick and request, from the first
        warm = summary(sessions, first_tick=1 + int(WARMUP_S * 1000 / tau_ms(BPM)))
        figures["after_warmup"] = {k: warm[k] for k in ("tick_share_min", "wait_max_ms", "wait_p95_ms")}
        after = replica_rss_mb()
    finally:
        stop_local()
    print(json.dumps({"capacity": capacity, **figures, "rss_mb_before": round(before), "rss_mb_after": round(after),
                      "rss_mb_during": during,
                      "tau_ms": tau_ms(BPM), "seconds": args.seconds}))


if __name__ == "__main__":
    main()
