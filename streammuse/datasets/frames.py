"""Frames and the interleaved sequence (section III-B).

A frame is everything that starts on one tick in one part, as at most
``MAX_NOTES_PER_FRAME`` note tokens (ascending pitch) + EOF, padded to ``FRAME_LEN``.
A part of T ticks becomes an int array of shape ``(T, FRAME_LEN)``.

``interleave(M, A)`` gives InterL(M, A) = (A[0], M[0], A[1], M[1], ...): shape
``(2T, FRAME_LEN)``, accompaniment at even rows, melody at odd rows.

When more than four notes start together, the cap keeps the outer voices: the lowest
note (the bass, which carries the harmony) and the three highest; inner voices go.
"""

from __future__ import annotations

import numpy as np

from streammuse.datasets import vocab
from streammuse.datasets.song import DURATION, ONSET, PITCH, Song, note_array


def cap_frame_notes(part: np.ndarray, max_notes: int = vocab.MAX_NOTES_PER_FRAME) -> tuple[np.ndarray, int]:
    """Apply the per-frame cap to a note array.

    Duplicates (same onset and pitch) collapse into the longest. Where more than
    ``max_notes`` notes share an onset, keep the lowest and the ``max_notes - 1`` highest.

    Returns:
        (kept notes, number of notes dropped by the cap; duplicates are not counted).
    """
    part = note_array(part)
    if not len(part):
        return part, 0
    # Dedupe (onset, pitch), keeping the longest duration.
    order = np.lexsort((-part[:, DURATION], part[:, PITCH], part[:, ONSET]))
    part = part[order]
    first = np.ones(len(part), dtype=bool)
    first[1:] = (part[1:, ONSET] != part[:-1, ONSET]) | (part[1:, PITCH] != part[:-1, PITCH])
    part = part[first]
    # Rank within each onset group, ascending pitch (array is sorted by onset, pitch).
    starts = np.flatnonzero(np.r_[True, part[1:, ONSET] != part[:-1, ONSET]])
    sizes = np.diff(np.r_[starts, len(part)])
    rank = np.arange(len(part)) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    keep = (rank == 0) | (rank >= size - (max_notes - 1))
    return part[keep], int((~keep).sum())


