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


def test_fmd_of_two_short_songs_without_a_real_covariance_root_is_nan_not_a_crash():
    # Two 2-bar songs (a Table III smoke run, remote (2, 5)): the covariances' product has no
    # real square root and the library raises; the report showed a traceback.
    played = [song("a", [[1, 1, 55], [1, 2, 61], [1, 2, 65], [2, 1, 53], [3, 1, 60], [4, 2, 60], [4, 4, 65],
                         [6, 5, 45], [8, 3, 53], [8, 3, 57], [8, 3, 62], [10, 1, 50], [12, 6, 36], [12, 2, 60],
                         [12, 2, 64], [12, 2, 67], [16, 2, 59], [16, 2, 64], [16, 2, 68], [18, 2, 40], [19, 2, 59],
                         [20, 8, 41], [20, 2, 61], [20, 3, 65], [22, 12, 45], [24, 3, 57], [24, 3, 62], [24, 3, 65],
                         [26, 2, 50], [28, 3, 57], [28, 3, 62], [28, 3, 65], [30, 2, 50]]),
              song("b", [[4, 12, 50], [6, 5, 58], [6, 2, 62], [8, 3, 62], [10, 2, 55], [12, 2, 55], [14, 4, 55],
                         [18, 3, 48], [20, 2, 57], [20, 2, 60], [20, 2, 65], [24, 4, 50], [24, 3, 57], [24, 3, 62],
                         [24, 2, 66], [28, 2, 53], [28, 3, 57], [28, 2, 62], [30, 1, 38]])]
    truth = [song("a", [[0, 3, 45], [2, 1, 52], [2, 1, 57], [2, 1, 61], [4, 2, 52], [6, 1, 52], [6, 1, 57], [6, 1, 61],
                        [8, 2, 52], [10, 1, 52], [10, 1, 57], [10, 1, 61], [12, 2, 52], [14, 1, 52], [14, 1, 57],
                        [14, 1, 61], [16, 2, 57], [18, 1, 52], [18, 1, 57], [18, 1, 61], [20, 2, 52], [22, 1, 52],
                        [22, 1, 57], [22, 1, 61], [24, 3, 50], [26, 1, 54], [26, 1, 57], [26, 1, 62], [28, 2, 57],
                        [30, 1, 54], [30, 1, 57], [30, 1, 62]]),
             song("b", [[0, 8, 43], [0, 2, 62], [0, 4, 67], [1, 1, 50], [2, 1, 59], [3, 1, 62], [4, 1, 59],
                        [4, 1, 67], [6, 1, 59], [8, 8, 43], [8, 1, 55], [8, 4, 67], [9, 1, 55], [10, 1, 59],
                        [11, 1, 62], [12, 1, 59], [12, 1, 67], [14, 1, 59], [14, 2, 62], [16, 8, 43], [16, 4, 62],
                        [17, 1, 50], [18, 1, 55], [18, 2, 59], [19, 1, 57], [20, 1, 50], [20, 2, 62], [22, 1, 55],
                        [22, 2, 57], [24, 8, 43], [24, 2, 55], [24, 8, 67], [25, 1, 50], [26, 1, 55], [26, 1, 59],
                        [27, 1, 59], [28, 1, 62], [28, 1, 64], [30, 1, 62]])]
    assert math.isnan(frechet_music_distance(played, truth, make_extractor(SYMBOLIC_EXTRACTOR)))
