"""The token vocabulary: one note event is one token, a frame is at most 5 tokens.

Layout (arithmetic over named offsets, in the manner of `anticipation.vocab`):

    0                 PAD   (fills a frame after its EOF)
    1                 EOF   (end of frame; a frame of only EOF is an empty frame)
    2                 BOS   (the start-of-sequence frame the global predictor reads first)
    NOTE_OFFSET + (pitch - MIN_PITCH) * N_DURATIONS + duration_index

A frame is its note tokens in ascending pitch order, then EOF, then PAD up to
FRAME_LEN = MAX_NOTES_PER_FRAME + 1, so decoding a frame costs at most 5 steps.

Run ``python -m streammuse.datasets.vocab`` to print the layout.
"""

from __future__ import annotations

import numpy as np

PAD = 0
EOF = 1
BOS = 2
NOTE_OFFSET = 3

MIN_PITCH = 21  # A0, the lowest piano key
MAX_PITCH = 108  # C8, the highest piano key
N_PITCHES = MAX_PITCH - MIN_PITCH + 1

# Durations in ticks (1/16 notes). Denser where rhythm is, sparser for long holds;
# anything longer than four bars of 4/4 is clipped to the last bucket.
DURATIONS_TICKS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
N_DURATIONS = len(DURATIONS_TICKS)

MAX_NOTES_PER_FRAME = 4  # the paper's cap (section III-B)
FRAME_LEN = MAX_NOTES_PER_FRAME + 1  # notes + EOF

VOCAB_SIZE = NOTE_OFFSET + N_PITCHES * N_DURATIONS

assert PAD < EOF < BOS < NOTE_OFFSET
assert VOCAB_SIZE == NOTE_OFFSET + 88 * N_DURATIONS
assert list(DURATIONS_TICKS) == sorted(set(DURATIONS_TICKS))

_LOG_DUR = np.log(np.asarray(DURATIONS_TICKS, dtype=np.float64))
# Bucket boundaries halfway between neighbours on a log scale.
_LOG_EDGES = (_LOG_DUR[1:] + _LOG_DUR[:-1]) / 2


def duration_to_index(duration_ticks: np.ndarray | int) -> np.ndarray:
    """Nearest duration bucket (on a log scale) for durations in ticks."""
    d = np.maximum(np.asarray(duration_ticks, dtype=np.float64), 1.0)
    return np.searchsorted(_LOG_EDGES, np.log(d), side="right")


def index_to_duration(index: np.ndarray | int) -> np.ndarray:
    """Duration in ticks of a bucket index."""
    return np.asarray(DURATIONS_TICKS, dtype=np.int32)[np.asarray(index)]


def note_to_token(pitch: np.ndarray | int, duration_ticks: np.ndarray | int) -> np.ndarray:
    """Token of a note event: ``NOTE_OFFSET + (pitch - MIN_PITCH) * N_DURATIONS + bucket``."""
    pitch = np.asarray(pitch)
    if np.any((pitch < MIN_PITCH) | (pitch > MAX_PITCH)):
        bad = pitch[(pitch < MIN_PITCH) | (pitch > MAX_PITCH)]
        raise ValueError(f"pitch {int(bad.flat[0])} outside the vocabulary range [{MIN_PITCH}, {MAX_PITCH}]")
    return NOTE_OFFSET + (pitch - MIN_PITCH) * N_DURATIONS + duration_to_index(duration_ticks)


def token_to_note(token: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`note_to_token`: ``(pitch, duration_ticks)``."""
    rel = np.asarray(token) - NOTE_OFFSET
    if np.any(rel < 0):
        raise ValueError("special tokens (PAD/EOF/BOS) are not notes")
    return rel // N_DURATIONS + MIN_PITCH, index_to_duration(rel % N_DURATIONS)


def is_note(token: np.ndarray | int) -> np.ndarray:
    """True where ``token`` is a note event."""
    t = np.asarray(token)
    return (t >= NOTE_OFFSET) & (t < VOCAB_SIZE)


def describe() -> str:
    """A human-readable table of the layout."""
    lines = [
        f"PAD          {PAD}",
        f"EOF          {EOF}",
        f"BOS          {BOS}",
        f"notes        {NOTE_OFFSET} .. {VOCAB_SIZE - 1}  "
        f"({N_PITCHES} pitches {MIN_PITCH}..{MAX_PITCH} x {N_DURATIONS} durations)",
        f"durations    {DURATIONS_TICKS} ticks",
        f"frame        <= {MAX_NOTES_PER_FRAME} notes + EOF = {FRAME_LEN} tokens",
        f"vocab size   {VOCAB_SIZE}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
