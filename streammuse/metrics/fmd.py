"""Fréchet Music Distance (FMD) of the paper's section V-D, through `frechet-music-distance`.

FMD is the Fréchet distance between Gaussians fitted to feature vectors of the
ground-truth accompaniment (reference) and of the accompaniment as played (test):

.. math:: FMD = \\|\\mu_r - \\mu_t\\|^2 + \\mathrm{Tr}(\\Sigma_r + \\Sigma_t
          - 2 (\\Sigma_r \\Sigma_t)^{1/2})

Feature extractors (scores from different extractors are not comparable, so every
score travels with its extractor's name):

* ``clamp2``: the library's CLaMP 2 extractor, one 768-d vector per song, used only
  when its weights and the XLM-RoBERTa tokenizer are already in the local caches
  (nothing is downloaded).
* ``streammuse-symbolic-v1``: :class:`SymbolicFeatureExtractor`, shipped here, a
  deterministic 47-d hand-crafted vector per 8-bar segment.

Covariance: Ledoit-Wolf shrinkage (the library's ``LeoditWolfEstimator``) for both
extractors, since 64 songs against 768 dimensions leave the sample covariance
rank-deficient; the symbolic extractor also takes one sample per 8-bar segment
(about 8 per song), which gives far more samples than dimensions.

The library caches features on disk keyed by the dataset *path*: a rewritten run
folder would return stale features. Every call here writes the MIDI to a fresh
temporary directory, and the shipped extractor and the estimator bypass the cache.
"""

from __future__ import annotations

import tempfile
import types
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.linalg

from streammuse.datasets.song import DURATION, ONSET, PITCH, Song, bar_starts, note_array

SYMBOLIC_EXTRACTOR = "streammuse-symbolic-v1"
CLAMP2_EXTRACTOR = "clamp2"
SEGMENT_BARS = 8
TICKS_PER_BAR_BINS = 16  # onset position within a 4/4 bar; longer bars fold onto it


def symbolic_features(notes: np.ndarray, n_ticks: int) -> np.ndarray:
    """The 47-d symbolic feature vector of one stretch of accompaniment.

    12 pitch-class shares, 12 vertical-interval-class shares (between notes starting
    together), 16 onset-position shares (tick within the bar, modulo 16), then notes
    per bar / 16, mean polyphony / 4, mean pitch / 128, pitch std / 24, pitch range / 88,
    mean duration / 16 and the share of ticks with a note sounding. Zeros for silence.
    """
    out = np.zeros(47)
    if not len(notes) or n_ticks <= 0:
        return out
    pitch, onset, dur = notes[:, PITCH], notes[:, ONSET], notes[:, DURATION]
    out[0:12] = np.bincount(pitch % 12, minlength=12) / len(notes)
    _, start, counts = np.unique(onset, return_index=True, return_counts=True)
    intervals = [np.abs(pitch[s:s + c, None] - pitch[None, s:s + c])[np.triu_indices(c, 1)] % 12
                 for s, c in zip(start, counts) if c > 1]
    if intervals:
        iv = np.concatenate(intervals)
        out[12:24] = np.bincount(iv, minlength=12) / len(iv)
    out[24:40] = np.bincount(onset % TICKS_PER_BAR_BINS, minlength=TICKS_PER_BAR_BINS) / len(notes)
    sounding = np.zeros(n_ticks + 1)
    np.add.at(sounding, np.minimum(onset, n_ticks), 1)
    np.add.at(sounding, np.minimum(onset + dur, n_ticks), -1)
    sounding = np.cumsum(sounding)[:n_ticks]
    out[40] = len(notes) / (n_ticks / 16) / 16
    out[41] = sounding.mean() / 4
    out[42] = pitch.mean() / 128
    out[43] = pitch.std() / 24
    out[44] = (pitch.max() - pitch.min()) / 88
    out[45] = dur.mean() / 16
    out[46] = (sounding > 0).mean()
    return out


def segment_features(song: Song, segment_bars: int = SEGMENT_BARS) -> np.ndarray:
    """``(n_segments, 47)``: :func:`symbolic_features` of each ``segment_bars``-bar stretch
    of the song's accompaniment (notes belong to the segment they start in)."""
    n_ticks = max(song.n_ticks, 1)
    starts = bar_starts(song.time_signatures, n_ticks)[::segment_bars] + [n_ticks]
    acc = song.accompaniment
    rows = []
    for lo, hi in zip(starts[:-1], starts[1:]):
        seg = acc[(acc[:, ONSET] >= lo) & (acc[:, ONSET] < hi)].copy()
        seg[:, ONSET] -= lo
        seg[:, DURATION] = np.minimum(seg[:, DURATION], hi - lo - seg[:, ONSET])
        rows.append(symbolic_features(seg, hi - lo))
    return np.vstack(rows)


def _feature_extractor_base():
    from frechet_music_distance.models import FeatureExtractor

    return FeatureExtractor


