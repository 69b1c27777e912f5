"""The tick-aligned accompaniment buffer with backups (section IV-A, Fig. 2).

Each tick t of the song has one slot. A response to the request for ticks
s .. s+GL-1 (request tick s) offers frame i for tick s + i:

* it is written only if tick s + i has not started yet: the arrival is strictly before
  the tick's onset, no grace period (late frames are dropped);
* it overwrites what the slot holds only if its request tick is at least the slot's:
  the newest generation wins, an older response arriving after a newer one is ignored;
* the slot remembers the request id and i, the frame's index in its generation, which
  is the staleness S(t) when the frame is played.

At each tick's onset the slot is played: I(t) = 1 if it holds a frame, else a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Played:
    """What was played at tick t: I(t), S(t) and the frame's request (-1 when a miss)."""

    tick: int
    available: bool
    staleness: int
    request_id: int
    request_tick: int
    frame: np.ndarray | None


class TickBuffer:
    """Slots for ticks ``0 .. n_ticks-1``; ``next_tick`` is the first tick not yet started."""

    def __init__(self, n_ticks: int) -> None:
        self.n_ticks = n_ticks
        self.frames: list[np.ndarray | None] = [None] * n_ticks
        self.request_id = np.full(n_ticks, -1, dtype=np.int64)
        self.request_tick = np.full(n_ticks, -1, dtype=np.int64)
        self.index = np.full(n_ticks, -1, dtype=np.int64)
        self.next_tick = 0

    def offer(self, request_id: int, request_tick: int, frames: np.ndarray | list) -> int:
        """Offer a response's frames (frame i is for tick ``request_tick + i``).

        Called at the arrival time; ticks that have started (``< next_tick``) are late.

        Returns:
            How many frames were written.
        """
        written = 0
        for i, frame in enumerate(frames):
            t = request_tick + i
            if t < self.next_tick or t >= self.n_ticks:
                continue
            if request_tick < self.request_tick[t]:
                continue  # an older generation never overwrites a newer one
            self.frames[t] = frame
            self.request_id[t] = request_id
            self.request_tick[t] = request_tick
            self.index[t] = i
            written += 1
        return written

    def play(self, tick: int) -> Played:
        """Start tick ``tick``: play its slot (if any) and close it to later arrivals."""
        if tick != self.next_tick:
            raise ValueError(f"ticks are played in order: expected {self.next_tick}, got {tick}")
        self.next_tick = tick + 1
        frame = self.frames[tick]
        if frame is None:
            return Played(tick, False, -1, -1, -1, None)
        return Played(tick, True, int(self.index[tick]), int(self.request_id[tick]), int(self.request_tick[tick]), frame)
