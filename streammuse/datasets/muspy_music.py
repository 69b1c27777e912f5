"""Note arrays on the tick grid -> ``muspy.Music``, for muspy's standard metrics.

The tick grid maps one to one onto muspy's time steps: ``resolution`` = 4 time steps per
quarter note (``TICKS_PER_BEAT``), times and durations in ticks, so nothing is rounded.
muspy is imported when a function here is first called, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from streammuse.datasets.song import TICKS_PER_BEAT

if TYPE_CHECKING:
    import muspy

VELOCITY = 64  # muspy's metrics ignore velocity


def part_to_music(part: np.ndarray, time_signatures: list[tuple[int, int, int]] | None = None,
                  name: str = "part") -> "muspy.Music":
    """One part (an ``(n, 3)`` note array ``(onset, duration, pitch)``) as a one-track
    ``muspy.Music`` at ``resolution = TICKS_PER_BEAT``; ``time_signatures`` are
    ``(tick, numerator, denominator)``. An empty part gives one empty track (muspy's
    metrics then return NaN)."""
    import muspy

    notes = [muspy.Note(time=int(onset), pitch=int(pitch), duration=int(dur), velocity=VELOCITY)
             for onset, dur, pitch in np.asarray(part).tolist()]
    signatures = [muspy.TimeSignature(time=int(t), numerator=int(n), denominator=int(d))
                  for t, n, d in (time_signatures or [])]
    return muspy.Music(resolution=TICKS_PER_BEAT, time_signatures=signatures,
                       tracks=[muspy.Track(program=0, is_drum=False, name=name, notes=notes)])