def part_to_frames(part: np.ndarray, n_ticks: int) -> np.ndarray:
    """Tokenise one part into frames of shape ``(n_ticks, FRAME_LEN)``.

    The part must already be capped (:func:`cap_frame_notes`); notes at or after
    ``n_ticks`` are ignored.
    """
    frames = np.full((n_ticks, vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
    part = part[part[:, ONSET] < n_ticks]
    tokens = vocab.note_to_token(part[:, PITCH], part[:, DURATION])
    onsets = part[:, ONSET]
    starts = np.flatnonzero(np.r_[True, onsets[1:] != onsets[:-1]]) if len(part) else np.zeros(0, int)
    slot = np.arange(len(part)) - np.repeat(starts, np.diff(np.r_[starts, len(part)]))
    if len(part) and slot.max() >= vocab.MAX_NOTES_PER_FRAME:
        raise ValueError("part has more notes per tick than the cap; call cap_frame_notes first")
    frames[onsets, slot] = tokens
    n_notes = np.bincount(onsets, minlength=n_ticks)[:n_ticks]
    frames[np.arange(n_ticks), n_notes] = vocab.EOF
    return frames


def frames_to_part(frames: np.ndarray, start_tick: int = 0) -> np.ndarray:
    """Inverse of :func:`part_to_frames`: note array ``(onset, duration, pitch)``.

    Tokens after a frame's EOF and special tokens are ignored, so it also reads
    model output that did not stop cleanly.
    """
    frames = np.asarray(frames)
    after_eof = np.cumsum(frames == vocab.EOF, axis=1) > 0
    valid = vocab.is_note(frames) & ~after_eof
    ticks, _ = np.nonzero(valid)
    pitch, dur = vocab.token_to_note(frames[valid].astype(np.int64))
    return note_array(np.stack([ticks + start_tick, dur, pitch], axis=1))


def song_to_frames(song: Song) -> tuple[np.ndarray, np.ndarray, int]:
    """Melody and accompaniment frames of a song, plus the notes the 4-note cap dropped.

    Returns:
        ``(M, A, n_dropped)`` with M and A of shape ``(song.n_ticks, FRAME_LEN)``;
        ``n_dropped`` counts only the notes the cap dropped.

    Raises:
        ValueError: a note outside the piano range ``[MIN_PITCH, MAX_PITCH]`` (no token).
            Songs read from MIDI never hold one: the reader drops and counts them
            (``Song.notes_out_of_range``, docs/data.md).
    """
    n_ticks = song.n_ticks
    for part in (song.melody, song.accompaniment):
        off = part[(part[:, PITCH] < vocab.MIN_PITCH) | (part[:, PITCH] > vocab.MAX_PITCH)]
        if len(off):
            raise ValueError(f"{song.name}: pitch {int(off[0, PITCH])} is outside the piano range "
                             f"{vocab.MIN_PITCH}..{vocab.MAX_PITCH}")
    mel, drop_m = cap_frame_notes(song.melody)
    acc, drop_a = cap_frame_notes(song.accompaniment)
    return part_to_frames(mel, n_ticks), part_to_frames(acc, n_ticks), drop_m + drop_a


def interleave(melody_frames: np.ndarray, accompaniment_frames: np.ndarray) -> np.ndarray:
    """InterL(M, A) = (A[0], M[0], A[1], M[1], ...), shape ``(2T, FRAME_LEN)``."""
    if melody_frames.shape != accompaniment_frames.shape:
        raise ValueError(f"M {melody_frames.shape} and A {accompaniment_frames.shape} differ in shape")
    t, f = melody_frames.shape
    return np.stack([accompaniment_frames, melody_frames], axis=1).reshape(2 * t, f)


def deinterleave(sequence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`interleave`: ``(M, A)`` from an interleaved frame sequence.

    An odd-length sequence (ending on an accompaniment frame) gives one more A than M.
    """
    return sequence[1::2], sequence[0::2]


def frames_to_song(name: str, melody_frames: np.ndarray, accompaniment_frames: np.ndarray) -> Song:
    """A Song from melody and accompaniment frames (tokens -> notes)."""
    return Song(name, frames_to_part(melody_frames), frames_to_part(accompaniment_frames))


def empty_frames(n_ticks: int) -> np.ndarray:
    """``n_ticks`` empty frames (EOF only)."""
    frames = np.full((n_ticks, vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
    frames[:, 0] = vocab.EOF
    return frames


def transpose_limits(frames: np.ndarray) -> tuple[int, int]:
    """The smallest and largest pitch shift (semitones) that keeps every note of ``frames``
    inside the vocabulary's pitch range ``[MIN_PITCH, MAX_PITCH]``."""
    notes = vocab.is_note(frames)
    if not notes.any():
        return vocab.MIN_PITCH - vocab.MAX_PITCH, vocab.MAX_PITCH - vocab.MIN_PITCH
    pitch, _ = vocab.token_to_note(frames[notes].astype(np.int64))
    return vocab.MIN_PITCH - int(pitch.min()), vocab.MAX_PITCH - int(pitch.max())


def transpose_frames(frames: np.ndarray, semitones: int) -> np.ndarray:
    """Shift every note token by ``semitones`` (data augmentation on cached tokens).

    A note token moves by ``semitones * N_DURATIONS``; special tokens stay. Notes in a frame
    stay in ascending pitch order.

    Raises:
        ValueError: a note would leave ``[MIN_PITCH, MAX_PITCH]`` (see :func:`transpose_limits`).
    """
    low, high = transpose_limits(frames)
    if not low <= semitones <= high:
        raise ValueError(f"shift {semitones:+d} leaves the pitch range; allowed shifts are {low:+d} .. {high:+d}")
    out = np.asarray(frames).copy()
    notes = vocab.is_note(out)
    out[notes] = out[notes] + semitones * vocab.N_DURATIONS
    return out
