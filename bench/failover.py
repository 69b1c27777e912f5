"""A replica killed, or the whole server restarted, mid-song: how much fresh
accompaniment do the songs lose? (issue 13)

Starts the Serve app on a local Ray instance with two replicas (the shipped model,
``--max-sessions`` fixed so the surviving replica admits the rebuilt sessions), replays
``--songs`` songs at once on the wall clock through HTTP (the real client: its own
deadlines, one new session per lost one, context re-sent), and kills one replica
``--kill-after`` seconds in. Per song it prints what happened after the kill: whether
any request failed (the song was on the killed replica), the longest run of ticks
without a fresh frame (backups or silence) and the ticks with nothing to play.

    .venv/bin/python bench/failover.py --songs 4 --max-bars 16 --kill-after 10

``--restart``: instead, stop the whole server (Ray and all) ``--kill-after`` seconds in
and start it again on the same port (a new deployment: every session is unknown). Per
song it prints the seconds from the server being healthy again (its /healthz answering,
probed every 50 ms) to the first tick played from a fresh answer, and the run's
manifest: every song saved, none failed.

    .venv/bin/python bench/failover.py --restart --songs 4 --max-bars 32 --kill-after 8

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


def runs(flags) -> list[tuple[int, int]]:
    """The runs of True in ``flags`` as (start index, length)."""
    found, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            found.append((start, i - start))
            start = None
    return found


def stale_runs(t: pd.DataFrame, kill_tick: int, window: int) -> tuple[int, int]:
    """Ticks without a fresh frame: the longest run that overlaps the ``window`` ticks
    from ``kill_tick`` on (what the kill cost), and the longest run that ended before
    ``kill_tick`` (the same song's own floor on this machine, before anything failed)."""
    stale = runs(~t["fresh"].to_numpy(dtype=bool))
    ticks = t.tick.to_numpy()
    at_kill = [n for i, n in stale if ticks[i] < kill_tick + window and ticks[i] + n > kill_tick]
    before = [n for i, n in stale if ticks[i] + n <= kill_tick]
    return max(at_kill, default=0), max(before, default=0)


def restart_server(url: str, options: dict, marks: dict) -> None:
    """Stop the whole server and start it again at ``url``; ``marks``: monotonic times of
    the stop, and of the first /healthz answer after it (probed every 50 ms)."""
    import httpx

    from streammuse.serving.raylocal import start_local, stop_local

    marks["stop"] = time.monotonic()
    stop_local()
    marks["stopped"] = time.monotonic()
    port = int(url.rsplit(":", 1)[1])

    def probe() -> None:
        while "healthy" not in marks:
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    marks["healthy"] = time.monotonic()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    start_local(options, port=port, num_cpus=2)
    prober.join(timeout=5.0)
    marks.setdefault("healthy", time.monotonic())  # the probe missed it: start_local saw it


def report_restart(ticks: pd.DataFrame, clocks: dict, marks: dict, manifest: dict, tau: float) -> None:
    """Per song: seconds from healthy again to the first played tick (any, and fresh)."""
    print(f"server stopped {marks['stopped'] - marks['stop']:.1f} s after the stop began; healthy again "
          f"{marks['healthy'] - marks['stop']:.1f} s after the stop began")
    for song, t in ticks.groupby("song"):
        onsets = clocks[song].onset_s(0) + t.tick.to_numpy() * tau / 1000.0
        after = t[onsets >= marks["healthy"]]
        first = {}
        for label, col in (("a frame", "available"), ("a fresh frame", "fresh")):
            hit = after[after[col].astype(bool)]
            first[label] = (f"{clocks[song].onset_s(int(hit.tick.iloc[0])) - marks['healthy']:.2f} s"
                            if len(hit) else "never")
        down = t[(onsets >= marks["stop"]) & (onsets < marks["healthy"])]
        print(f"{song}: healthy -> {first['a frame']} to a played frame, {first['a fresh frame']} to a fresh one; "
              f"{len(after)} ticks left after healthy; ticks with nothing while down {int((down.available == 0).sum())} "
              f"of {len(down)}; ISR {t.available.mean():.3f}")
    print(f"manifest: songs saved {len(manifest['done'])}, failed songs {manifest['failed']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testset", default="testset")
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--max-bars", type=int, default=16)
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--gen-len", type=int, default=5)
    parser.add_argument("--setting", default="local", help="whose network profile the client injects")
    parser.add_argument("--restart", action="store_true", help="stop and restart the whole server instead")
    parser.add_argument("--keep", default=None, help="write the run here (default: a temporary folder)")
    args = parser.parse_args()

    from streammuse.client.transports import connect
    from streammuse.contract import tau_ms
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, resolve_profile, run_pair
    from streammuse.serving.raylocal import start_local, stop_local

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start: {os.getloadavg()}")
    options = {"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5, "max_sessions": 16}
    url = start_local(options, num_cpus=2)
    marks: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = args.keep or tmp
            cfg = ReplayConfig(testset=Path(args.testset), setting=args.setting, clock="wall", server=url,
                               interval=args.interval, gen_len=args.gen_len, songs=args.songs,
                               max_bars=args.max_bars, concurrency=args.songs, out=Path(tmp))
            songs, profile = load_songs(cfg), resolve_profile(cfg)
            killed: dict = {}

            clocks: dict = {}

            def killer() -> None:
                killed["at"] = time.monotonic()
                killed["name"] = kill_one_replica()

            def watch(playing) -> None:  # each song's clock, for tick onsets in monotonic time
                for ws in playing:
                    clocks.setdefault(ws.client.name, ws.clock)

            started = time.monotonic()
            timer = threading.Timer(args.kill_after, restart_server if args.restart else killer,
                                    (url, options, marks) if args.restart else ())
            timer.start()
            transport = connect(url)
            path, _ = run_pair(cfg, songs, profile, transport=transport, model_id="tiny", watch=watch)
            transport.close()
            timer.join()
            ticks = pd.read_parquet(path / "ticks.parquet")
            reqs = pd.read_parquet(path / "requests.parquet")
            from streammuse.experiment.runs import RunWriter

            writer = RunWriter(path)
            manifest = {"done": writer.done_songs(), "failed": writer.read_manifest().get("failed_songs", {})}
    finally:
        stop_local()
    tau = tau_ms(cfg.bpm)
    if args.restart:
        report_restart(ticks, clocks, marks, manifest, tau)
        print(f"load average at end: {os.getloadavg()}")
        return
    kill_ms = (killed["at"] - started) * 1000.0
    print(f"killed {killed.get('name')} at {kill_ms / 1000:.1f} s after the replay started")
    for song, t in ticks.groupby("song"):
        r = reqs[reqs.song == song]
        kill_tick = int((killed["at"] - clocks[song].onset_s(0)) * 1000.0 // tau)
        failed = r[(r.status == "failed") & (r.send_tick >= kill_tick - args.gen_len)]
        # a request in flight at the kill fails within its deadline, GL ticks: the kill's
        # cost is the stale run that overlaps the 2 GL ticks from the kill on
        cost, floor = stale_runs(t, kill_tick, 2 * args.gen_len)
        late = (r.status == "late").mean()
        print(f"{song}: {'on the killed replica' if len(failed) else 'not affected'} (killed at tick {kill_tick}); "
              f"failed requests after the kill {len(failed)}; run without a fresh frame at the kill {cost} ticks = "
              f"{cost * tau / 1000:.2f} s (longest before the kill: {floor} ticks = {floor * tau / 1000:.2f} s); "
              f"ticks with nothing {int((t.available == 0).sum())} of {len(t)}; ISR {t.available.mean():.3f}; "
              f"late answers {late:.0%}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
