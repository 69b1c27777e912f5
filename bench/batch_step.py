"""How the engine's cost grows with the number of sessions B served together.

Two figures per B, for the shipped ``tiny`` checkpoint (or ``--config`` with random weights):

* **global step**: one frame step of B sessions (``engine._feed`` with one new row each:
  the local encoder on B frames + the global predictor's step over B caches of about
  ``2 * history`` rows), median ms;
* **request batch**: one ``infer_batch`` of B requests at I = 1, GL = 3 (every session
  asks for ticks s .. s+2 each tick, as at 120 BPM with I = 1), median and p95 ms.

Each is also given in CPU time of this process (``time.process_time``, median): on a
shared, loaded machine that is steadier than the wall clock (run with one torch thread).

The same script runs against any checkout of the engine (it only uses ``new_session``,
``infer_batch`` and ``_feed(states, rows)``, which the per-session-cache engine had too),
so the old loop is measured with ``PYTHONPATH=<old checkout>``.

``--ab`` instead times the bare global step in one process, interleaved: the old loop
(``StreamMuseModel.global_step_rows``: one ``DynamicCache`` and one attention call per
session) against ``slot_step`` over the slot cache, B caches of ``2 * history`` rows each.

Run: ``PYTHONPATH=. .venv/bin/python bench/batch_step.py --batches 1,4,8,16,32 [--ab]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset
from streammuse.model.engine import StreamingEngine
from streammuse.model.sampling import Sampling


def song_melodies(n: int, ticks: int) -> list[np.ndarray]:
    """n melodies of ``ticks`` frames cut from the test set's songs (cycled)."""
    songs = load_testset(Path(__file__).parents[1] / "testset")
    m = np.concatenate([song_to_frames(s)[0] for s in songs])
    return [np.resize(m[(i * 97) % len(m) :], (ticks, m.shape[1])) for i in range(n)]


def _sync(engine: StreamingEngine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def warm_sessions(engine: StreamingEngine, melodies: list[np.ndarray], history: int, chunk: int = 64) -> list:
    """Sessions that have each made a first request at tick ``history`` (cache ~2*history rows)."""
    states = [engine.new_session(Sampling(seed=i)) for i in range(len(melodies))]
    for lo in range(0, len(states), chunk):  # prefill in chunks: the padded prompt step is large
        engine.infer_batch([(st, history, m[:history], 1) for st, m in zip(states[lo : lo + chunk], melodies[lo:])])
    return states


def step_ms(engine: StreamingEngine, states: list, melodies: list[np.ndarray], history: int,
            repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times (ms) of ``repeats`` one-row global steps over all sessions."""
    times, cpu = [], []
    with torch.inference_mode():
        for r in range(repeats):
            rows = [m[history + r : history + r + 1] for m in melodies]
            _sync(engine)
            t, c = time.perf_counter(), time.process_time()
            engine._feed(states, rows)
            _sync(engine)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return times, cpu


def request_ms(engine: StreamingEngine, states: list, melodies: list[np.ndarray], first_tick: int,
               gen_len: int, repeats: int, warmup: int = 2, cpu: list | None = None) -> list[float]:
    """Times (ms) of ``infer_batch`` calls, every session asking at ticks first_tick, +1, ...
    (their CPU times are appended to ``cpu`` if given)."""
    times, cpu = [], cpu if cpu is not None else []
    for r in range(repeats + warmup):
        s = first_tick + r
        _sync(engine)
        t, c = time.perf_counter(), time.process_time()
        engine.infer_batch([(st, s, m[s - 1 : s], gen_len) for st, m in zip(states, melodies)])
        _sync(engine)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    del cpu[:warmup]
    return times[warmup:]


def measure(engine: StreamingEngine, b: int, history: int, repeats: int, gen_len: int = 3) -> dict:
    """Global step and request batch figures for B = ``b`` sessions."""
    melodies = song_melodies(b, history + 2 * repeats + 8)
    states = warm_sessions(engine, melodies, history)
    steps, steps_cpu = step_ms(engine, states, melodies, history, repeats)
    # _feed appended rows the session history does not have: the next request rolls them back.
    req_cpu: list[float] = []
    req = request_ms(engine, states, melodies, history + 1, gen_len, repeats, cpu=req_cpu)
    for st in states:
        getattr(engine, "release", lambda _: None)(st)
    return {"B": b, "step_ms": float(np.median(steps)), "request_ms": float(np.median(req)),
            "request_p95_ms": float(np.percentile(req, 95)),
            "step_cpu_ms": float(np.median(steps_cpu)), "request_cpu_ms": float(np.median(req_cpu))}


def ab_step(engine: StreamingEngine, b: int, history: int, repeats: int) -> dict:
    """CPU ms (median) of the old per-session loop and of the slot step, interleaved."""
    from transformers import DynamicCache

    from streammuse.model.batched_cache import slot_step

    model, rows = engine.model, 2 * history
    x = torch.randn(b, engine.config.hidden_size)
    caches, slots = [], np.array([engine.slots.allocate() for _ in range(b)])
    with torch.inference_mode():
        for slot in slots:
            past = torch.randn(1, rows, engine.config.hidden_size)
            caches.append(DynamicCache())
            model.global_step(past, caches[-1])
            slot_step(model.global_predictor, engine.slots, past, np.array([slot]), np.array([rows]))
        old, new = [], []
        for _ in range(repeats):
            c = time.process_time()
            model.global_step_rows(x, caches)
            old.append((time.process_time() - c) * 1000)
            for cache in caches:
                cache.crop(-1)
            c = time.process_time()
            slot_step(model.global_predictor, engine.slots, x.unsqueeze(1), slots, np.ones(b, np.int64))
            new.append((time.process_time() - c) * 1000)
            engine.slots.lengths[slots] = rows
    for slot in slots:
        engine.slots.free(int(slot))
    return {"B": b, "old_loop_cpu_ms": float(np.median(old)), "slot_step_cpu_ms": float(np.median(new))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--history", type=int, default=200, help="ticks of history per session (2x rows cached)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--config", default=None, help="random weights of this preset (default: the shipped tiny)")
    ap.add_argument("--label", default="")
    ap.add_argument("--ab", action="store_true", help="old loop vs slot step, bare global step, one process")
    args = ap.parse_args()
    engine = StreamingEngine.random(args.config) if args.config else StreamingEngine.load()
    if args.ab:
        print(f"{'B':>5} {'old loop cpu ms':>16} {'slot step cpu ms':>17}  (torch threads {torch.get_num_threads()})")
        for b in [int(x) for x in args.batches.split(",")]:
            row = ab_step(engine, b, args.history, args.repeats)
            print(f"{b:>5} {row['old_loop_cpu_ms']:>16.2f} {row['slot_step_cpu_ms']:>17.2f}", flush=True)
        return
    print(f"{'B':>5} {'step ms':>9} {'GL=3 req ms':>12} {'p95 ms':>8} {'step cpu':>9} {'req cpu':>9}"
          f"  ({args.label or engine.model_id}, "
          f"torch threads {torch.get_num_threads()})")
    for b in [int(x) for x in args.batches.split(",")]:
        row = measure(engine, b, args.history, args.repeats)
        print(f"{b:>5} {row['step_ms']:>9.1f} {row['request_ms']:>12.1f} {row['request_p95_ms']:>8.1f}"
              f" {row['step_cpu_ms']:>9.1f} {row['request_cpu_ms']:>9.1f}")
        print(json.dumps({"label": args.label, **row}), flush=True)


if __name__ == "__main__":
    main()
