"""One batch of 4 sessions x GL 5 on one torch thread: the Local main job's server step.

    .venv/bin/python bench/engine_batch_gl5.py

Four sessions of the first four test songs advance two ticks per request (I = 2) for 100
requests; prints the median and p90 batch time and a lone session's GL-5 request time.
"""

import time

import numpy as np
import torch

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset
from streammuse.model.engine import EngineRequest, Sampling, StreamingEngine

torch.set_num_threads(1)  # the embedded Local server's thread count on 2 cores
engine = StreamingEngine.load()
melodies = [song_to_frames(s)[0] for s in load_testset("testset", max_bars=16)[:4]]
states = [engine.new_session(Sampling(seed=k)) for k in range(4)]
times = []
for s in range(1, 200, 2):
    batch = [EngineRequest(st, s, m[max(0, s - 2):s], 5, max(0, s - 2)) for st, m in zip(states, melodies)]
    start = time.perf_counter()
    engine.infer_batch(batch)
    times.append((time.perf_counter() - start) * 1000)
print(f"batch of 4 x GL 5: median {np.median(times[5:]):.1f} ms, p90 {np.percentile(times[5:], 90):.1f} ms")
state, alone = engine.new_session(Sampling(seed=9)), []
for s in range(1, 120, 2):
    start = time.perf_counter()
    engine.infer(state, s, melodies[0][max(0, s - 2):s], 5)
    alone.append((time.perf_counter() - start) * 1000)
print(f"one session, GL 5: median {np.median(alone[5:]):.1f} ms")
