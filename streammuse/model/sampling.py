"""Sampling on the device: temperature, top-k, top-p (nucleus) and the frame grammar, each
row with its own settings, drawn from a counter-based random stream.

A draw is a pure function of (seed, tick, part, position in the frame) and the logits: no
generator state, no per-session call, nothing read back to the host. So a seed plays the
same notes alone or batched, on CPU or GPU (up to float rounding of the logits), however
many positions ran, and whether a request ran in one call or tick by tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streammuse.datasets import vocab
from streammuse.errors import StreamMuseError


@dataclass(frozen=True)
class Sampling:
    """How the local decoder picks tokens.

    temperature: logits are divided by it (> 0). top_k: keep the k likeliest tokens
    (0: all). top_p: keep the smallest set whose probability reaches p (1.0: all).
    seed: keys the session's random stream, so a session replays exactly.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise StreamMuseError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise StreamMuseError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise StreamMuseError(f"top_p must be in (0, 1], got {self.top_p}")


def pitch_rank(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(1, V)`` per token id: its pitch index 0..87 for notes, a number above every pitch
    for EOF (always allowed), below every pitch for PAD and BOS (never drawn)."""
    ids = torch.arange(vocab.VOCAB_SIZE, device=device)
    rank = torch.where(ids >= vocab.NOTE_OFFSET, (ids - vocab.NOTE_OFFSET) // vocab.N_DURATIONS, -2)
    rank[vocab.EOF] = vocab.N_PITCHES + 1
    return rank[None, :]


def _as_int64(c: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch stores."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _M1, _M2 = (_as_int64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 (wrapping arithmetic, as on every torch backend)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def counter_uniforms(seeds: torch.Tensor, ticks: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, width)`` float64 uniforms in (0, 1), a pure function of (seed, tick, column):
    the engine's column is ``part * FRAME_LEN + position``."""
    cols = torch.arange(width, device=seeds.device, dtype=torch.int64)
    key = _splitmix64(_splitmix64(seeds.long() + ticks.long() * _GOLDEN)[:, None] + cols[None, :])
    return (_shr(key, 11).double() + 0.5) * 2.0**-53


@dataclass
class RowSampling:
    """Every row's settings as device tensors ``(B, 1)``, and which filters any row uses
    (host booleans: a filter nobody asked for is not computed)."""

    temperature: torch.Tensor
    top_k: torch.Tensor  # 1 .. V (0 in a Sampling means V)
    top_p: torch.Tensor
    any_top_k: bool
    any_top_p: bool

    @classmethod
    def of(cls, samplings: list[Sampling], device: torch.device) -> "RowSampling":
        v = vocab.VOCAB_SIZE
        ks = [min(s.top_k, v) if s.top_k else v for s in samplings]
        host = torch.tensor([[s.temperature, k, s.top_p] for s, k in zip(samplings, ks)], dtype=torch.float64)
        host = host.to(device)
        return cls(host[:, :1].float(), host[:, 1:2].long(), host[:, 2:3].float(),
                   any(k < v for k in ks), any(s.top_p < 1.0 for s in samplings))

    def take(self, rows: torch.Tensor) -> "RowSampling":
        """The settings of some rows (an index)."""
        return RowSampling(self.temperature[rows], self.top_k[rows], self.top_p[rows], self.any_top_k, self.any_top_p)



def draw(logits: torch.Tensor, disallowed: torch.Tensor, u: torch.Tensor, s: RowSampling) -> torch.Tensor:
    """One token per row of ``(B, V)`` logits by inverse-CDF sampling in sorted order.

    ``disallowed`` ``(B, V)``: the grammar's mask. The kept tokens are a prefix of the
    sorted order: the first top_k, and of those the smallest set whose probability (within
    the top_k) reaches top_p, as temperature, then top-k, then top-p filter. The token is
    the first of that prefix whose cumulative probability reaches ``u`` ``(B, 1)`` times
    the prefix's mass. Returns ``(B, 1)`` token ids.
    """
    logits = (logits if logits.dtype == torch.float32 else logits.float()) / s.temperature
    logits = logits.masked_fill(disallowed, float("-inf"))
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    p = sorted_logits.softmax(dim=-1)
    c = p.cumsum(dim=-1)
    last = None  # index of the last kept token, (B, 1)
    if s.any_top_p:
        bound = s.top_p * c.gather(-1, s.top_k - 1) if s.any_top_k else s.top_p
        n = ((c - p) < bound).sum(dim=-1, keepdim=True)
        if s.any_top_k:
            n = torch.minimum(n, s.top_k)
        last = n - 1
    elif s.any_top_k:
        last = s.top_k - 1
    target = u * (c.gather(-1, last) if last is not None else c[:, -1:])
    idx = (c < target).sum(dim=-1, keepdim=True)
    idx = torch.minimum(idx, last) if last is not None else idx.clamp_max(logits.shape[-1] - 1)
    return order.gather(-1, idx)
