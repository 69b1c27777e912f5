"""Offline accompaniment of a whole melody (`streammuse generate`, the paper's offline baseline).

The output Song keeps what the input says: the melody exactly as read (not re-read from
tokens, whose durations are bucketed), the input's time signatures, and its length: the
accompaniment is generated for every tick up to the end of the input's last note and cut
there, so the output file lasts as long as the input (at the same tempo).
"""

from __future__ import annotations

from dataclasses import dataclass

from streammuse.datasets.frames import cap_frame_notes, frames_to_part, part_to_frames
from streammuse.datasets.song import Song


@dataclass
class Accompanied:
    """The result of :func:`accompany`."""

    song: Song  # melody as read, accompaniment generated, input's time signatures
    n_ticks: int  # T: ticks generated (the input's length)
    notes_capped: int  # melody notes the 4-note cap kept from the model (still in the output)


def accompany(engine, melody: Song, sampling=None) -> Accompanied:
    """Generate the accompaniment of ``melody.melody`` tick by tick (I = 1, GL = 1, the full
    true melody; :func:`streammuse.model.engine.generate_offline`).

    Args:
        engine: a :class:`~streammuse.model.engine.StreamingEngine`.
        melody: the song to accompany; its accompaniment is ignored, but its length counts.
        sampling: :class:`~streammuse.model.sampling.Sampling` (default: the engine's).
    """
    from streammuse.model.engine import generate_offline

    n_ticks = melody.n_ticks
    part, n_capped = cap_frame_notes(melody.melody)
    accompaniment = frames_to_part(generate_offline(engine, part_to_frames(part, n_ticks), sampling))
    song = Song(melody.name, melody.melody, accompaniment, list(melody.time_signatures), melody.source,
                melody.notes_out_of_range).crop(n_ticks)
    return Accompanied(song, n_ticks, n_capped)
