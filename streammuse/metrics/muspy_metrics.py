"""muspy's standard music metrics of one accompaniment part (docs/metrics.md, "muspy metrics").

Each is muspy's own function (muspy 0.5, Dong et al., ISMIR LBD 2020) on the part as a
one-track ``muspy.Music`` on the tick grid (4 time steps per beat, see
:mod:`streammuse.datasets.muspy_music`); this module only chooses the arguments:

* ``pitch_class_entropy``: Shannon entropy (bits) of the note pitch-class histogram, 0..log2 12;
* ``scale_consistency``: the largest share of notes in one major or minor scale, 0..1;
* ``groove_consistency``: 1 - mean Hamming distance between the onset patterns of
  neighbouring bars, 0..1; the bar is that of the time signature covering most ticks
  (muspy's metric needs one constant bar length);
* ``empty_beat_rate``: share of beats (0 .. the end of the part's last note) with no note
  sounding or starting;
* ``polyphony``: mean number of pitches sounding per tick, over the ticks where any sounds.

NaN where muspy gives NaN: a part with no note (all five), fewer than two bars (groove).
`streammuse evaluate` applies them to the played accompaniment (``*_played``) and to the
ground-truth accompaniment of the same song (``*_truth``).
"""

from __future__ import annotations

import math

import numpy as np

from streammuse.datasets.song import TICKS_PER_BEAT

METRICS = ("pitch_class_entropy", "scale_consistency", "groove_consistency", "empty_beat_rate", "polyphony")
SIDES = ("played", "truth")
KEYS = tuple(f"{metric}_{side}" for side in SIDES for metric in METRICS)


def bar_ticks(time_signatures: list[tuple[int, int, int]], n_ticks: int) -> int:
    """Ticks per bar of the time signature that covers the most of ``n_ticks`` ticks."""
    changes = sorted(time_signatures) or [(0, 4, 4)]
    covered: dict[int, int] = {}
    for i, (tick, num, den) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else max(n_ticks, tick + 1)
        length = max(1, round(num * 4 * TICKS_PER_BEAT / den))
        covered[length] = covered.get(length, 0) + max(0, end - tick)
    return max(covered, key=lambda length: (covered[length], -length))


def part_metrics(part: np.ndarray, time_signatures: list[tuple[int, int, int]] | None = None) -> dict[str, float]:
    """The five muspy metrics of one part (an ``(n, 3)`` note array on the tick grid).

    Returns:
        ``{name: value}`` for the names in :data:`METRICS`; NaN where muspy gives NaN.
    """
    import muspy

    from streammuse.datasets.muspy_music import part_to_music

    part = np.asarray(part).reshape(-1, 3)
    if not len(part):
        return {name: math.nan for name in METRICS}
    signatures = time_signatures or [(0, 4, 4)]
    end = int((part[:, 0] + part[:, 1]).max())
    music = part_to_music(part, signatures)
    return {
        "pitch_class_entropy": float(muspy.pitch_class_entropy(music)),
        "scale_consistency": float(muspy.scale_consistency(music)),
        "groove_consistency": float(muspy.groove_consistency(music, bar_ticks(signatures, end))),
        "empty_beat_rate": float(muspy.empty_beat_rate(music)),
        "polyphony": float(muspy.polyphony(music)),
    }


def song_metrics(played: np.ndarray, truth: np.ndarray | None,
                 time_signatures: list[tuple[int, int, int]] | None = None) -> dict[str, float]:
    """:func:`part_metrics` of the played and of the ground-truth accompaniment, keyed
    ``<metric>_played`` / ``<metric>_truth`` (:data:`KEYS`); the truth's are NaN when
    there is no ground truth."""
    out = {f"{k}_played": v for k, v in part_metrics(played, time_signatures).items()}
    truth_values = part_metrics(truth if truth is not None else np.zeros((0, 3)), time_signatures)
    out.update({f"{k}_truth": v for k, v in truth_values.items()})
    return out


def summarize(per_song: list[dict[str, float]]) -> dict[str, float | None]:
    """The run's figure for each key: the mean over songs where it is defined (muspy's
    metrics are per piece, and the field reports their mean); None where no song has one."""
    out: dict[str, float | None] = {}
    for key in KEYS:
        values = [row[key] for row in per_song if key in row and not math.isnan(row[key])]
        out[key] = float(np.mean(values)) if values else None
    return out


__all__ = ["METRICS", "SIDES", "KEYS", "bar_ticks", "part_metrics", "song_metrics", "summarize"]
