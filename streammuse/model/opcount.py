"""Counting what an engine call does: aten ops (each a dispatch, whatever its arithmetic)
and host reads (``aten._local_scalar_dense``: ``bool(t)``, ``int(t)``, ``t.item()``; on
CUDA each waits for the device). Counts, not seconds: the same on a busy machine, so the
regression gate can guard the engine's efficiency without timing noise.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero"}


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched inside it, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def host_reads(self) -> int:
        return sum(n for name, n in self.ops.items() if name in HOST_READS)


@dataclass
class CallCounts:
    """Ops of one engine call (a prefill and GL ticks), per tick, and its host reads."""

    ops: int
    ops_per_tick: float
    host_reads: int
    top: list[tuple[str, int]]


def engine_metrics(engine, melody: np.ndarray) -> dict[str, float]:
    """What the regression gate records of the engine's efficiency: aten ops per tick of a
    GL = 3 request at B = 1 and at B = 8 (history 256), and the host reads of one device
    call in the fixed-shape (CUDA) configuration, which must stay 0."""
    from streammuse.model.engine import EngineRequest, StreamingEngine

    fixed = StreamingEngine(engine.model, engine.device, compact=False, fixed_shapes=True, cuda_graphs=False)
    state = fixed.new_session()
    fixed.infer(state, 256, melody[:256], 3)
    jobs = fixed.begin([EngineRequest(state, 257, melody[256:257], 3)])
    with torch.inference_mode(), OpCounter() as counter:
        fixed.runner.generate_eager(fixed._batch([state], [jobs[0].tick]), 3, feed_last=False)
    return {"ops_per_tick_b1": count_request(engine, melody, 256, 3).ops_per_tick,
            "ops_per_tick_b8": count_request(engine, melody, 256, 3, sessions=8).ops_per_tick,
            "fixed_host_reads": float(counter.host_reads)}


def count_request(engine, melody: np.ndarray, history: int = 256, gen_len: int = 3, sessions: int = 1,
                  interval: int = 1) -> CallCounts:
    """Counts of one request of ``gen_len`` ticks, I = ``interval`` after a request at
    ``history`` (the steady state: the true melody of the last I ticks fed, then GL
    ticks), for ``sessions`` sessions batched. ``melody`` needs ``history + interval`` frames."""
    from streammuse.model.requests import EngineRequest
    from streammuse.model.sampling import Sampling

    states = [engine.new_session(Sampling(seed=i)) for i in range(sessions)]
    engine.infer_batch([EngineRequest(st, history, melody[:history], gen_len) for st in states])
    s = history + interval
    reqs = [EngineRequest(st, s, melody[history:s], gen_len) for st in states]
    with torch.inference_mode(), OpCounter() as counter:
        engine.infer_batch(reqs)
    for st in states:
        engine.release(st)
    return CallCounts(counter.total, counter.total / gen_len, counter.host_reads, counter.ops.most_common(8))
