"""Sim-clock replay speed (ticks per second of wall time) of per-song virtual replicas,
with the engine batched across songs (the default) or one engine call per replica.

    .venv/bin/python bench/sim_speed.py --setting remote --pairs "2,5" --songs 16 --max-bars 16
    .venv/bin/python bench/sim_speed.py --pairs paper --songs 16 --max-bars 16 --unbatched

One line of JSON per configuration: ticks, seconds, ticks/s, engine calls and their mean
size, load average before and after. Run folders go to a scratch folder (``--out`` keeps
them). ``--limit-s`` stops a configuration after that many seconds and counts the ticks of
the songs finished by then (with ``--concurrency 1`` they finish one by one), so a slow
configuration can be measured in part. The engine runs on one thread, as a sweep's Ray task.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import torch

from streammuse.experiment import replay as rp
from streammuse.experiment.config import ReplayConfig, parse_sweep
from streammuse.model.engine import StreamingEngine

TESTSET = Path(__file__).resolve().parents[1] / "testset"


class _Stop(BaseException):  # not an Exception: the session core answers those with internal_error
    pass


def _alarm(signum, frame):
    raise _Stop


def measure(cfg: ReplayConfig, engine: StreamingEngine, unbatched: bool, limit_s: float | None) -> dict:
    """Replay one configuration; its speed and engine calls."""
    songs, profile = rp.load_songs(cfg), rp.resolve_profile(cfg)
    n_ticks = {s.name: s.n_ticks for s in songs}
    writer = rp.open_run(cfg, profile, songs, engine.model_id)
    done: list[tuple[str, float]] = []
    calls: list[int] = []
    infer_batch = engine.infer_batch

    def counted(requests):
        calls.append(len(requests))
        return infer_batch(requests)

    engine.infer_batch = counted
    load = os.getloadavg()[0]
    started = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s or 0)
    try:
        rp.replay_sim(cfg, engine, songs, writer, profile, progress=lambda name: done.append((name, time.perf_counter())),
                      **({"batch_engine": False} if unbatched else {}))
    except _Stop:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        del engine.infer_batch
    elapsed = (done[-1][1] if len(done) < len(songs) and done else time.perf_counter()) - started
    ticks = sum(n_ticks[name] for name, _ in done)
    return {"setting": cfg.setting, "pair": [cfg.interval, cfg.gen_len], "songs": f"{len(done)}/{len(songs)}",
            "ticks": ticks, "seconds": round(elapsed, 1), "ticks_per_s": round(ticks / elapsed, 1) if elapsed else None,
            "engine_calls": len(calls), "mean_batch": round(sum(calls) / len(calls), 2) if calls else None,
            "unbatched": unbatched, "load_before": load, "load_after": os.getloadavg()[0], "run": str(writer.path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="remote")
    ap.add_argument("--pairs", default="2,5", help='"I,GL I,GL" or "paper"')
    ap.add_argument("--songs", type=int, default=16, help="0: all")
    ap.add_argument("--max-bars", type=int, default=16, help="0: whole songs")
    ap.add_argument("--concurrency", type=int, default=0, help="songs at once (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unbatched", action="store_true", help="one engine call per replica batch")
    ap.add_argument("--limit-s", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    engine = StreamingEngine.load()
    with tempfile.TemporaryDirectory() as scratch:
        for i, gl in parse_sweep(args.pairs):
            cfg = ReplayConfig(testset=TESTSET, setting=args.setting, clock="sim", interval=i, gen_len=gl,
                               songs=args.songs or None, max_bars=args.max_bars or None, seed=args.seed,
                               out=args.out or Path(scratch), servers="per-song",
                               concurrency=args.concurrency or max(args.songs, 64))
            print(json.dumps(measure(cfg, engine, args.unbatched, args.limit_s)), flush=True)


if __name__ == "__main__":
    main()
