"""Skyline extraction and the split rules, on hand-made cases."""

import pytest
from datasets_midi import write_midi

from streammuse.datasets.skyline import load_song, skyline
from streammuse.datasets.song import merge_unisons, note_array
from streammuse.errors import BadMidiError


def split(notes):
    mel, acc = skyline(note_array(notes))
    return mel.tolist(), acc.tolist()


def test_chord_top_note_is_melody():
    assert split([(0, 4, 60), (0, 4, 64), (0, 4, 67)]) == ([[0, 4, 67]], [[0, 4, 60], [0, 4, 64]])


def test_every_onset_gives_its_top_note_to_the_melody():
    # 65 starts under the still-sounding 72: it is the top of its onset, so the melody
    # steps down to it and 72 is cut there.
    assert split([(0, 8, 72), (2, 4, 65)]) == ([[0, 2, 72], [2, 4, 65]], [])
    assert split([(0, 8, 72), (0, 8, 48), (2, 4, 65), (2, 4, 60)]) == (
        [[0, 2, 72], [2, 4, 65]], [[0, 8, 48], [2, 4, 60]])


def test_higher_note_cuts_the_melody():
    assert split([(0, 8, 72), (4, 4, 76)]) == ([[0, 4, 72], [4, 4, 76]], [])


def test_same_pitch_restrike_cuts_the_melody():
    assert split([(0, 8, 72), (4, 2, 72)]) == ([[0, 4, 72], [4, 2, 72]], [])


def test_melody_notes_end_where_they_end():
    # 72 ends at tick 2, before 60 starts at 4: no cut, a rest in the melody.
    assert split([(0, 2, 72), (4, 2, 60)]) == ([[0, 2, 72], [4, 2, 60]], [])


def test_inner_voice_starting_with_the_melody_stays_accompaniment():
    mel, acc = split([(0, 2, 72), (0, 8, 65), (4, 2, 70)])
    assert mel == [[0, 2, 72], [4, 2, 70]] and acc == [[0, 8, 65]]


def test_merge_unisons():
    part = note_array([(0, 4, 60), (0, 8, 60), (2, 4, 60), (0, 4, 64)])
    # (0,4,60) and (0,8,60) merge into the longer; it is cut where 60 strikes again at 2.
    assert merge_unisons(part).tolist() == [[0, 2, 60], [0, 4, 64], [2, 4, 60]]


def test_split_rules_on_files(tmp_path):
    pop = write_midi(tmp_path / "pop.mid", [("MELODY", 0, [(0, 480, 72)]), ("BRIDGE", 1, [(0, 480, 76)]),
                                            ("PIANO", 2, [(0, 480, 48)])])
    song = load_song(pop)
    # POP909: melody = MELODY even though BRIDGE is higher.
    assert song.melody.tolist() == [[0, 4, 72]] and song.accompaniment.tolist() == [[0, 4, 48], [0, 4, 76]]
    assert load_song(pop, skyline_only=True).melody.tolist() == [[0, 4, 76]]
    band = write_midi(tmp_path / "band.mid", [("guitar", 0, [(0, 480, 79)]), ("melody", 1, [(0, 480, 72)]),
                                              ("melody", 2, [(480, 480, 74)])])
    by_default = load_song(band)  # skyline, not the melody track
    assert by_default.melody.tolist() == [[0, 4, 79], [4, 4, 74]] and by_default.accompaniment.tolist() == [[0, 4, 72]]
    named = load_song(band, melody_track="Melody")  # every track of that name, case-insensitive
    assert named.melody.tolist() == [[0, 4, 72], [4, 4, 74]] and named.accompaniment.tolist() == [[0, 4, 79]]
    with pytest.raises(BadMidiError, match="no track named 'vocals'"):
        load_song(band, melody_track="vocals")
