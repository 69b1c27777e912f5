"""CR, UR, DR (section V-D) on hand-made melodies and accompaniments."""

import math

import numpy as np
import pytest

from streammuse.metrics.harmonicity import (Harmonicity, consonant_rate, dissonant_rate, harmonicity,
                                            unsupported_rate)

MELODY = np.array([[0, 4, 60], [4, 2, 64], [6, 6, 67]])  # C4 E4 G4, 12 ticks in all


def test_melody_harmonised_a_fifth_below_is_all_consonant():
    fifth_below = MELODY - [0, 0, 7]
    assert consonant_rate(MELODY, fifth_below) == 1.0
    assert unsupported_rate(MELODY, fifth_below) == 0.0 and dissonant_rate(MELODY, fifth_below) == 0.0


def test_silence_is_all_unsupported():
    silence = np.zeros((0, 3), dtype=int)
    assert unsupported_rate(MELODY, silence) == 1.0
    assert consonant_rate(MELODY, silence) == 0.0


def test_mixed_song_by_hand():
    melody = np.array([[0, 8, 60]])
    # ticks 0-1: B3 under C4, a minor second: dissonant (2 ticks)
    # ticks 2-3: nothing: unsupported (2 ticks)
    # ticks 4-7: A3 (minor third below) and C#4 (a semitone above): one consonance is enough
    acc = np.array([[0, 2, 59], [4, 4, 57], [4, 4, 61]])
    h = harmonicity(melody, acc)
    assert (h.consonant_ticks, h.unsupported_ticks, h.dissonant_ticks) == (4, 2, 2)
    assert (h.cr, h.ur, h.dr) == (0.5, 0.25, 0.25)


def test_interval_is_measured_down_from_the_melody_octaves_ignored():
    melody = np.array([[0, 4, 60]])
    assert consonant_rate(melody, [[0, 4, 67]]) == 0.0  # G4 above C4 = a fourth below pitch-class-wise
    assert consonant_rate(melody, [[0, 4, 36]]) == 1.0  # C2: two octaves, unison class
    for k, consonant in zip(range(12), [1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0]):
        assert consonant_rate(melody, [[0, 4, 60 - k]]) == consonant, k


def test_each_melody_note_counts_over_its_own_duration():
    chord_melody = np.array([[0, 4, 60], [0, 4, 64]])
    # C#4: under C4 it is 11 (dissonant), under E4 a minor third (consonant)
    assert consonant_rate(chord_melody, [[0, 4, 61]]) == 0.5
    # accompaniment running past the melody's end is cut there
    assert consonant_rate(chord_melody, [[0, 100, 57]]) == 1.0


def test_empty_melody_is_nan():
    h = harmonicity(np.zeros((0, 3)), [[0, 4, 60]])
    assert h.melody_ticks == 0 and math.isnan(h.cr) and math.isnan(h.ur) and math.isnan(h.dr)
    assert math.isnan(consonant_rate([], []))


def test_pooling_weights_songs_by_melody_duration():
    long = harmonicity([[0, 12, 60]], [[0, 12, 53]])  # 12 consonant ticks
    short = harmonicity([[0, 4, 60]], [])  # 4 unsupported ticks
    pooled = long + short
    assert pooled == Harmonicity(12, 4, 0)
    assert pooled.cr == pytest.approx(0.75)
