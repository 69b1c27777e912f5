"""NLL_wavg of the paper's section V-D: the model's negative log-likelihood of the
accompaniment as played, given the true melody, averaged over songs weighted by tokens.

The played accompaniment is re-tokenised from the performance MIDI (``songs/<name>.mid``
of a run folder) into frames (:func:`streammuse.datasets.frames.song_to_frames`), and
the engine scores ``InterL(M, Â)`` with teacher forcing:
``engine.nll(melody_frames=M, accompaniment_frames=Â) -> (nll_sum_nats, n_tokens)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.song import Song


@dataclass(frozen=True)
class SongNll:
    """One song's NLL: the sum over its accompaniment tokens (nats) and their count."""

    nll_sum_nats: float
    n_tokens: int

    @property
    def per_token(self) -> float:
        """Mean NLL per token (nats); NaN without tokens."""
        return self.nll_sum_nats / self.n_tokens if self.n_tokens else float("nan")


def song_nll(engine, performance: Song) -> SongNll:
    """The engine's NLL of ``performance.accompaniment`` given ``performance.melody``."""
    melody_frames, accompaniment_frames, _ = song_to_frames(performance)
    total, n = engine.nll(melody_frames=melody_frames, accompaniment_frames=accompaniment_frames)
    return SongNll(float(total), int(n))


def nll_wavg(per_song: Iterable[SongNll]) -> float:
    """NLL_wavg: per-song NLLs averaged with each song weighted by its token count.

    .. math:: NLL_{wavg} = \\frac{\\sum_s n_s \\overline{NLL}_s}{\\sum_s n_s}
              = \\frac{\\sum_s \\sum_{k} -\\ln p(x_{s,k} | x_{s,<k})}{\\sum_s n_s}

    where n_s is the number of scored tokens of song s. Paper section V-D (Table III,
    NLL_wavg). Natural logarithm (nats).

    Parameters
    ----------
    per_song : iterable of SongNll
        From :func:`song_nll`.

    Returns
    -------
    float
        Total nats over total tokens; NaN when no song has a token.
    """
    per_song = list(per_song)
    tokens = sum(s.n_tokens for s in per_song)
    return sum(s.nll_sum_nats for s in per_song) / tokens if tokens else float("nan")


def songs_nll(engine, performances: Sequence[Song]) -> list[SongNll]:
    """:func:`song_nll` for each performance."""
    return [song_nll(engine, p) for p in performances]
