"""Attention, written once: a whole causal sequence (training, the local encoder), or new
positions written into a slot cache and attending over it (the global predictor's
session contexts, the local decoder's frame in progress).

Both take the rotated ``qkv`` of a layer, ``(B, P, 3 * H)`` laid out ``[q | k | v]`` with
heads inside each part, and give the attention output ``(B, P, H)`` before ``o_proj``.

Why a slot cache of our own and not a ``transformers`` cache class: ``DynamicCache`` is a
growing tensor per sequence (``torch.cat`` on every update), and ``StaticCache`` has a slot
dimension but one write position shared by the batch, while our sessions stand at
different lengths and roll back to different ticks. A buffer with a slot per session,
per-row write positions and a length mask gives a fixed number of kernels per step,
whatever the batch size, and fixed shapes for a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

FIRST_SLOTS = 8  # slots allocated up front; doubled whenever they run out


class CausalAttention:
    """Every query sees the keys at or before it, in one call; nothing is kept."""

    def __init__(self, heads: int, dropout: float = 0.0) -> None:
        self.heads, self.dropout = heads, dropout

    def __call__(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        b, p, _ = qkv.shape
        q, k, v = qkv.view(b, p, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        ctx = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=p > 1, dropout_p=self.dropout)
        return ctx.transpose(1, 2).reshape(b, p, -1)


class SlotCache:
    """Keys and values of many sequences, one *slot* each, per layer a buffer
    ``(slots, 2, heads, capacity, head_dim)``; ``hidden`` ``(slots, capacity, H)`` keeps the
    stack's output at every position (the engine decodes from the last one and rolls back
    to any earlier one).

    Lengths live on the host (numpy): the engine knows every length without asking the
    device, so rollback (:meth:`crop`) and the sliding window are integer writes, and
    nothing waits on the device. A step's writes past a slot's length are invisible (the
    length mask) and overwritten later: rows that run on in a fixed-shape step after their
    request ended write there. Slots are allocated lowest first, so a batch of sessions
    created together reads its slots as a view; when they run out the buffers double (on
    CUDA that drops the captured graphs: their generation changes).
    """

    def __init__(self, layers: int, heads: int, head_dim: int, hidden: int, capacity: int,
                 device: torch.device, dtype: torch.dtype, slots: int = FIRST_SLOTS, with_hidden: bool = True) -> None:
        self.layers, self.heads, self.head_dim, self.hidden_size = layers, heads, head_dim, hidden
        self.capacity, self.device, self.dtype, self.with_hidden = capacity, device, dtype, with_hidden
        self.kv: list[torch.Tensor] = []
        self.hidden = torch.empty(0, capacity, hidden, device=device, dtype=dtype)
        self.lengths = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._pending: list[int] = []  # freed from other threads (GC), applied by collect()
        self.generation = 0  # bumped when the buffers are reallocated
        self._grow(slots)

    @property
    def slots(self) -> int:
        """How many slots the buffers hold (used or free)."""
        return len(self.lengths)

    def _grow(self, slots: int) -> None:
        old = self.slots
        for layer in range(self.layers):
            buf = torch.zeros(slots, 2, self.heads, self.capacity, self.head_dim, device=self.device, dtype=self.dtype)
            if layer < len(self.kv):
                buf[:old] = self.kv[layer]
                self.kv[layer] = buf
            else:
                self.kv.append(buf)
        if self.with_hidden:
            hid = torch.zeros(slots, self.capacity, self.hidden_size, device=self.device, dtype=self.dtype)
            hid[:old] = self.hidden
            self.hidden = hid
        self.lengths = np.concatenate([self.lengths, np.zeros(slots - old, dtype=np.int64)])
        self._free.extend(range(slots - 1, old - 1, -1))  # pop() hands out the lowest first
        self.generation += 1

    def reserve(self, slots: int) -> None:
        """Make room for at least ``slots`` slots now (no doubling past what is asked)."""
        if slots > self.slots:
            self._grow(slots)

    def allocate(self) -> int:
        """A free slot (length 0); the buffers double if none is left."""
        if not self._free:
            self._grow(2 * self.slots)
        slot = self._free.pop()
        self.lengths[slot] = 0
        return slot

    def free(self, slot: int) -> None:
        """Give a slot back (its contents are overwritten by its next owner)."""
        self.lengths[slot] = 0
        self._free.append(slot)
        self._free.sort(reverse=True)  # keep handing out low slots: batches stay dense

    def free_later(self, slot: int) -> None:
        """Free a slot at the next :meth:`collect` (safe from any thread: a list append)."""
        self._pending.append(slot)

    def collect(self) -> None:
        """Free the slots given back with :meth:`free_later`."""
        while self._pending:
            self.free(self._pending.pop())

    def crop(self, slot: int, length: int) -> None:
        """Roll a slot back to its first ``length`` positions (``Cache.crop``)."""
        if not 0 <= length <= self.lengths[slot]:
            raise ValueError(f"crop slot {slot} to {length}: it holds {self.lengths[slot]}")
        self.lengths[slot] = length


@dataclass
class CacheStep:
    """One call's view of a :class:`SlotCache`: where its rows' new keys and values go and
    what each query sees. An ``attention`` for the stacks (called per layer).

    ``read``: the batch's slots as a slice (a view, no copy) or an index (a gather).
    ``write_slot``, ``write_pos``: the destination of every new position, ``(B, P)``; or
    ``(B,)`` (``write_pos`` may be ``(1,)``) when every row adds one position, the steady
    state, whose activations are then ``(B, H)``: no position axis to add and take away.
    ``read_len``: how many positions are read (the capacity for fixed shapes, or the
    longest row after the write). ``mask``: bool, broadcast to ``(B, 1, P, read_len)``, a
    key is seen when at or before its query's position; None: every query sees all it reads.
    """

    cache: SlotCache
    read: slice | torch.Tensor
    write_slot: torch.Tensor
    write_pos: torch.Tensor
    read_len: int
    mask: torch.Tensor | None

    def __call__(self, layer: int, qkv: torch.Tensor) -> torch.Tensor:
        buf = self.cache.kv[layer]
        one = qkv.dim() == 2
        if one:  # one position per row: (B, 3H) is (B, 3, heads, 1, d) as it lies, no transposes
            b = qkv.shape[0]
            qkv = qkv.view(b, 3, self.cache.heads, 1, -1)
            buf[self.write_slot, :, :, self.write_pos] = qkv[:, 1:, :, 0]
            q = qkv[:, 0]
        else:
            b, p, _ = qkv.shape
            qkv = qkv.view(b, p, 3, self.cache.heads, -1)
            buf[self.write_slot, :, :, self.write_pos] = qkv[:, :, 1:]
            q = qkv[:, :, 0].transpose(1, 2)
        k, v = buf[self.read, :, :, : self.read_len].unbind(1)
        ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return ctx.view(b, -1) if one else ctx.transpose(1, 2).reshape(b, p, -1)

    def keep(self, out: torch.Tensor) -> None:
        """Write the stack's outputs (``(B, H)`` or ``(B, P, H)``) at the new positions (``cache.hidden``)."""
        self.cache.hidden[self.write_slot, self.write_pos] = out


def visible(read_len: int, query_pos: torch.Tensor) -> torch.Tensor:
    """The length mask ``(B, 1, P, read_len)``: key j is seen by a query at position q when j <= q."""
    keys = torch.arange(read_len, device=query_pos.device)
    return keys <= query_pos[:, None, :, None]
