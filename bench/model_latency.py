"""Latency of the shipped checkpoint on this CPU: one streaming request (median, p95) for
GL 1..16 with a 512-frame history, 64 vs 1024 frames of history, and offline ticks/s.

Run: ``.venv/bin/python bench/model_latency.py [--repeats N] [--gls 1,3,9,16]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset
from streammuse.model.engine import EngineRequest, StreamingEngine, generate_offline
from streammuse.model.sampling import Sampling


def request_latency(engine: StreamingEngine, m: np.ndarray, history: int, gl: int, repeats: int, interval: int = 1):
    """Median and p95 (ms) of requests at s = history, history+I, ... (each after a rollback)."""
    state = engine.new_session(Sampling(seed=0))
    engine.infer(state, history, m[:history], gl)  # warm: the history is encoded once
    times = []
    for r in range(1, repeats + 1):
        s = history + r * interval
        t = time.perf_counter()
        engine.infer(state, s, m[s - interval : s], gl)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def batch_latency(engine: StreamingEngine, melodies: list[np.ndarray], gl: int, repeats: int) -> float:
    """Median ms of one ``infer_batch`` call serving every session's request (I = 1) at
    once: the step a replica runs when sessions' requests arrive together."""
    states = [engine.new_session(Sampling(seed=i)) for i in range(len(melodies))]
    times = []
    for s in range(1, repeats + 6):
        t = time.perf_counter()
        engine.infer_batch([EngineRequest(st, s, m[s - 1 : s], gl) for st, m in zip(states, melodies)])
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times[5:]))  # the first steps encode nothing yet: warm-up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--gls", default=",".join(str(g) for g in range(1, 17)))
    ap.add_argument("--offline-ticks", type=int, default=64)
    ap.add_argument("--sessions", default="1,8", help="session counts for the batched GL=3 step")
    args = ap.parse_args()
    engine = StreamingEngine.load()
    songs = load_testset(Path(__file__).parents[1] / "testset")
    m = np.concatenate([song_to_frames(s)[0] for s in songs])[:1200]
    table = Table(title=f"streaming request latency, {engine.model_id}, history 512 frames")
    for col in ("GL", "median ms", "p95 ms"):
        table.add_column(col, justify="right")
    for gl in [int(g) for g in args.gls.split(",")]:
        med, p95 = request_latency(engine, m, 512, gl, args.repeats)
        table.add_row(str(gl), f"{med:.1f}", f"{p95:.1f}")
    console = Console()
    console.print(table)
    short = request_latency(engine, m, 64, 3, args.repeats)[0]
    long = request_latency(engine, m, 1024, 3, args.repeats)[0]
    console.print(f"GL=3 median: history 64 -> {short:.1f} ms, history 1024 -> {long:.1f} ms, ratio {long / short:.2f}")
    per_song = [song_to_frames(s)[0] for s in songs]
    for n in [int(x) for x in args.sessions.split(",")]:
        ms = batch_latency(engine, per_song[:n], 3, args.repeats)
        console.print(f"one batched step, {n} sessions x GL=3: {ms:.1f} ms median")
    t = time.perf_counter()
    generate_offline(engine, m[: args.offline_ticks], Sampling(seed=0))
    console.print(f"offline generation: {args.offline_ticks / (time.perf_counter() - t):.1f} ticks/s")


if __name__ == "__main__":
    main()
