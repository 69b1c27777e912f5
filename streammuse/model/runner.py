"""The model runner: the engine's device side (docs/design.md, "The engine").

One per-tick device function, :meth:`ModelRunner.generate`: for every row of a typed
batch (:class:`TickBatch`) it decodes an accompaniment frame from the row's last global
state, sampling on the device (:func:`streammuse.model.sampling.draw`, a counter-based
stream keyed by seed, tick, part and position), encodes the frame it drew, runs the
global step into the slot cache, then does the same for the melody guess; a request of
GL ticks is GL such ticks, and the tokens come back to the host once per call. The runner
knows nothing of sessions: the host side (:mod:`streammuse.model.engine`) keeps the
history, rolls back, slides the window and hands out slots, and never waits on the device
in the middle of a call.

Shapes: on CUDA every decoder position runs for every row (a frame that has ended is
forced to PAD), attention reads the whole slot capacity under a length mask, so the call
is captured as a CUDA graph per (batch bucket, ticks) and replayed; on the CPU, where
reading a tensor costs nothing, the decoder stops once every row has ended its frame and
attention reads only as far as the longest row, which gives the same tokens.

``prefill`` feeds the rows a request brings (the true melody since the last request, or a
whole rebuilt context): variable length, eager on every device.
"""

from __future__ import annotations

import numpy as np
import torch

from streammuse.datasets import vocab
from streammuse.model.attention import CacheStep, SlotCache, visible
from streammuse.model.frame_coder import FrameCoder
from streammuse.model.modeling import PART_A, PART_M, StreamMuseModel
from streammuse.model.sampling import counter_uniforms
from streammuse.model.tick_batch import TickBatch

F = vocab.FRAME_LEN
SPARE_POSITIONS = 2  # past BOS + W rows: where a fixed-shape tick's writes beyond a request land


