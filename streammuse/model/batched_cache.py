"""The batched KV cache of a replica: every session's global-predictor keys and values in
one buffer per layer, one *slot* per session, and the step that runs all sessions at once.

Why our own and not a ``transformers`` cache class: ``DynamicCache`` is one growing tensor
per sequence (``torch.cat`` on every update, one call per session), and ``StaticCache`` has
a slot dimension but one write position (``cache_position``) shared by the whole batch,
while our sessions all stand at different lengths and roll back to different ticks. A
slot buffer with per-slot lengths and a length mask for
``scaled_dot_product_attention`` gives what we need with a fixed number of kernels per
step whatever the batch size B: one index write per layer for the new keys/values, one
gather (or a view) of the batch's slots, one masked attention call.

Layout, per layer: ``keys[l]`` and ``values[l]`` are ``(slots, heads, capacity, head_dim)``;
``hidden`` is ``(slots, capacity, H)``, the global output at every cached position (the
engine samples from the last one and rolls back to any earlier one). ``lengths`` lives on
the host (numpy): the engine knows every length without asking the device, so rollback
(``crop``) and the sliding window are plain integer writes, and nothing syncs.

Position 0 of a slot is BOS; capacity is W + 1 (the engine's sliding window never keeps
more than W = ``max_frames`` rows). Slots are allocated and freed by the engine; when they
run out the buffers double (on CUDA that drops the captured graphs, see ``cuda_step``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streammuse.model.modeling import run_layers

FIRST_SLOTS = 8  # slots allocated up front; doubled whenever they run out


class SlotCache:
    """Keys, values and global outputs of every session's global-predictor context."""

    def __init__(self, layers: int, heads: int, head_dim: int, hidden: int, capacity: int,
                 device: torch.device, dtype: torch.dtype, slots: int = FIRST_SLOTS) -> None:
        self.layers, self.heads, self.head_dim, self.hidden_size = layers, heads, head_dim, hidden
        self.capacity, self.device, self.dtype = capacity, device, dtype
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.hidden = torch.empty(0, capacity, hidden, device=device, dtype=dtype)
        self.lengths = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._pending: list[int] = []  # freed from other threads (GC), applied by collect()
        self.generation = 0  # bumped when the buffers are reallocated (graphs must be re-captured)
        self._grow(slots)

    @property
    def slots(self) -> int:
        """How many slots the buffers hold (used or free)."""
        return len(self.lengths)

    def _grow(self, slots: int) -> None:
        """Reallocate the buffers for ``slots`` slots, keeping what the old ones held."""
        old = self.slots
        shape = (slots, self.heads, self.capacity, self.head_dim)
        for store in (self.keys, self.values):
            for layer in range(self.layers):
                buf = torch.zeros(shape, device=self.device, dtype=self.dtype)
                if store[layer:]:
                    buf[:old] = store[layer]
                    store[layer] = buf
                else:
                    store.append(buf)
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

    def last_hidden(self, slots: np.ndarray) -> torch.Tensor:
        """The global output at each slot's last position, ``(B, H)``."""
        idx = torch.as_tensor(slots, device=self.device)
        pos = torch.as_tensor(self.lengths[slots] - 1, device=self.device)
        return self.hidden[idx, pos]


class SlotView:
    """What a session sees of its slot (the old ``DynamicCache`` questions still work)."""

    def __init__(self, cache: SlotCache, slot: int) -> None:
        self.cache, self.slot = cache, slot

    def get_seq_length(self) -> int:
        """Cached positions, BOS included."""
        return int(self.cache.lengths[self.slot])


def _batch_view(cache: SlotCache, slots: np.ndarray) -> tuple[slice | torch.Tensor, np.ndarray]:
    """How to read the batch's slots: a slice of the buffer when they are dense enough
    (no copy: extra slots in the range are computed and dropped), else an index (a gather).

    Returns the selector and, per batch row, its row in what the selector reads.
    """
    lo, hi = int(slots.min()), int(slots.max()) + 1
    if hi - lo <= 2 * len(slots):
        return slice(lo, hi), slots - lo
    return torch.as_tensor(slots, device=cache.device), np.arange(len(slots))


