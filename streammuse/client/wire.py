"""Frames <-> wire frames: a token frame ``(FRAME_LEN,)`` and ``[[pitch, duration_ticks], ...]``.

The client holds the song as token frames (``streammuse.datasets.frames``) and talks to
the server in wire frames (``streammuse.serving.protocol``), which need no vocabulary.
"""

from __future__ import annotations

import numpy as np

from streammuse.datasets import vocab


def frame_to_wire(frame: np.ndarray) -> list[list[int]]:
    """One token frame -> its notes ``[[pitch, duration_ticks], ...]`` (tokens after EOF ignored)."""
    notes = []
    for token in np.asarray(frame).tolist():
        if token == vocab.EOF:
            break
        if vocab.is_note(token):
            pitch, dur = vocab.token_to_note(token)
            notes.append([int(pitch), int(dur)])
    return notes


def frames_to_wire(frames: np.ndarray) -> list[list[list[int]]]:
    """Token frames ``(k, FRAME_LEN)`` -> ``k`` wire frames."""
    return [frame_to_wire(f) for f in np.asarray(frames)]


def wire_to_frames(wire: list) -> np.ndarray:
    """Wire frames -> token frames ``(k, FRAME_LEN)`` (notes sorted by pitch, then EOF, PAD)."""
    frames = np.full((len(wire), vocab.FRAME_LEN), vocab.PAD, dtype=np.int16)
    for i, notes in enumerate(wire):
        notes = sorted((int(p), int(d)) for p, d in notes)[: vocab.MAX_NOTES_PER_FRAME]
        for j, (pitch, dur) in enumerate(notes):
            frames[i, j] = vocab.note_to_token(pitch, dur)
        frames[i, len(notes)] = vocab.EOF
    return frames
