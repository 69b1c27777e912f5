"""CUDA only: a runner call captured as one CUDA graph per (batch bucket, ticks, whether
the last tick is fed, which filters run), padded to the bucket as vLLM and gpt-fast pad
theirs, so a GL-tick request of B sessions is one graph launch and one read-back.

The captured body is :meth:`ModelRunner.generate_eager` with the runner's fixed shapes:
every decoder position for every row, attention over the whole slot capacity under the
length mask, the batch's slots gathered by index. Padding rows read and write a scratch
slot no session is given. A graph reads its inputs from static tensors, so a call copies
the batch in (host to device), replays, and returns the static output.

This has not run in CI (no GPU there): ``bench/gpu_session.sh`` checks it on a GPU
(graph tokens against ``--no-cuda-graphs``); ``tests/test_model_runner.py`` runs the same
fixed-shape body eagerly on the CPU.
"""

from __future__ import annotations

import torch

from streammuse.model.sampling import RowSampling
from streammuse.model.tick_batch import TickBatch

BUCKETS = tuple(2**i for i in range(13))  # 1 .. 4096 rows; larger batches run eagerly


class _Captured:
    """One bucket's graph and the static tensors it reads and writes."""

    def __init__(self, runner, rows: int, ticks: int, feed_last: bool, top_k: bool, top_p: bool, scratch: int) -> None:
        dev = runner.device
        z = lambda: torch.zeros(rows, dtype=torch.long, device=dev)  # noqa: E731
        self.batch = TickBatch(torch.full((rows,), scratch, dtype=torch.long, device=dev), z() + 1, z(), z(),
                               RowSampling(torch.ones(rows, 1, device=dev), torch.ones(rows, 1, dtype=torch.long,
                                           device=dev), torch.ones(rows, 1, device=dev), top_k, top_p), None, 0)
        args = (self.batch, ticks, feed_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture (kernel choice, workspace)
                runner.generate_eager(*args)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the serving thread may touch CUDA while this one captures. Each graph
        # has its own memory pool: with one pool shared by the buckets, capturing a second
        # bucket failed on an H200 (2026-11-29, torch 2.11, "use_count > 0").
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = runner.generate_eager(*args)

    def load(self, batch, scratch: int) -> None:
        b, st = batch.rows, self.batch
        for name in ("slots", "positions", "seeds", "first_tick"):
            dst = getattr(st, name)
            dst[:b].copy_(getattr(batch, name))
        st.slots[b:].fill_(scratch)
        st.positions[b:].fill_(1)
        s, d = batch.sampling, st.sampling
        for name in ("temperature", "top_k", "top_p"):
            getattr(d, name)[:b].copy_(getattr(s, name))


class GraphedGenerate:
    """The runner's ``generate`` on CUDA: pad B to a bucket, copy in, replay its graph."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.scratch = runner.cache.allocate()  # padding rows write here; never handed to a session
        self._graphs: dict[tuple, _Captured] = {}
        self._generation = self._buffers()

    def _buffers(self) -> tuple[int, int]:
        """Which allocation of the slot cache and the frame coder's buffers graphs point at."""
        return self.runner.cache.generation, self.runner.coder.generation

    def run(self, batch, ticks: int, feed_last: bool) -> torch.Tensor:
        b = batch.rows
        bucket = next((r for r in BUCKETS if r >= b), None)
        if bucket is None:
            return self.runner.generate_eager(batch, ticks, feed_last)
        self.runner._grow_rows(bucket)  # before the check: growing reallocates what graphs read
        if self._buffers() != self._generation:  # buffers reallocated: graphs point at freed memory
            self._graphs.clear()
            self._generation = self._buffers()
        key = (bucket, ticks, feed_last, batch.sampling.any_top_k, batch.sampling.any_top_p)
        cap = self._graphs.get(key)
        if cap is None:
            cap = self._graphs[key] = _Captured(self.runner, bucket, *key[1:], self.scratch)
        cap.load(batch, self.scratch)
        cap.graph.replay()
        return cap.out[:b]
