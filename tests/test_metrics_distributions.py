"""JSD(P), JSD(O) (base 2) and FMD on hand-made sets of songs."""

import math

import numpy as np
import pytest

from streammuse.datasets.song import Song, note_array
from streammuse.metrics.distributions import jsd, jsd_onset, jsd_pitch, onset_histogram, onset_positions
from streammuse.metrics.fmd import SYMBOLIC_EXTRACTOR, frechet_music_distance, make_extractor, segment_features


def song(name, acc, ts=((0, 4, 4),)):
    return Song(name, note_array([[0, 64, 72]]), note_array(acc), list(ts))


LOW = [song("a", [[0, 4, 48], [4, 4, 52], [16, 8, 55]]), song("b", [[2, 2, 50], [8, 8, 53]])]
HIGH = [song("a", [[0, 4, 60], [4, 4, 64], [16, 8, 67]]), song("b", [[2, 2, 62], [8, 8, 65]])]


def test_identical_sets_have_zero_jsd():
    assert jsd_pitch(LOW, LOW) == 0.0 and jsd_onset(LOW, LOW) == 0.0


def test_disjoint_pitch_sets_have_jsd_one_in_base_two():
    assert jsd_pitch(HIGH, LOW) == pytest.approx(1.0)
    assert jsd_onset(HIGH, LOW) == 0.0  # same rhythm, other pitches


def test_jsd_by_hand():
    # P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2): M = (1/4, 1/2, 1/4)
    # KL(P||M) = 1/2 log2 2 + 1/2 log2 1 = 1/2, same for Q: JSD = 1/2
    assert jsd([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)


def test_onset_positions_follow_the_time_signature():
    s = song("c", [[0, 1, 60], [13, 1, 60], [16, 1, 60], [22, 1, 60]], ts=[(0, 4, 4), (16, 3, 4)])
    assert onset_positions(s).tolist() == [0, 13, 0, 6]  # 3/4 bars are 12 ticks from tick 16
    assert onset_histogram([s])[[0, 6, 13]].tolist() == [2, 1, 1]


def test_empty_side_is_nan():
    empty = [song("a", [])]
    assert math.isnan(jsd_pitch(empty, LOW)) and math.isnan(jsd_onset(LOW, empty))
    assert math.isnan(frechet_music_distance([], LOW, make_extractor(SYMBOLIC_EXTRACTOR)))


def test_fmd_identical_sets_about_zero_and_grows_when_sets_differ():
    rng = np.random.default_rng(0)
    songs = []
    for k in range(12):
        onsets = np.sort(rng.choice(256, 60, replace=False))
        acc = np.stack([onsets, rng.integers(1, 8, 60), rng.integers(40, 70, 60)], 1)
        songs.append(song(f"s{k}", acc))
    extractor = make_extractor(SYMBOLIC_EXTRACTOR)
    assert extractor.name == SYMBOLIC_EXTRACTOR
    assert frechet_music_distance(songs, songs, extractor) == pytest.approx(0.0, abs=1e-6)
    sparse = [Song(s.name, s.melody, s.accompaniment[::3], s.time_signatures) for s in songs]
    assert frechet_music_distance(sparse, songs, extractor) > 0.05


def test_fmd_sees_a_rewritten_set_no_stale_cache():
    extractor = make_extractor(SYMBOLIC_EXTRACTOR)
    first = frechet_music_distance(LOW * 3, LOW * 3, extractor)
    second = frechet_music_distance(HIGH * 3, LOW * 3, extractor)
    assert first == pytest.approx(0.0, abs=1e-6) and second > first


def test_segment_features_one_row_per_eight_bars():
    s = song("long", [[t, 2, 60 + t % 5] for t in range(0, 16 * 20, 4)])  # 20 bars
    f = segment_features(s)
    assert f.shape == (3, 47)  # bars 0-7, 8-15, 16-19
    assert f[0, :12].sum() == pytest.approx(1.0) and f[0, 24:40].sum() == pytest.approx(1.0)
