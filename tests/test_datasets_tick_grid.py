"""MIDI -> the 1/16-note tick grid: tempo maps, resolutions, time signatures, drums."""

import numpy as np
import pytest
from datasets_midi import write_midi

from streammuse.datasets.song import Song, bar_starts, note_array
from streammuse.datasets.tick_grid import read_grid_midi, song_to_midi


@pytest.mark.parametrize("resolution", [96, 960])
def test_tempo_map_notes_land_on_their_beat_ticks(tmp_path, resolution):
    per_tick = resolution // 4  # MIDI ticks per 1/16 note
    rng = np.random.default_rng(resolution)
    # A tempo change on every 1/16 for 16 bars: 256 changes, 40..240 BPM.
    tempos = [(t * per_tick, int(60e6 / bpm)) for t, bpm in enumerate(rng.uniform(40, 240, 256))]
    # Notes on grid ticks, some nudged by under half a tick (human timing), which must round back.
    grid_notes = [(t, d, 48 + (t % 40)) for t, d in zip(range(0, 256, 3), [1, 2, 3, 4, 6, 8] * 50)]
    nudge = [0, per_tick // 3, -(per_tick // 3)]
    midi_notes = [(max(0, o * per_tick + nudge[i % 3]), d * per_tick, p) for i, (o, d, p) in enumerate(grid_notes)]
    path = write_midi(tmp_path / "tempo.mid", [("piano", 0, midi_notes)], resolution=resolution, tempos=tempos,
                      time_signatures=((0, 4, 4), (8 * 16 * per_tick, 3, 4)))
    grid = read_grid_midi(path)
    (track,) = grid.tracks
    assert track.notes[:, [0, 2]].tolist() == note_array(grid_notes)[:, [0, 2]].tolist()
    # A nudged start shortens or lengthens by under half a tick: durations within one tick.
    assert np.abs(track.notes[:, 1] - note_array(grid_notes)[:, 1]).max() <= 1
    assert grid.time_signatures == [(0, 4, 4), (128, 3, 4)]
    # 8 bars of 4/4 (16 ticks) then 3/4 bars (12 ticks) up to tick 256.
    assert bar_starts(grid.time_signatures, 256) == list(range(0, 128, 16)) + list(range(128, 256, 12))


def test_drums_are_dropped_and_counted(tmp_path):
    path = write_midi(tmp_path / "d.mid", [("kit", 9, [(0, 120, 36)] * 1 + [(480, 120, 38)]),
                                           ("bass", 1, [(0, 480, 40)])])
    grid = read_grid_midi(path)
    assert [t.name for t in grid.tracks] == ["bass"] and grid.n_drum_notes == 2


def test_song_to_midi_round_trip_at_any_bpm(tmp_path):
    song = Song("x", note_array([(0, 4, 72), (4, 12, 74), (16, 1, 76)]),
                note_array([(0, 16, 48), (0, 16, 55), (16, 3, 50)]), [(0, 4, 4), (16, 6, 8)])
    for bpm in (60.0, 133.0):
        pm = song_to_midi(song, bpm=bpm, path=tmp_path / f"{bpm}.mid")
        assert [i.name for i in pm.instruments] == ["melody", "accompaniment"]
        assert pm.instruments[0].notes[1].start == pytest.approx(4 * 60 / (bpm * 4))
        grid = read_grid_midi(tmp_path / f"{bpm}.mid")
        assert grid.tracks[0].notes.tolist() == song.melody.tolist()
        assert grid.tracks[1].notes.tolist() == song.accompaniment.tolist()
        assert grid.time_signatures == [(0, 4, 4), (16, 6, 8)]
