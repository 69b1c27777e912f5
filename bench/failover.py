"""A replica killed mid-song: how much fresh accompaniment do the songs lose? (issue 13)

Starts the Serve app on a local Ray instance with two replicas (the shipped model,
``--max-sessions`` fixed so the surviving replica admits the rebuilt sessions), replays
``--songs`` songs at once on the wall clock through HTTP (the real client: its own
deadlines, one new session per lost one, context re-sent), and kills one replica
``--kill-after`` seconds in. Per song it prints what happened after the kill: whether
any request failed (the song was on the killed replica), the longest run of ticks
without a fresh frame (backups or silence) and the ticks with nothing to play.

    .venv/bin/python bench/failover.py --songs 4 --max-bars 16 --kill-after 10

Run it on an otherwise idle machine: it measures this machine's wall clock.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd


def kill_one_replica() -> str:
    """Kill one Serve replica actor of the app; its name."""
    import ray

    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if "SERVE_REPLICA" in a["name"] and "StreamMuse" in a["name"])
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def longest_run(flags) -> int:
    """The longest run of True in ``flags``."""
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testset", default="testset")
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--max-bars", type=int, default=16)
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--gen-len", type=int, default=5)
    parser.add_argument("--setting", default="local", help="whose network profile the client injects")
    args = parser.parse_args()

    from streammuse.client.transports import connect
    from streammuse.contract import tau_ms
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, resolve_profile, run_pair
    from streammuse.serving.raylocal import start_local, stop_local

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start: {os.getloadavg()}")
    url = start_local({"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5, "max_sessions": 16}, num_cpus=2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = ReplayConfig(testset=Path(args.testset), setting=args.setting, clock="wall", server=url,
                               interval=args.interval, gen_len=args.gen_len, songs=args.songs,
                               max_bars=args.max_bars, concurrency=args.songs, out=Path(tmp))
            songs, profile = load_songs(cfg), resolve_profile(cfg)
            killed: dict = {}

            def killer() -> None:
                killed["at"] = time.monotonic()
                killed["name"] = kill_one_replica()

            started = time.monotonic()
            timer = threading.Timer(args.kill_after, killer)
            timer.start()
            transport = connect(url)
            path, _ = run_pair(cfg, songs, profile, transport=transport, model_id="tiny")
            transport.close()
            ticks = pd.read_parquet(path / "ticks.parquet")
            reqs = pd.read_parquet(path / "requests.parquet")
    finally:
        stop_local()
    tau = tau_ms(cfg.bpm)
    kill_ms = (killed["at"] - started) * 1000.0
    print(f"killed {killed.get('name')} at {kill_ms / 1000:.1f} s after the replay started")
    for song, t in ticks.groupby("song"):
        r = reqs[reqs.song == song]
        failed = r[r.status == "failed"]
        after = t[t.tick >= (failed.send_tick.min() if len(failed) else 0)]
        stale = longest_run(~after["fresh"].to_numpy(dtype=bool))
        print(f"{song}: {'on the killed replica' if len(failed) else 'not affected'}; failed requests {len(failed)}; "
              f"longest run without a fresh frame {stale} ticks = {stale * tau / 1000:.2f} s; "
              f"ticks with nothing {int((t.available == 0).sum())} of {len(t)}; ISR {t.available.mean():.3f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
