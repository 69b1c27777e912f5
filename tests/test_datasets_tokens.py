"""Vocabulary, the 4-note cap, frames, interleaving, transposition, and the full round trip
MIDI -> Song -> frames -> tokens -> MIDI on real POP909 and test-set files."""

from pathlib import Path

import numpy as np
import pytest
from datasets_midi import POP909

from streammuse.datasets import vocab
from streammuse.datasets.frames import (
    cap_frame_notes,
    deinterleave,
    empty_frames,
    frames_to_part,
    frames_to_song,
    interleave,
    part_to_frames,
    song_to_frames,
    transpose_frames,
    transpose_limits,
)
from streammuse.datasets.skyline import load_song
from streammuse.datasets.song import Song, note_array
from streammuse.datasets.tick_grid import song_to_midi

TESTSET = Path(__file__).resolve().parents[1] / "testset"


def test_vocab_layout():
    assert vocab.VOCAB_SIZE == 3 + 88 * 15 == 1323
    assert vocab.note_to_token(21, 1) == 3
    assert vocab.note_to_token(60, 4) == 3 + 39 * 15 + 3
    pitch, dur = vocab.token_to_note(vocab.VOCAB_SIZE - 1)
    assert (pitch, dur) == (108, 64)
    # Buckets by nearest on a log scale: 7 -> 8 (edge sqrt(48) = 6.93), 9 -> 10 (edge 8.94).
    assert vocab.index_to_duration(vocab.duration_to_index([0, 1, 7, 9, 14, 40, 100])).tolist() == [
        1, 1, 8, 10, 16, 48, 64]
    with pytest.raises(ValueError, match="pitch 109 outside"):
        vocab.note_to_token(109, 4)


def test_cap_keeps_lowest_and_three_highest():
    notes = [(0, 4, p) for p in (40, 50, 60, 64, 67, 72)] + [(0, 2, 72), (4, 2, 55), (4, 2, 59)]
    kept, dropped = cap_frame_notes(note_array(notes))
    assert dropped == 2  # 50 and 60; the duplicate 72 is merged, not counted
    assert kept.tolist() == [[0, 4, 40], [0, 4, 64], [0, 4, 67], [0, 4, 72], [4, 2, 55], [4, 2, 59]]


def test_frames_layout_and_inverse():
    part = note_array([(0, 4, 60), (0, 2, 64), (2, 16, 48)])
    frames = part_to_frames(part, 4)
    t60, t64, t48 = (int(vocab.note_to_token(p, d)) for p, d in ((60, 4), (64, 2), (48, 16)))
    assert frames.tolist() == [
        [t60, t64, vocab.EOF, vocab.PAD, vocab.PAD],
        [vocab.EOF, vocab.PAD, vocab.PAD, vocab.PAD, vocab.PAD],
        [t48, vocab.EOF, vocab.PAD, vocab.PAD, vocab.PAD],
        [vocab.EOF, vocab.PAD, vocab.PAD, vocab.PAD, vocab.PAD],
    ]
    assert frames_to_part(frames).tolist() == part.tolist()
    assert frames_to_part(frames, start_tick=10)[:, 0].tolist() == [10, 10, 12]
    # Tokens after EOF (model output that did not stop cleanly) are ignored.
    noisy = frames.copy()
    noisy[1, 1] = t60
    assert frames_to_part(noisy).tolist() == part.tolist()
    np.testing.assert_array_equal(empty_frames(2), frames[[1, 3]])


def test_interleave_and_deinterleave():
    m = np.arange(15, dtype=np.int16).reshape(3, 5)
    a = 100 + m
    seq = interleave(m, a)
    assert seq[:, 0].tolist() == [100, 0, 105, 5, 110, 10]  # A[0], M[0], A[1], M[1], ...
    m2, a2 = deinterleave(seq)
    np.testing.assert_array_equal(m2, m)
    np.testing.assert_array_equal(a2, a)
    m3, a3 = deinterleave(seq[:-1])  # ends on A[2]
    assert len(a3) == 3 and len(m3) == 2
    with pytest.raises(ValueError, match="differ in shape"):
        interleave(m, a[:2])


