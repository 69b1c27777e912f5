"""The engine's frame steps at I = 1, GL = 3 for B sessions on one torch thread (issue 14).

With continuous batching a request's server time is its ``begin`` plus GL steps, each
step shared with every other running request; this prints the median time of ``begin``
and of each of the 3 steps (the third generates A[s+2] only, no melody guess) for B
sessions of the first test songs, shipped ``tiny`` checkpoint.

    PYTHONPATH=. .venv/bin/python bench/engine_steps.py [--batches 1,4,8,12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset
from streammuse.model.engine import Sampling, StreamingEngine

GEN_LEN = 3


def step_times(engine: StreamingEngine, melodies: list, b: int, requests: int = 60, warmup: int = 40) -> np.ndarray:
    """``(requests, 1 + GL)`` ms: begin, then each step, for B sessions asking s = 1, 2, ..."""
    states = [engine.new_session(Sampling(seed=k)) for k in range(b)]
    rows = []
    for s in range(1, warmup + requests + 1):
        t = [time.perf_counter()]
        jobs = engine.begin([(st, s, melodies[k % len(melodies)][s - 1 : s], GEN_LEN, s - 1) for k, st in enumerate(states)])
        t.append(time.perf_counter())
        while not all(job.done for job in jobs):
            engine.step(jobs)
            t.append(time.perf_counter())
        if s > warmup:
            rows.append(np.diff(t) * 1000)
    for st in states:
        engine.release(st)
    return np.array(rows)


def main() -> None:
    """Print median ms of begin and steps per B."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,4,8,12")
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = StreamingEngine.load()
    melodies = [song_to_frames(s)[0] for s in load_testset("testset", max_bars=32)[:8]]
    table = Table(title=f"engine, I = 1, GL = {GEN_LEN}, one torch thread (median ms)")
    for col in ("B", "begin", "step 1", "step 2", "step 3", "request (begin + 3 steps)"):
        table.add_column(col, justify="right")
    for b in (int(x) for x in args.batches.split(",")):
        med = np.median(step_times(engine, melodies, b), axis=0)
        table.add_row(str(b), *(f"{x:.1f}" for x in med), f"{med.sum():.1f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
