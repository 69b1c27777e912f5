"""Sampling: temperature, top-k, top-p (nucleus) and the frame grammar, as logit masks."""

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
    seed: the session's ``torch.Generator`` seed, so a session replays exactly.
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


_NEG = float("-inf")


def note_pitch_index(device: torch.device | str = "cpu") -> torch.Tensor:
    """Per token id, its pitch index (0..87) for note tokens and -1 for PAD/EOF/BOS."""
    ids = torch.arange(vocab.VOCAB_SIZE, device=device)
    return torch.where(ids >= vocab.NOTE_OFFSET, (ids - vocab.NOTE_OFFSET) // vocab.N_DURATIONS, -1)


def grammar_mask(logits: torch.Tensor, last_pitch: torch.Tensor, position: int, pitch_index: torch.Tensor) -> torch.Tensor:
    """Allow only what keeps a frame valid: notes above the frame's last pitch (ascending,
    no repeated pitch) or EOF; only EOF at the last position (at most 4 notes).

    Args:
        logits: ``(N, V)``. last_pitch: ``(N,)`` pitch index of the last note, -1 if none.
        position: token position in the frame (0..FRAME_LEN-1).
    """
    allowed = pitch_index.unsqueeze(0) > last_pitch.unsqueeze(1)
    if position >= vocab.FRAME_LEN - 1:
        allowed = torch.zeros_like(allowed)
    allowed[:, vocab.EOF] = True
    return logits.masked_fill(~allowed, _NEG)


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Temperature, then top-k, then top-p on ``(N, V)`` logits."""
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, _NEG)
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches p (the top token always stays).
        drop = probs.cumsum(-1) - probs >= sampling.top_p
        sorted_logits = sorted_logits.masked_fill(drop, _NEG)
        logits = torch.full_like(logits, _NEG).scatter(-1, order, sorted_logits)
    return logits


def sample_rows(logits: torch.Tensor, samplings: list[Sampling], generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of ``(N, V)`` logits, row i with its own settings and generator
    (one session each). Rows with the same temperature / top-k / top-p are filtered in one
    call; each row is still drawn from its own generator, so a session's draws do not
    depend on which other sessions share its batch."""
    probs = torch.empty_like(logits, dtype=torch.float32)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samplings):
        groups.setdefault((s.temperature, s.top_k, s.top_p), []).append(i)
    for rows in groups.values():
        probs[rows] = filter_logits(logits[rows].float(), samplings[rows[0]]).softmax(-1)
    # Drawn on the CPU with each session's CPU generator: the same draws on any device.
    probs = probs.cpu()
    return torch.cat([torch.multinomial(probs[i : i + 1], 1, generator=g)[:, 0] for i, g in enumerate(generators)])


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


def counter_uniforms(seeds: torch.Tensor, counters: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, width)`` float64 uniforms in (0, 1), a pure function of (seed, counter, column):
    a counter-based generator, so a row's numbers never depend on the other rows."""
    cols = torch.arange(width, device=seeds.device, dtype=torch.int64)
    key = _splitmix64(_splitmix64(seeds.long() + counters.long() * _GOLDEN)[:, None] + cols[None, :])
    return (_shr(key, 11).double() + 0.5) * 2.0**-53


def sample_rows_counter(logits: torch.Tensor, samplings: list[Sampling], seeds: torch.Tensor,
                        counters: torch.Tensor) -> torch.Tensor:
    """Like :func:`sample_rows`, with draws from :func:`counter_uniforms` on the logits'
    device: no per-session call, no copy to the host (the engine's choice on CUDA).

    Row i draws ``argmax(p_i / q_i)`` with ``q_i ~ Exp(1)``: the exponential trick
    ``torch.multinomial`` uses for one sample, so it samples p_i exactly.
    """
    probs = torch.empty_like(logits, dtype=torch.float64)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samplings):
        groups.setdefault((s.temperature, s.top_k, s.top_p), []).append(i)
    for rows in groups.values():
        probs[rows] = filter_logits(logits[rows].float(), samplings[rows[0]]).softmax(-1).double()
    q = -torch.log(counter_uniforms(seeds, counters, logits.shape[-1]))
    return torch.argmax(probs / q, dim=-1)
