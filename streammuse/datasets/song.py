"""`Song`: one piece on the tick grid, split into melody (M) and accompaniment (A).

A tick is 1/16 note (4 ticks per beat, the paper's section III-A). Notes are kept as
integer arrays of shape (n, 3) with columns ``(onset_tick, duration_ticks, pitch)``,
sorted by onset then pitch, so that frames, metrics and MIDI export are vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

TICKS_PER_BEAT = 4  # 1/16-note resolution, section III-A
ONSET, DURATION, PITCH = 0, 1, 2  # columns of a note array


class Note(NamedTuple):
    """One note on the tick grid."""

    onset_tick: int
    duration_ticks: int
    pitch: int


def note_array(notes: object = ()) -> np.ndarray:
    """Return ``notes`` as a sorted ``(n, 3)`` int32 array ``(onset, duration, pitch)``."""
    arr = np.asarray(list(notes) if not isinstance(notes, np.ndarray) else notes, dtype=np.int32)
    arr = arr.reshape(-1, 3)
    order = np.lexsort((arr[:, PITCH], arr[:, ONSET]))
    return np.ascontiguousarray(arr[order])


def merge_unisons(part: np.ndarray) -> np.ndarray:
    """Make a part playable on one keyboard: no two notes of one pitch overlap.

    Notes of the same pitch and onset collapse into the longest; a note is cut where the
    next note of its pitch starts. Merged tracks (POP909's PIANO + BRIDGE, all tracks of
    a skyline split) double notes this way, and MIDI cannot store such overlaps (one
    note-off would end both), so a Song written and read back would change otherwise.
    """
    part = note_array(part)
    if len(part) < 2:
        return part
    part = part[np.lexsort((-part[:, DURATION], part[:, ONSET], part[:, PITCH]))]
    same_pitch = part[1:, PITCH] == part[:-1, PITCH]
    keep = np.r_[True, ~same_pitch | (part[1:, ONSET] != part[:-1, ONSET])]
    part = part[keep].copy()
    nxt = np.flatnonzero(part[1:, PITCH] == part[:-1, PITCH])
    part[nxt, DURATION] = np.minimum(part[nxt, DURATION], part[nxt + 1, ONSET] - part[nxt, ONSET])
    return note_array(part)


@dataclass
class Song:
    """A piece on the 1/16-note tick grid.

    Attributes:
        name: identifier (file stem).
        melody: M as an ``(n, 3)`` note array.
        accompaniment: A as an ``(n, 3)`` note array.
        time_signatures: ``(tick, numerator, denominator)`` changes, first at tick 0.
        source: where the song came from (path or data set name).
        notes_out_of_range: notes of the source file outside the piano keys, dropped when
            it was read (docs/data.md); 0 for songs made in code.
    """

    name: str
    melody: np.ndarray
    accompaniment: np.ndarray
    time_signatures: list[tuple[int, int, int]] = field(default_factory=lambda: [(0, 4, 4)])
    source: str = ""
    notes_out_of_range: int = 0

    @property
    def n_ticks(self) -> int:
        """Length in ticks: the end of the last note of either part."""
        ends = [p[:, ONSET] + p[:, DURATION] for p in (self.melody, self.accompaniment) if len(p)]
        return int(max(e.max() for e in ends)) if ends else 0

    @property
    def n_bars(self) -> int:
        """Number of bars, following the time-signature changes."""
        return len(bar_starts(self.time_signatures, self.n_ticks))

    def crop(self, n_ticks: int) -> "Song":
        """The first ``n_ticks`` ticks of the song; notes running past the end are cut."""
        return Song(
            self.name,
            _crop(self.melody, n_ticks),
            _crop(self.accompaniment, n_ticks),
            [ts for ts in self.time_signatures if ts[0] < n_ticks] or [(0, 4, 4)],
            self.source,
            self.notes_out_of_range,
        )

    def transpose(self, semitones: int, low: int, high: int) -> "Song":
        """Shift every pitch by ``semitones``; raise ``ValueError`` if any leaves [low, high]."""
        shifted = []
        for part in (self.melody, self.accompaniment):
            p = part.copy()
            p[:, PITCH] += semitones
            if len(p) and (p[:, PITCH].min() < low or p[:, PITCH].max() > high):
                raise ValueError(f"shift {semitones:+d} takes {self.name} outside pitch range [{low}, {high}]")
            shifted.append(p)
        return Song(self.name, shifted[0], shifted[1], list(self.time_signatures), self.source,
                    self.notes_out_of_range)

    def transpose_limits(self, low: int, high: int) -> tuple[int, int]:
        """The smallest and largest shift that :meth:`transpose` accepts for ``[low, high]``."""
        lo, hi = self.pitch_range()
        if lo == hi == 0 and not (len(self.melody) or len(self.accompaniment)):
            return low - high, high - low
        return low - lo, high - hi

    def pitch_range(self) -> tuple[int, int]:
        """Lowest and highest pitch over both parts."""
        both = np.concatenate([self.melody[:, PITCH], self.accompaniment[:, PITCH]])
        return (int(both.min()), int(both.max())) if len(both) else (0, 0)


def _crop(part: np.ndarray, n_ticks: int) -> np.ndarray:
    kept = part[part[:, ONSET] < n_ticks].copy()
    kept[:, DURATION] = np.minimum(kept[:, DURATION], n_ticks - kept[:, ONSET])
    return kept


def bar_starts(time_signatures: list[tuple[int, int, int]], n_ticks: int) -> list[int]:
    """Ticks at which bars start, from the time-signature changes ``(tick, num, den)``."""
    starts: list[int] = []
    changes = sorted(time_signatures) or [(0, 4, 4)]
    for i, (tick, num, den) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else max(n_ticks, tick + 1)
        bar_len = max(1, round(num * 4 * TICKS_PER_BEAT / den))
        starts.extend(range(tick, end, bar_len))
    return [s for s in starts if s < max(n_ticks, 1)]
