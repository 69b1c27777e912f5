"""A streaming session as the engine holds it, and the check every frame sent to it passes.

The session's global-predictor context lives in a slot of the replica's
:class:`~streammuse.model.attention.SlotCache`; the session only knows which slot.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from streammuse.datasets import vocab
from streammuse.datasets.frames import empty_frames
from streammuse.errors import StreamMuseError
from streammuse.model.attention import SlotCache
from streammuse.model.requests import EngineRequest, GenJob  # noqa: F401 - re-exported
from streammuse.model.sampling import Sampling


@dataclass(eq=False)
class SessionState:
    """One session's history and where its cache is (see the engine's module docstring).

    ``slot`` is taken on the session's first request and given back by
    ``StreamingEngine.release`` or when the state is garbage-collected.
    """

    sampling: Sampling
    melody: np.ndarray
    accompaniment: np.ndarray
    slots: SlotCache | None = None
    slot: int | None = None
    live: bool = False  # the slot holds [BOS, cache_rows]; False: rebuilt on the next request
    cache_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, vocab.FRAME_LEN), np.int16))
    win_start: int = 0  # absolute row of the first cached row after BOS (always even)
    requests: int = 0
    released: bool = False
    running: bool = False  # a GenJob of this session is begun and not done yet
    _finalizer: weakref.finalize | None = field(default=None, repr=False)

    @property
    def cached_positions(self) -> int:
        """Positions in the session's slot, BOS included (0 before its first request)."""
        return int(self.slots.lengths[self.slot]) if self.live else 0

    @property
    def hidden(self) -> torch.Tensor | None:
        """Global outputs at every cached position, BOS first, ``(1 + rows, H)``."""
        if not self.live:
            return None
        return self.slots.hidden[self.slot, : int(self.slots.lengths[self.slot])]


def check_frames(frames, name: str) -> np.ndarray:
    """``frames`` as int16 ``(k, FRAME_LEN)`` if every row is a valid frame, else StreamMuseError.

    Valid: note tokens in strictly ascending pitch, then EOF, then PAD.
    """
    arr = np.asarray(frames)
    if arr.ndim != 2 or arr.shape[1] != vocab.FRAME_LEN or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise StreamMuseError(f"{name}: expected integer frames of shape (n, {vocab.FRAME_LEN}), got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab.VOCAB_SIZE):
        bad = arr[(arr < 0) | (arr >= vocab.VOCAB_SIZE)][0]
        raise StreamMuseError(f"{name}: token {bad} outside the vocabulary [0, {vocab.VOCAB_SIZE}) (pitch out of range?)")
    is_note = arr >= vocab.NOTE_OFFSET
    n_notes = np.cumprod(is_note, axis=1).sum(axis=1)
    rows = np.arange(len(arr))
    ok = arr[rows, np.minimum(n_notes, vocab.FRAME_LEN - 1)] == vocab.EOF
    ok &= n_notes < vocab.FRAME_LEN
    after = np.arange(vocab.FRAME_LEN)[None, :] > n_notes[:, None]
    ok &= ~np.any(after & (arr != vocab.PAD), axis=1)
    pitch = np.where(is_note, (arr - vocab.NOTE_OFFSET) // vocab.N_DURATIONS, 10**6)
    ascending = np.diff(pitch, axis=1) > 0
    ok &= ~np.any(~ascending & (np.arange(vocab.FRAME_LEN - 1)[None, :] < n_notes[:, None] - 1), axis=1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise StreamMuseError(f"{name}: row {i} {arr[i].tolist()} is not a frame (notes in ascending pitch, EOF, PAD)")
    return arr.astype(np.int16)




def check_chunks(chunks: list) -> list[np.ndarray]:
    """Every request's melody chunk through :func:`check_frames`: in one call when all are
    frame arrays (the usual case: one frame each), else (or when one is bad, to name it)
    one by one."""
    chunks = [c if len(c) else empty_frames(0) for c in chunks]
    arrays = [np.asarray(c) for c in chunks]
    if all(a.ndim == 2 and a.shape[1:] == (vocab.FRAME_LEN,) for a in arrays):
        try:
            flat = check_frames(np.concatenate(arrays), "melody_frames")
            return np.split(flat, np.cumsum([len(a) for a in arrays])[:-1])
        except StreamMuseError:
            pass
    return [check_frames(c, "melody_frames") for c in chunks]