class ModelRunner:
    """Device functions over one model and the replica's global-predictor slot cache."""

    def __init__(self, model: StreamMuseModel, device: torch.device, dtype: torch.dtype,
                 cuda_graphs: bool = True, compact: bool | None = None,
                 fixed_shapes: bool | None = None) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        cfg = model.config
        self.cuda = device.type == "cuda"
        # Attention reads the whole capacity, the slots gathered: CUDA's shapes (a graph).
        self.fixed_shapes = self.cuda if fixed_shapes is None else fixed_shapes
        self.cache = SlotCache(cfg.global_layers, cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size,
                               cfg.max_frames + 1 + SPARE_POSITIONS, device, dtype)
        self.coder = FrameCoder(model, device, dtype, compact=(not self.cuda) if compact is None else compact)
        self._graphs = None
        if self.cuda and cuda_graphs:
            from streammuse.model.cuda_graphs import GraphedGenerate

            self._graphs = GraphedGenerate(self)

    @property
    def graphed(self) -> bool:
        return self._graphs is not None

    def _grow_rows(self, b: int) -> None:
        self.coder.reserve(b)

    # -- the tick ----------------------------------------------------------------------
    def generate(self, batch: TickBatch, ticks: int, feed_last: bool) -> torch.Tensor:
        """``ticks`` ticks for every row: A, then (except after the last tick, unless
        ``feed_last``) A fed, the melody guess M drawn and fed. Returns the frames drawn,
        ``(B, 2 * ticks - 1 or 2 * ticks, F)`` long, on the device, in the order
        A[t], M[t], A[t+1], ...; every row writes ``2 * ticks - 1`` (or ``2 * ticks``)
        positions from ``positions`` on (the host advances each slot's length by what the
        row's request keeps)."""
        self._grow_rows(batch.rows)
        if self._graphs is not None:
            return self._graphs.run(batch, ticks, feed_last)
        return self.generate_eager(batch, ticks, feed_last)

    def generate_eager(self, batch: TickBatch, ticks: int, feed_last: bool) -> torch.Tensor:
        """:meth:`generate` without a graph (the body a CUDA graph captures)."""
        u = self._uniforms(batch, ticks)
        h = self.cache.hidden[batch.slots, batch.positions - 1]
        out = []
        written = 0
        for i in range(ticks):
            a = self.coder.decode(h, PART_A, u[:, i, :F], batch.sampling)
            out.append(a)
            if i == ticks - 1 and not feed_last:
                break
            h = self._feed_drawn(a, PART_A, batch, written)
            m = self.coder.decode(h, PART_M, u[:, i, F:], batch.sampling)
            out.append(m)
            h = self._feed_drawn(m, PART_M, batch, written + 1)
            written += 2
        return torch.stack(out, dim=1)

    def _uniforms(self, batch: TickBatch, ticks: int) -> torch.Tensor:
        """``(B, ticks, 2F)`` float32: column ``part * F + position`` of tick ``first_tick + i``."""
        b = batch.rows
        t = (batch.first_tick[:, None] + torch.arange(ticks, device=self.device)[None, :]).reshape(-1)
        u = counter_uniforms(batch.seeds[:, None].expand(b, ticks).reshape(-1), t, 2 * F)
        return u.view(b, ticks, 2 * F).float()

    def _global_step(self, batch: TickBatch, x: torch.Tensor, query: torch.Tensor, max_query: int) -> torch.Tensor:
        """The global predictor on ``x`` ``(B, P, H)`` at positions ``query`` ``(B, P)``, or
        ``(B, H)`` at ``(B,)`` (one position per row), clamped into the capacity, continuing
        each row's slot; writes keys, values and outputs there. ``max_query``: the largest
        real position (host int)."""
        cap = self.cache.capacity
        read_len = cap if self.fixed_shapes else min(cap, max_query + 1)
        read = batch.slots if batch.read is None or self.fixed_shapes else batch.read
        one = x.dim() == 2
        if one and batch.aligned and not self.fixed_shapes:
            mask = None  # every row's one query is at max_query and reads only up to it: it sees every key
        else:
            mask = visible(read_len, query[:, None] if one else query)
        step = CacheStep(self.cache, read, batch.slots if one else batch.slots[:, None], query, read_len, mask)
        out = self.model.global_predictor(x, step, positions=query)
        step.keep(out)
        return out

    def _feed_drawn(self, frame: torch.Tensor, part: int, batch: TickBatch, written: int) -> torch.Tensor:
        """Encode the frames just drawn and run the global step at ``positions + written``."""
        query = (batch.positions + written).clamp_max(self.cache.capacity - 1)
        x = self.coder.encode_drawn(frame) + self.model.part_emb.weight[part]
        return self._global_step(batch, x, query, batch.max_position + written)

    # -- prefill -----------------------------------------------------------------------
    def prefill(self, batch: TickBatch, frames: np.ndarray, parts: np.ndarray, index: np.ndarray) -> None:
        """Feed new rows: ``frames`` ``(N, F)`` with ``parts`` ``(N,)``, placed by
        ``index`` ``(B, P)`` (0 is BOS, ``1 + k`` is frame k; a row's padding may point
        anywhere) at each row's ``positions`` on. The host advances the lengths."""
        vecs = self.model.bos.new_zeros(0, self.model.config.hidden_size)
        if len(frames):
            f = torch.as_tensor(frames.astype(np.int64), device=self.device)
            p = torch.as_tensor(parts.astype(np.int64), device=self.device)
            if not self.cuda:  # an encoding depends on the frame alone: encode each distinct one once
                key = np.ascontiguousarray(frames.astype(np.int16)).view(np.dtype((np.void, 2 * F))).ravel()
                _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
                enc = self.coder.encode(f[torch.as_tensor(first, device=self.device)])
                enc = enc[torch.as_tensor(inverse.ravel(), device=self.device)]
            else:
                enc = self.coder.encode(f)
            vecs = enc + self.model.part_emb(p)
        src = torch.cat([self.model.bos[None].to(vecs.dtype), vecs])
        x = src[torch.as_tensor(index, device=self.device)]
        p_len = index.shape[1]
        query = (batch.positions[:, None] + torch.arange(p_len, device=self.device)).clamp_max(self.cache.capacity - 1)
        self._global_step(batch, x, query, batch.max_position + p_len - 1)

    # -- tests and scoring -------------------------------------------------------------
    def teacher_logits(self, batch: TickBatch, frames: torch.Tensor, part: int) -> torch.Tensor:
        """The decoder's logits ``(B, F, V)`` at every position of given frames ``(B, F)``
        from each row's last global state, as a tick computes them when it draws those
        tokens (for comparing the runner with the training forward)."""
        return self.coder.teacher_logits(self.cache.hidden[batch.slots, batch.positions - 1], part, frames)