def test_song_to_frames_counts_cap_drops_and_refuses_out_of_range():
    song = Song("s", note_array([(0, 4, 72)]), note_array([(0, 4, p) for p in (40, 50, 60, 64, 67)]))
    m, a, dropped = song_to_frames(song)
    assert dropped == 1  # 50, an inner voice (cap)
    assert frames_to_part(m).tolist() == [[0, 4, 72]]
    assert frames_to_part(a)[:, 2].tolist() == [40, 60, 64, 67]
    # Off the piano keys there is no token; the MIDI reader drops such notes (one rule).
    with pytest.raises(ValueError, match="pitch 110 is outside the piano range 21..108"):
        song_to_frames(Song("s", note_array([(0, 4, 72), (4, 4, 110)]), note_array([(0, 4, 40)])))


def test_transpose_range_checks():
    song = Song("s", note_array([(0, 4, 100)]), note_array([(0, 4, 30)]))
    assert song.transpose(5, 21, 108).melody.tolist() == [[0, 4, 105]]
    assert song.transpose_limits(21, 108) == (-9, 8)
    with pytest.raises(ValueError, match=r"shift \+9 takes s outside pitch range \[21, 108\]"):
        song.transpose(9, 21, 108)
    m, a, _ = song_to_frames(song)
    assert transpose_limits(m) == (-79, 8) and transpose_limits(interleave(m, a)) == (-9, 8)
    up = transpose_frames(interleave(m, a), 8)
    m2, a2 = deinterleave(up)
    assert frames_to_part(m2).tolist() == [[0, 4, 108]] and frames_to_part(a2).tolist() == [[0, 4, 38]]
    with pytest.raises(ValueError, match=r"allowed shifts are -9 \.\. \+8"):
        transpose_frames(interleave(m, a), -10)


def _expected_after_round_trip(part: np.ndarray) -> np.ndarray:
    """Capped notes with durations as their bucket, cut where the next note of the same
    pitch starts (MIDI cannot hold two overlapping notes of one pitch)."""
    kept, _ = cap_frame_notes(part)
    rows = [[int(o), int(vocab.index_to_duration(vocab.duration_to_index(d))), int(p)] for o, d, p in kept]
    next_onset: dict[int, int] = {}
    for row in sorted(rows, key=lambda r: -r[0]):
        if row[2] in next_onset:
            row[1] = min(row[1], next_onset[row[2]] - row[0])
        next_onset[row[2]] = row[0]
    return note_array(rows)


@pytest.mark.parametrize("path", [
    POP909 / "001.mid", POP909 / "458.mid", POP909 / "909.mid",
    TESTSET / "accomontage3_010.mid", TESTSET / "pop1k7_src_003_741.mid",
])
def test_round_trip_keeps_every_note_the_cap_keeps(path, tmp_path):
    song = load_song(path)
    m, a, _ = song_to_frames(song)
    tokens = interleave(m, a)
    m2, a2 = deinterleave(tokens)
    out = tmp_path / "back.mid"
    song_to_midi(frames_to_song(song.name, m2, a2), bpm=97.0, path=out)
    back = load_song(out)
    for original, returned in ((song.melody, back.melody), (song.accompaniment, back.accompaniment)):
        expected = _expected_after_round_trip(original)
        assert returned[:, [0, 2]].tolist() == expected[:, [0, 2]].tolist()  # onset, pitch exactly
        assert returned.tolist() == expected.tolist()  # durations: the bucket (or the cut)
    # Bucketing alone never moves a note: every capped onset is still there.
    assert len(back.melody) + len(back.accompaniment) == sum(
        len(cap_frame_notes(p)[0]) for p in (song.melody, song.accompaniment))
