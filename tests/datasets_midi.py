"""Small MIDI files built in tests (shared by the tests/test_datasets_*.py files)."""

from pathlib import Path

import mido

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POP909 = SHARED / "pop909"
TESTSET_SRC = SHARED / "testset-src"


def write_midi(path, tracks, resolution=480, tempos=((0, 500000),), time_signatures=((0, 4, 4),)):
    """Write a type-1 MIDI with mido, in raw MIDI ticks.

    tracks: ``[(name, channel, [(onset_midi_ticks, duration_midi_ticks, pitch), ...]), ...]``
    tempos: ``[(midi_tick, microseconds_per_beat), ...]``.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=resolution)
    meta = [(t, mido.MetaMessage("set_tempo", tempo=us)) for t, us in tempos]
    meta += [(t, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for t, n, d in time_signatures]
    mid.tracks.append(_track(meta))
    for name, channel, notes in tracks:
        events = [(0, mido.MetaMessage("track_name", name=name))]
        for onset, dur, pitch in notes:
            events.append((onset + dur, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
            events.append((onset, mido.Message("note_on", channel=channel, note=pitch, velocity=80)))
        mid.tracks.append(_track(events))
    mid.save(str(path))
    return Path(path)


def _track(events):
    track = mido.MidiTrack()
    now = 0
    # note_off sorts before note_on at the same tick (stable sort on tick, off first).
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type != "note_off")):
        track.append(msg.copy(time=tick - now))
        now = tick
    return track
