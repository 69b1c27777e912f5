"""Summary figures of a song, as `streammuse datasets info` prints them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.skyline import load_song_and_rule
from streammuse.datasets.song import DURATION, ONSET, Song


@dataclass
class SongStats:
    """Size and texture of one song."""

    name: str
    rule: str
    bars: int
    ticks: int
    melody_notes: int
    accompaniment_notes: int
    polyphony: float
    notes_dropped: int


def polyphony(notes: np.ndarray, n_ticks: int) -> float:
    """Mean number of notes sounding per tick, over the ticks where at least one sounds.

    The same definition as muspy's ``polyphony``; NaN for a part with no notes.
    """
    if not len(notes) or n_ticks <= 0:
        return float("nan")
    # +1 at each onset, -1 at each end; the running sum is the count sounding per tick.
    change = np.zeros(n_ticks + 1, dtype=np.int64)
    np.add.at(change, notes[:, ONSET], 1)
    np.add.at(change, np.minimum(notes[:, ONSET] + notes[:, DURATION], n_ticks), -1)
    sounding = np.cumsum(change)[:n_ticks]
    active = sounding[sounding > 0]
    return float(active.mean()) if len(active) else float("nan")


def song_stats(song: Song, rule: str = "") -> SongStats:
    """Bars, ticks, notes per part, polyphony of both parts together, notes the cap drops."""
    both = np.concatenate([song.melody, song.accompaniment])
    _, _, n_dropped = song_to_frames(song)
    return SongStats(
        name=song.name,
        rule=rule,
        bars=song.n_bars,
        ticks=song.n_ticks,
        melody_notes=len(song.melody),
        accompaniment_notes=len(song.accompaniment),
        polyphony=polyphony(both, song.n_ticks),
        notes_dropped=n_dropped,
    )


def file_stats(path, melody_track: str | None = None, skyline_only: bool = False) -> SongStats:
    """:func:`song_stats` of a MIDI file, split as :func:`load_song` would."""
    song, rule = load_song_and_rule(path, melody_track, skyline_only)
    return song_stats(song, rule)