class _StepIndex:
    """Where a step's rows go: the (slot, position) of every real row, the slice or index
    that reads the batch's slots, and the length mask over what it reads."""

    def __init__(self, cache: SlotCache, slots: np.ndarray, n_new: np.ndarray, p: int, dev: torch.device) -> None:
        start = cache.lengths[slots]
        end = start + n_new
        if int(end.max()) > cache.capacity:
            raise RuntimeError(f"slot overflow: {int(end.max())} positions > capacity {cache.capacity}")
        self.q_pos = torch.as_tensor(start[:, None] + np.arange(p)[None, :], device=dev)  # (B, P)
        self.t_used, self.end = int(end.max()), end
        self.sel, rows = _batch_view(cache, slots)
        width = self.sel.stop - self.sel.start if isinstance(self.sel, slice) else len(slots)
        # The batch's rows in what the selector reads (None: the same rows, in order).
        self.rows = None if width == len(slots) and np.array_equal(rows, np.arange(width)) else \
            torch.as_tensor(rows, device=dev)
        if p == 1:  # the steady state: every row is real
            self.real = None
            self.w_slot, self.w_pos = torch.as_tensor(slots, device=dev), self.q_pos[:, 0]
        else:  # only the real rows are written: (slot, position) pairs, flattened
            real = np.arange(p)[None, :] < n_new[:, None]
            self.real = torch.as_tensor(real, device=dev)
            self.w_slot, self.w_pos = torch.as_tensor(np.repeat(slots, n_new), device=dev), self.q_pos[self.real]
        # A key is seen when it is at or before the query's position (causal, and never
        # past the slot's new length); rows read but not in the batch see nothing.
        qpos = self.q_pos
        if self.rows is not None:
            qpos = torch.full((width, p), -1, device=dev, dtype=torch.long)
            qpos[self.rows] = self.q_pos
        self.mask = torch.arange(self.t_used, device=dev)[None, None, None, :] <= qpos[:, None, :, None]

    def pick(self, t: torch.Tensor) -> torch.Tensor:
        """The real rows of a ``(B, P, ...)`` tensor, flattened to ``(N, ...)``."""
        return t[:, 0] if self.real is None else t[self.real]

    def attend(self, cache: SlotCache, li: int, q: torch.Tensor, scale: float) -> torch.Tensor:
        """Masked attention of ``q`` ``(B, heads, P, d)`` over the batch's slots of layer ``li``."""
        if self.rows is not None:
            q_read = q.new_zeros((self.mask.shape[0],) + q.shape[1:])
            q_read[self.rows] = q
            q = q_read
        keys, values = cache.keys[li][self.sel, :, : self.t_used], cache.values[li][self.sel, :, : self.t_used]
        ctx = nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=self.mask, scale=scale)
        return ctx if self.rows is None else ctx[self.rows]


def slot_step(gp: nn.Module, cache: SlotCache, x: torch.Tensor, slots: np.ndarray, n_new: np.ndarray) -> torch.Tensor:
    """The global predictor over new rows of many sessions, each continuing its own slot.

    Args:
        gp: the global predictor (a ``LlamaModel``; its layers are called module by module).
        x: ``(B, P, H)`` input frame vectors; row b holds ``n_new[b]`` real rows, then padding.
        slots: ``(B,)`` distinct slot of each row. n_new: ``(B,)`` rows each adds (>= 1).

    Returns:
        ``(B, P, H)`` global outputs (padding positions hold garbage). The keys, values and
        outputs of the real rows are written into the slots and their lengths advanced.
    """
    b, p, _ = x.shape
    idx = _StepIndex(cache, slots, n_new, p, x.device)

    def attend(li: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        cache.keys[li][idx.w_slot, :, idx.w_pos] = idx.pick(k.transpose(1, 2)).to(cache.dtype)
        cache.values[li][idx.w_slot, :, idx.w_pos] = idx.pick(v.transpose(1, 2)).to(cache.dtype)
        return idx.attend(cache, li, q, scale)

    out = run_layers(gp, x, idx.q_pos, attend)
    cache.hidden[idx.w_slot, idx.w_pos] = idx.pick(out).to(cache.dtype)
    cache.lengths[slots] = idx.end
    return out
