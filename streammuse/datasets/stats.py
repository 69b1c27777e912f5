"""Summary figures of a song, as `streammuse datasets info` prints them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.skyline import load_song_and_rule
from streammuse.datasets.song import Song


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
    notes_dropped: int  # by the 4-note cap
    notes_out_of_range: int  # off the piano keys, dropped when the file was read


def polyphony(notes: np.ndarray) -> float:
    """Mean number of pitches sounding per tick, over the ticks where at least one sounds:
    ``muspy.polyphony`` on the tick grid. NaN for no notes."""
    import muspy

    from streammuse.datasets.muspy_music import part_to_music

    return float(muspy.polyphony(part_to_music(notes))) if len(notes) else math.nan


def song_stats(song: Song, rule: str = "") -> SongStats:
    """Bars, ticks, notes per part, polyphony of both parts together, notes the cap drops
    and notes dropped off the piano keys."""
    _, _, n_dropped = song_to_frames(song)
    return SongStats(
        name=song.name,
        rule=rule,
        bars=song.n_bars,
        ticks=song.n_ticks,
        melody_notes=len(song.melody),
        accompaniment_notes=len(song.accompaniment),
        polyphony=polyphony(np.concatenate([song.melody, song.accompaniment])),
        notes_dropped=n_dropped,
        notes_out_of_range=song.notes_out_of_range,
    )


def file_stats(path, melody_track: str | None = None, skyline_only: bool = False) -> SongStats:
    """:func:`song_stats` of a MIDI file, split as :func:`load_song` would; a melody-only
    file is fine (its accompaniment is empty)."""
    song, rule = load_song_and_rule(path, melody_track, skyline_only, require_accompaniment=False)
    return song_stats(song, rule)
