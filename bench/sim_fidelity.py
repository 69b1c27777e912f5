"""Does the sim clock say what the wall clock sees? ISR_w of both for the same songs, seed,
pair and network profile, against the same server code (issue 12's fidelity figure).

Wall: ``streammuse replay --clock wall`` against the embedded server (the Local socket
server for ``local``, a one-replica local Ray Serve app for ``remote``), songs paced in
real time. Sim: ``--clock sim`` with the same session core on a virtual replica, each
batch lasting its measured engine compute time (``--server-time measured``, torch on as
many threads as the embedded server), and with the shipped profile's server model
(``modelled``). Both share ``--concurrency`` songs on one server.

    .venv/bin/python bench/sim_fidelity.py --songs 8 --max-bars 16

Run it on an otherwise idle machine: the wall clock measures this machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

PAIRS = (("local", 1, 3), ("local", 2, 5), ("remote", 2, 5))


def one(setting: str, interval: int, gen_len: int, clock: str, server_time: str, args, out: Path, engine=None) -> dict:
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, realtime_summary, resolve_profile, run_pair
    from streammuse.experiment.servers import check_server, open_transport

    cfg = ReplayConfig(testset=Path(args.testset), setting=setting, interval=interval, gen_len=gen_len, clock=clock,
                       server_time=server_time, songs=args.songs, max_bars=args.max_bars, seed=args.seed, out=out,
                       concurrency=args.concurrency)
    songs, profile = load_songs(cfg), resolve_profile(cfg)
    start = time.perf_counter()
    if clock == "wall":
        with open_transport(cfg) as transport:
            model_id = check_server(transport, cfg)
            path, _ = run_pair(cfg, songs, profile, transport=transport, model_id=model_id)
    else:
        path, _ = run_pair(cfg, songs, profile, engine=engine, model_id=engine.model_id)
    ticks = pd.read_parquet(path / "ticks.parquet")
    reqs = pd.read_parquet(path / "requests.parquet")
    return {"setting": setting, "I": interval, "GL": gen_len, "clock": clock,
            "server_time": server_time if clock == "sim" else "real", **realtime_summary(ticks),
            "mean_server_ms": float(reqs["inference_ms"].mean()), "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testset", default="testset")
    parser.add_argument("--songs", type=int, default=8)
    parser.add_argument("--max-bars", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from streammuse.model.engine import StreamingEngine
    from streammuse.serving.embedded import client_threads

    print(f"load average at start: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting, interval, gen_len in PAIRS:
            rows.append(one(setting, interval, gen_len, "wall", "real", args, Path(tmp)))
        torch.set_num_threads(client_threads())  # the embedded server's threads
        engine = StreamingEngine.load()
        for setting, interval, gen_len in PAIRS:
            for server_time in ("measured", "modelled"):
                rows.append(one(setting, interval, gen_len, "sim", server_time, args, Path(tmp), engine))
    print(f"load average at end: {os.getloadavg()}")
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(table.round(4).to_string(index=False))
    wall = table[table.clock == "wall"].set_index(["setting", "I", "GL"])["isr_w"]
    for server_time in ("measured", "modelled"):
        sim = table[(table.clock == "sim") & (table.server_time == server_time)].set_index(["setting", "I", "GL"])["isr_w"]
        diff = (sim - wall).abs()
        print(f"|ISR_w(sim, {server_time}) - ISR_w(wall)|: " + ", ".join(f"{k}: {v:.4f}" for k, v in diff.items()))


if __name__ == "__main__":
    main()
