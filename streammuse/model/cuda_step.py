"""CUDA only: the one-row global-predictor step at fixed shapes, captured as a CUDA graph
per batch bucket (B rounded up to a power of two), so a step costs one graph launch
whatever B is until the GPU is compute-bound.

The engine builds this only when its device is CUDA; CPU never imports it. It has not run
in this project's CI (no GPU there): ``bench/gpu_capacity.py`` is the check to run on a
GPU, and ``--no-graphs`` there compares it with the eager path the CPU tests cover. On the
one GPU run so far (H200, 2026-11-29) the B = 1 step took 2.2 ms graphed against 5.2 ms
eager, and the second bucket's capture failed (fixed since, not yet re-run on a GPU).

Fixed shapes: every row attends over the full slot capacity (W + 1 positions) with a
length mask, so nothing in the graph depends on the data; the batch's slots are gathered
(``keys[slots]``), and padding rows write into a scratch slot of their own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streammuse.model.batched_cache import SlotCache, slot_step
from streammuse.model.modeling import run_layers

BUCKETS = tuple(2**i for i in range(13))  # 1 .. 4096 rows; larger batches run eagerly


def fixed_step(gp: nn.Module, cache: SlotCache, x: torch.Tensor, slots: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """One new row per slot at position ``pos``: ``(B, 1, H)`` -> ``(B, 1, H)``, data-independent shapes.

    Writes the rows' keys, values and outputs into ``cache``; the caller advances lengths.
    """
    mask = torch.arange(cache.capacity, device=x.device)[None, None, None, :] <= pos[:, None, None, None]

    def attend(li: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        keys, values = cache.keys[li], cache.values[li]
        keys[slots, :, pos] = k[:, :, 0].to(keys.dtype)
        values[slots, :, pos] = v[:, :, 0].to(values.dtype)
        return nn.functional.scaled_dot_product_attention(q, keys[slots], values[slots], attn_mask=mask, scale=scale)

    out = run_layers(gp, x, pos[:, None], attend)
    cache.hidden[slots, pos] = out[:, 0].to(cache.hidden.dtype)
    return out


class _Captured:
    """One bucket's graph and the static tensors it reads and writes."""

    def __init__(self, gp: nn.Module, cache: SlotCache, rows: int, scratch: int) -> None:
        dev = cache.device
        self.x = torch.zeros(rows, 1, cache.hidden_size, device=dev, dtype=cache.dtype)
        self.slots = torch.full((rows,), scratch, device=dev, dtype=torch.long)
        self.pos = torch.zeros(rows, device=dev, dtype=torch.long)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture (kernel choice, workspace)
                fixed_step(gp, cache, self.x, self.slots, self.pos)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the serving thread may touch CUDA while this one captures. Each graph
        # gets its own memory pool: with one pool shared by the buckets, capturing the second
        # bucket failed on an H200 (2026-11-29, torch 2.11: "INTERNAL ASSERT FAILED ...
        # use_count > 0" in CUDACachingAllocator); a step's workspace is small.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = fixed_step(gp, cache, self.x, self.slots, self.pos)


class GraphedStep:
    """The engine's one-row step on CUDA: pad B to a bucket, copy in, replay its graph."""

    def __init__(self, gp: nn.Module, cache: SlotCache) -> None:
        self.gp, self.cache = gp, cache
        self.scratch = cache.allocate()  # padding rows write here; never handed to a session
        self._graphs: dict[int, _Captured] = {}
        self._generation = cache.generation

    def step(self, x: torch.Tensor, slots: np.ndarray) -> torch.Tensor:
        """Like ``slot_step(gp, cache, x, slots, ones)`` for ``x`` of shape ``(B, 1, H)``."""
        b = len(slots)
        bucket = next((r for r in BUCKETS if r >= b), None)
        if bucket is None:
            return slot_step(self.gp, self.cache, x, slots, np.ones(b, np.int64))
        if self.cache.generation != self._generation:  # buffers reallocated: old graphs point at freed memory
            self._graphs.clear()
            self._generation = self.cache.generation
        if int(self.cache.lengths[slots].max()) >= self.cache.capacity:
            raise RuntimeError("slot overflow in the graphed step")
        cap = self._graphs.get(bucket)
        if cap is None:
            cap = self._graphs[bucket] = _Captured(self.gp, self.cache, bucket, self.scratch)
        cap.x[:b].copy_(x)
        cap.slots[:b].copy_(torch.as_tensor(slots, dtype=torch.long))
        cap.slots[b:].fill_(self.scratch)
        cap.pos[:b].copy_(torch.as_tensor(self.cache.lengths[slots], dtype=torch.long))
        cap.pos[b:].zero_()
        cap.graph.replay()
        self.cache.lengths[slots] += 1
        return cap.out[:b]
