"""JSD(P) and JSD(O) of the paper's section V-D: distribution fidelity of the accompaniment.

Both compare the accompaniment as played with the ground-truth accompaniment of the
same songs, each side pooled over its set of songs (one histogram per side, so the
score is a property of the set, as FMD is; a per-song JSD of a sparse 128-bin
histogram would mostly measure sample size).

* Pitch histogram (JSD(P)): 128 bins, count of accompaniment notes per MIDI pitch.
* Onset histogram (JSD(O)): 32 bins, count of accompaniment notes per onset position
  within its bar in ticks (1/16 note; a 4/4 bar fills bins 0-15, the rest cover longer
  bars up to 8/4; the bar grid follows the song's time signatures).

Counts, not durations: JSD(P) is about the note vocabulary, JSD(O) about where notes
start. Base-2 logarithm, so JSD lies in [0, 1] and disjoint histograms give exactly 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon

from streammuse.datasets.song import ONSET, PITCH, Song, bar_starts

PITCH_BINS = 128
ONSET_BINS = 32  # ticks within a bar; 16 for 4/4, room for bars up to 8/4
LOG_BASE = 2


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two histograms (normalised here), base-2 logarithm.

    .. math:: JSD(P \\| Q) = \\tfrac12 KL(P \\| M) + \\tfrac12 KL(Q \\| M),
              \\quad M = \\tfrac12 (P + Q)

    Parameters
    ----------
    p, q : array_like
        Non-negative counts over the same bins.

    Returns
    -------
    float
        JSD in [0, 1] (0: identical, 1: disjoint); NaN when either histogram is empty.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    # scipy returns the Jensen-Shannon *distance*, the square root of the divergence
    return float(jensenshannon(p, q, base=LOG_BASE) ** 2)


def pitch_histogram(songs: Sequence[Song]) -> np.ndarray:
    """128-bin counts of the accompaniment notes' MIDI pitches, pooled over ``songs``."""
    pitches = [s.accompaniment[:, PITCH] for s in songs]
    pitches = np.concatenate(pitches) if pitches else np.zeros(0, dtype=int)
    return np.bincount(np.clip(pitches, 0, PITCH_BINS - 1), minlength=PITCH_BINS)


def onset_positions(song: Song) -> np.ndarray:
    """Each accompaniment note's onset position within its bar, in ticks."""
    onsets = song.accompaniment[:, ONSET]
    if not len(onsets):
        return onsets
    starts = np.asarray(bar_starts(song.time_signatures, int(onsets.max()) + 1))
    bar = np.searchsorted(starts, onsets, side="right") - 1
    return onsets - starts[bar]


def onset_histogram(songs: Sequence[Song]) -> np.ndarray:
    """32-bin counts of accompaniment onset positions within the bar, pooled over ``songs``."""
    positions = [onset_positions(s) for s in songs]
    positions = np.concatenate(positions) if positions else np.zeros(0, dtype=int)
    return np.bincount(np.clip(positions, 0, ONSET_BINS - 1), minlength=ONSET_BINS)


def jsd_pitch(played: Sequence[Song], truth: Sequence[Song]) -> float:
    """JSD(P): pitch-distribution divergence of played vs true accompaniment.

    .. math:: JSD(P) = JSD(h_P(\\hat A) \\| h_P(A))

    with :math:`h_P` the pooled 128-bin pitch histogram (:func:`pitch_histogram`), Â the
    accompaniment as played and A the ground truth of the same songs. Paper section V-D.

    Parameters
    ----------
    played, truth : sequence of Song
        The same songs, performed and as in the test set.

    Returns
    -------
    float
        In [0, 1] (base-2 log); NaN when either side has no accompaniment note.
    """
    return jsd(pitch_histogram(played), pitch_histogram(truth))


def jsd_onset(played: Sequence[Song], truth: Sequence[Song]) -> float:
    """JSD(O): onset-distribution divergence of played vs true accompaniment.

    .. math:: JSD(O) = JSD(h_O(\\hat A) \\| h_O(A))

    with :math:`h_O` the pooled histogram of onset positions within the bar in ticks
    (:func:`onset_histogram`). Paper section V-D.

    Parameters
    ----------
    played, truth : sequence of Song
        The same songs, performed and as in the test set.

    Returns
    -------
    float
        In [0, 1] (base-2 log); NaN when either side has no accompaniment note.
    """
    return jsd(onset_histogram(played), onset_histogram(truth))
