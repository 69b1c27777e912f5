"""Melody / accompaniment split.

* POP909 files: melody = track ``MELODY``, accompaniment = ``PIANO`` + ``BRIDGE``.
* A named track (``melody_track=``), e.g. AccoMontage-3's ``melody``: that track is the
  melody, every other pitched track the accompaniment.
* StreamMUSE's own two-track files (``melody``, ``accompaniment``: the test set, runs):
  read back as written.
* Anything else: skyline extraction over all pitched (non-drum) notes.

Skyline, as implemented (the issue's and the paper's rule): at every onset the highest
starting note is a melody note; a melody note is cut where the next melody note starts,
so the melody is monophonic: the top line of the texture. Every note that is not melody
is accompaniment. A lower note that starts while a melody note still sounds therefore
becomes the melody from there on (e.g. a left-hand note under a held right-hand note);
this is what reproduces the data README's reference harmonicity of the test set (see
docs/data.md).

Whatever the rule, each part then goes through :func:`merge_unisons` (no two notes of one
pitch overlap), so a Song survives a MIDI round trip unchanged.
"""

from __future__ import annotations

import numpy as np

from streammuse.datasets import vocab
from streammuse.datasets.song import DURATION, ONSET, PITCH, Song, merge_unisons, note_array
from streammuse.datasets.tick_grid import GridMidi, Track, read_grid_midi
from streammuse.errors import BadMidiError

POP909_MELODY = "MELODY"
POP909_ACCOMPANIMENT = ("PIANO", "BRIDGE")


def skyline(notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split notes into (melody, accompaniment) by skyline extraction (see module doc)."""
    notes = note_array(notes)
    if not len(notes):
        return notes, notes
    # The highest note at each onset: last row of each onset group (sorted by onset, pitch).
    is_melody = np.r_[notes[1:, ONSET] != notes[:-1, ONSET], True]
    melody = notes[is_melody].copy()
    # Cut each melody note where the next one starts.
    if len(melody) > 1:
        gap = melody[1:, ONSET] - melody[:-1, ONSET]
        melody[:-1, DURATION] = np.minimum(melody[:-1, DURATION], gap)
    return melody, notes[~is_melody]


def split_rule(grid: GridMidi, melody_track: str | None = None) -> str:
    """Which split :func:`split_song` applies to this file.

    * ``track:<name>`` when ``melody_track`` is given;
    * ``pop909`` when the file has a ``MELODY`` track and a ``PIANO`` or ``BRIDGE`` track;
    * ``streammuse`` when its tracks are exactly ``melody`` and ``accompaniment`` (the
      test set and run folders: read back as written);
    * ``skyline`` otherwise.
    """
    names = {t.name.upper() for t in grid.tracks}
    if melody_track is not None:
        return f"track:{melody_track}"
    if POP909_MELODY in names and names & set(POP909_ACCOMPANIMENT):
        return "pop909"
    if names == {"MELODY", "ACCOMPANIMENT"}:
        return "streammuse"
    return "skyline"


def split_song(grid: GridMidi, melody_track: str | None = None, name: str | None = None,
               require_accompaniment: bool = True) -> Song:
    """Make a Song from a MIDI read onto the tick grid, choosing the split rule.

    Args:
        grid: the file's pitched tracks (:func:`read_grid_midi`).
        melody_track: take every track of this name (case-insensitive) as the melody and
            all other pitched tracks as the accompaniment. ``None``: see :func:`split_rule`.
        name: song name; defaults to the file stem.
        require_accompaniment: refuse a song whose accompaniment is empty (a test song or
            a training song needs one; a melody to accompany, ``datasets info``, does not).

    Raises:
        BadMidiError: drums only, no notes (or none on the piano keys), no such track, or
            an empty part after the split.
    """
    from pathlib import Path

    name = name or Path(grid.path).stem
    if not grid.tracks:
        raise BadMidiError(grid.path, grid.no_notes_reason())
    rule = split_rule(grid, melody_track)
    if rule == "skyline":
        melody, acc = skyline(_concat([t.notes for t in grid.tracks]))
    else:
        key = POP909_MELODY if melody_track is None else melody_track.upper()
        if not any(t.name.upper() == key for t in grid.tracks):
            names = ", ".join(sorted({t.name or "<unnamed>" for t in grid.tracks}))
            raise BadMidiError(grid.path, f"no track named {melody_track!r} (tracks: {names})")
        accompaniment_names = set(POP909_ACCOMPANIMENT) if rule == "pop909" else None
        melody = _concat([t.notes for t in grid.tracks if t.name.upper() == key])
        acc = _concat([
            t.notes for t in grid.tracks
            if t.name.upper() != key and (accompaniment_names is None or t.name.upper() in accompaniment_names)
        ])
    out = (f"; {grid.n_out_of_range} notes outside the piano range {vocab.MIN_PITCH}..{vocab.MAX_PITCH} dropped"
           if grid.n_out_of_range else "")
    if not len(melody):
        raise BadMidiError(grid.path, f"melody is empty after the split ({rule}{out})")
    if not len(acc) and require_accompaniment:
        raise BadMidiError(grid.path, f"accompaniment is empty after the split ({rule}{out})")
    return Song(name, merge_unisons(melody), merge_unisons(acc), grid.time_signatures, source=grid.path,
                notes_out_of_range=grid.n_out_of_range)


def load_song(path, melody_track: str | None = None, skyline_only: bool = False,
              require_accompaniment: bool = True) -> Song:
    """Read a MIDI file into a Song (tick grid + melody/accompaniment split).

    ``skyline_only`` forces skyline extraction over all pitched tracks, as the test set
    build does. ``require_accompaniment=False`` accepts a melody-only file.
    """
    return load_song_and_rule(path, melody_track, skyline_only, require_accompaniment)[0]


def load_song_and_rule(path, melody_track: str | None = None, skyline_only: bool = False,
                       require_accompaniment: bool = True) -> tuple[Song, str]:
    """:func:`load_song`, also returning the split rule applied (see :func:`split_rule`)."""
    grid = read_grid_midi(path)
    if skyline_only:
        if not grid.tracks:
            raise BadMidiError(grid.path, grid.no_notes_reason())
        grid = GridMidi(grid.path, [Track("all", 0, _concat([t.notes for t in grid.tracks]))],
                        grid.time_signatures, grid.n_drum_notes, grid.n_out_of_range, grid.bpm)
        melody_track = None
    song = split_song(grid, melody_track, require_accompaniment=require_accompaniment)
    return song, split_rule(grid, melody_track)


def load_melody(path) -> tuple[Song, float]:
    """The melody of a MIDI file, to be accompanied (``streammuse generate``), and its first tempo.

    The melody is every track named ``melody`` (any case) if there is one, else the
    skyline of all pitched tracks; whatever else the file holds is the Song's
    accompaniment (it may be empty). Notes off the piano keys are dropped and counted as
    for every other command; time signatures are kept.
    """
    grid = read_grid_midi(path)
    if not grid.tracks:
        raise BadMidiError(grid.path, grid.no_notes_reason())
    has_melody = any(t.name.upper() == "MELODY" for t in grid.tracks)
    song = split_song(grid, "melody" if has_melody else None, require_accompaniment=False)
    return song, grid.bpm


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return note_array(np.concatenate(parts)) if parts else note_array()