def symbolic_extractor(verbose: bool = False):
    """A :class:`frechet_music_distance.models.FeatureExtractor` computing
    :func:`segment_features` of every MIDI file under a folder (all pitched tracks are
    described: the files written by :func:`frechet_music_distance` hold only the
    accompaniment). The class is built on first use so that importing this module does
    not import the library (which imports torch)."""
    base = _feature_extractor_base()

    class SymbolicFeatureExtractor(base):
        name = SYMBOLIC_EXTRACTOR

        def __init__(self, verbose: bool = False) -> None:
            # No super().__init__: it wraps extract_features in the library's
            # path-keyed disk cache, which returns stale features for a rewritten folder.
            self._verbose = verbose

        def _extract_feature(self, data: Song) -> np.ndarray:
            return segment_features(data)

        def extract_feature(self, filepath) -> np.ndarray:
            from streammuse.datasets.tick_grid import read_grid_midi

            grid = read_grid_midi(filepath)
            notes = note_array(np.concatenate([t.notes for t in grid.tracks]) if grid.tracks else ())
            return self._extract_feature(Song(Path(filepath).stem, note_array(), notes, grid.time_signatures))

        def extract_features(self, dataset_path) -> np.ndarray:
            files = sorted(Path(dataset_path).rglob("*.mid"))
            return np.vstack([self.extract_feature(f) for f in files])

    return SymbolicFeatureExtractor(verbose)


def clamp2_available() -> bool:
    """True when CLaMP 2's weights and its text tokenizer are in the local caches."""
    try:
        from frechet_music_distance.models.clamp2 import config
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    tokenizer = try_to_load_from_cache(config.TEXT_MODEL_NAME, "tokenizer.json")
    return Path(config.CLAMP2_WEIGHTS_PATH).is_file() and isinstance(tokenizer, str)


def make_extractor(name: str = "auto"):
    """The feature extractor object: ``"auto"`` (CLaMP 2 when cached, else the shipped
    symbolic one), ``"clamp2"`` or ``"streammuse-symbolic-v1"``. Its ``name`` attribute
    is what reports print beside the score."""
    from streammuse.errors import StreamMuseError

    if name == "auto":
        name = CLAMP2_EXTRACTOR if clamp2_available() else SYMBOLIC_EXTRACTOR
    if name == SYMBOLIC_EXTRACTOR:
        return symbolic_extractor()
    if name == CLAMP2_EXTRACTOR:
        if not clamp2_available():
            raise StreamMuseError("CLaMP 2 weights are not in the local cache; use --fmd-extractor "
                                  f"{SYMBOLIC_EXTRACTOR}")
        from frechet_music_distance.models import CLaMP2Extractor

        extractor = CLaMP2Extractor(verbose=False)
        extractor.extract_features = types.MethodType(CLaMP2Extractor.extract_features, extractor)
        extractor.name = CLAMP2_EXTRACTOR
        return extractor
    raise StreamMuseError(f"unknown FMD extractor {name!r} (auto, {CLAMP2_EXTRACTOR}, {SYMBOLIC_EXTRACTOR})")


def _ledoit_wolf():
    from frechet_music_distance.gaussian_estimators import LeoditWolfEstimator

    estimator = LeoditWolfEstimator()
    # drop the library's joblib disk cache around the fit (pure function, cheap here)
    estimator.estimate_parameters = types.MethodType(LeoditWolfEstimator.estimate_parameters, estimator)
    return estimator


def _write_accompaniment(songs: Sequence[Song], folder: Path) -> None:
    from streammuse.datasets.tick_grid import song_to_midi

    for song in songs:
        only_acc = Song(song.name, note_array(), song.accompaniment, list(song.time_signatures), song.source)
        song_to_midi(only_acc, path=folder / f"{song.name}.mid")


def frechet_music_distance(played: Sequence[Song], truth: Sequence[Song], extractor=None) -> float:
    """FMD between the ground-truth accompaniment (reference) and the accompaniment as
    played (test), over the same songs.

    .. math:: FMD = \\|\\mu_r - \\mu_t\\|^2 + \\mathrm{Tr}(\\Sigma_r + \\Sigma_t
              - 2 (\\Sigma_r \\Sigma_t)^{1/2})

    Paper section V-D, ref. [32]. Gaussians fitted with Ledoit-Wolf shrinkage.

    Parameters
    ----------
    played, truth : sequence of Song
        Performances and ground truth (only the accompaniment is used).
    extractor : FeatureExtractor, optional
        From :func:`make_extractor`; default ``make_extractor("auto")``.

    Returns
    -------
    float
        FMD >= 0 (about 0 for identical sets); NaN when either set has fewer than two
        songs (no spread to fit a Gaussian to) or the fitted covariances' product has no
        real square root (a few short songs).
    """
    if len(played) < 2 or len(truth) < 2:
        return float("nan")
    from frechet_music_distance import FrechetMusicDistance

    extractor = extractor if extractor is not None else make_extractor("auto")
    metric = FrechetMusicDistance(feature_extractor=extractor, gaussian_estimator=_ledoit_wolf(), verbose=False)
    with tempfile.TemporaryDirectory(prefix="streammuse-fmd-") as tmp:
        ref, test = Path(tmp) / "reference", Path(tmp) / "test"
        ref.mkdir()
        test.mkdir()
        _write_accompaniment(truth, ref)
        _write_accompaniment(played, test)
        with warnings.catch_warnings():
            # near-singular products are expected for tiny or identical sets; the
            # library already falls back to a regularised square root
            warnings.simplefilter("ignore", category=scipy.linalg.LinAlgWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)  # the library's sqrtm(disp=)
            warnings.simplefilter("ignore", category=RuntimeWarning)
            try:
                score = float(metric.score(ref, test))
            except ValueError as exc:
                # A few short songs can give covariances whose product has no real square
                # root (the library refuses an imaginary part); FMD is then undefined.
                if "Imaginary component" not in str(exc):
                    raise
                return float("nan")
    # round-off of the matrix square root leaves about 1e-16 for identical sets
    return 0.0 if score < 1e-9 else score
