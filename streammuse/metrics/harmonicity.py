"""Harmonicity ratios of the paper's section V-D: CR, UR and DR.

For each melody note, every tick it sounds is put in one of three classes by the
accompaniment notes sounding at that tick:

* unsupported: no accompaniment note sounds;
* consonant: at least one accompaniment note lies a consonant pitch-class interval
  below the melody note, ``(melody_pitch - accompaniment_pitch) mod 12`` in
  {0 unison/octave, 3 minor third, 4 major third, 7 perfect fifth, 8 minor sixth,
  9 major sixth};
* dissonant: the rest.

Each class's ticks over all melody ticks (the total melody duration) gives CR, UR and
DR; CR + UR + DR = 1. The interval is measured from the melody down to the
accompaniment because the accompaniment normally sits below the melody (a note a fifth
above the melody is a fourth below it, pitch-class-wise, and a fourth is not in the
paper's set).

All work is on the 1/16-note tick grid, vectorised over a ``(T, 12)`` pitch-class grid.
Notes are ``(n, 3)`` arrays ``(onset_tick, duration_ticks, pitch)`` as in
:class:`streammuse.datasets.song.Song`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammuse.datasets.song import DURATION, ONSET, PITCH

CONSONANT_INTERVALS = (0, 3, 4, 7, 8, 9)  # unison/octave, m3, M3, P5, m6, M6 (section V-D)


@dataclass(frozen=True)
class Harmonicity:
    """Melody ticks by class for one song (or pooled over songs)."""

    consonant_ticks: int
    unsupported_ticks: int
    dissonant_ticks: int

    @property
    def melody_ticks(self) -> int:
        """Total melody duration in ticks (each note counted over its own duration)."""
        return self.consonant_ticks + self.unsupported_ticks + self.dissonant_ticks

    def rate(self, ticks: int) -> float:
        """``ticks / melody_ticks``; NaN when the melody is empty."""
        return ticks / self.melody_ticks if self.melody_ticks else float("nan")

    @property
    def cr(self) -> float:
        """Consonant Rate."""
        return self.rate(self.consonant_ticks)

    @property
    def ur(self) -> float:
        """Unsupported Rate."""
        return self.rate(self.unsupported_ticks)

    @property
    def dr(self) -> float:
        """Dissonant Rate (1 - CR - UR)."""
        return self.rate(self.dissonant_ticks)

    def __add__(self, other: "Harmonicity") -> "Harmonicity":
        return Harmonicity(self.consonant_ticks + other.consonant_ticks,
                           self.unsupported_ticks + other.unsupported_ticks,
                           self.dissonant_ticks + other.dissonant_ticks)


def _pitch_class_grid(notes: np.ndarray, n_ticks: int) -> np.ndarray:
    """``(n_ticks, 12)`` int: how many notes of each pitch class sound at each tick."""
    grid = np.zeros((n_ticks + 1, 12), dtype=np.int32)
    if len(notes):
        onset = np.minimum(notes[:, ONSET], n_ticks)
        end = np.minimum(notes[:, ONSET] + notes[:, DURATION], n_ticks)
        pc = notes[:, PITCH] % 12
        # difference array: +1 at the onset, -1 at the end, then a running sum over time
        np.add.at(grid, (onset, pc), 1)
        np.add.at(grid, (end, pc), -1)
    return np.cumsum(grid, axis=0)[:n_ticks]


def harmonicity(melody: np.ndarray, accompaniment: np.ndarray) -> Harmonicity:
    """Classify every melody tick as consonant, unsupported or dissonant.

    Parameters
    ----------
    melody, accompaniment : ndarray, shape (n, 3)
        Note arrays ``(onset_tick, duration_ticks, pitch)``.

    Returns
    -------
    Harmonicity
        Tick counts per class; all zero for an empty melody.
    """
    melody = np.asarray(melody, dtype=np.int64).reshape(-1, 3)
    accompaniment = np.asarray(accompaniment, dtype=np.int64).reshape(-1, 3)
    melody = melody[melody[:, DURATION] > 0]
    accompaniment = accompaniment[accompaniment[:, DURATION] > 0]
    if not len(melody):
        return Harmonicity(0, 0, 0)
    n_ticks = int((melody[:, ONSET] + melody[:, DURATION]).max())
    mel = _pitch_class_grid(melody, n_ticks)
    acc = _pitch_class_grid(accompaniment, n_ticks) > 0
    # consonant[t, p]: some accompaniment pitch class (p - k) mod 12 sounds, k consonant
    consonant = np.zeros_like(acc)
    for k in CONSONANT_INTERVALS:
        consonant |= np.roll(acc, k, axis=1)
    supported = acc.any(axis=1)
    total = int(mel.sum())
    unsupported = int(mel[~supported].sum())
    n_consonant = int(mel[consonant].sum())
    return Harmonicity(n_consonant, unsupported, total - unsupported - n_consonant)


def consonant_rate(melody: np.ndarray, accompaniment: np.ndarray) -> float:
    """Consonant Rate (CR): share of melody duration with a consonant accompaniment note.

    .. math:: CR = \\frac{\\sum_{n \\in M} |\\{t \\in n : \\exists a \\in A(t),
              (p_n - p_a) \\bmod 12 \\in \\{0, 3, 4, 7, 8, 9\\}\\}|}{\\sum_{n \\in M} d_n}

    where A(t) is the set of accompaniment notes sounding at tick t, p a pitch and d_n
    a melody note's duration in ticks. Paper section V-D ("Music Quality").

    Parameters
    ----------
    melody, accompaniment : ndarray, shape (n, 3)
        Note arrays ``(onset_tick, duration_ticks, pitch)``.

    Returns
    -------
    float
        CR in [0, 1]; NaN when the melody is empty (zero total duration).
    """
    return harmonicity(melody, accompaniment).cr


def unsupported_rate(melody: np.ndarray, accompaniment: np.ndarray) -> float:
    """Unsupported Rate (UR): share of melody duration with no accompaniment sounding.

    .. math:: UR = \\frac{\\sum_{n \\in M} |\\{t \\in n : A(t) = \\emptyset\\}|}
              {\\sum_{n \\in M} d_n}

    Paper section V-D ("Music Quality").

    Parameters
    ----------
    melody, accompaniment : ndarray, shape (n, 3)
        Note arrays ``(onset_tick, duration_ticks, pitch)``.

    Returns
    -------
    float
        UR in [0, 1]; NaN when the melody is empty (zero total duration).
    """
    return harmonicity(melody, accompaniment).ur


def dissonant_rate(melody: np.ndarray, accompaniment: np.ndarray) -> float:
    """Dissonant Rate (DR): share of melody duration accompanied, but by no consonance.

    .. math:: DR = 1 - CR - UR

    Paper section V-D (not shown in Table III since it follows from CR and UR).

    Parameters
    ----------
    melody, accompaniment : ndarray, shape (n, 3)
        Note arrays ``(onset_tick, duration_ticks, pitch)``.

    Returns
    -------
    float
        DR in [0, 1]; NaN when the melody is empty (zero total duration).
    """
    return harmonicity(melody, accompaniment).dr
