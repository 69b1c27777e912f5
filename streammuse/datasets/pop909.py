"""POP909: the fixed split by song id and the tokenised training corpus.

Split (fixed, by the last digit of the three-digit song id ``NNN``):

* ends in 9 -> ``valid`` (91 songs: 009, 019, ..., 909)
* ends in 0 -> ``test``  (90 songs: 010, 020, ..., 900)
* otherwise -> ``train`` (728 songs)

Every tenth song goes to each held-out split, so both spread evenly over the collection
(POP909's ids are not ordered by artist or era) and the rule needs no shipped id list.

Songs are split by the POP909 rule (melody = ``MELODY``, accompaniment = ``PIANO`` +
``BRIDGE``) and tokenised once; the corpus is cached as one ``.npz`` per data folder
(see :mod:`streammuse.datasets.corpus`). This module imports no MIDI parser at import
time: a warm cache loads with numpy alone.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from streammuse.datasets.corpus import Corpus, cached_corpus_path, folder_key, read_cached
from streammuse.errors import StreamMuseError

SPLITS = ("train", "valid", "test")
N_SONGS = 909
PARSE_WORKERS = 2  # this machine has 2 cores
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """``$STREAMMUSE_POP909`` if set, else ``../shared/data/pop909`` next to the repository."""
    env = os.environ.get("STREAMMUSE_POP909")
    return Path(env) if env else (_REPO_ROOT.parent / "shared" / "data" / "pop909")


def split_of(song_id: str | int) -> str:
    """The split of a POP909 song id: last digit 9 -> valid, 0 -> test, else train."""
    last = str(song_id).strip()[-1:]
    if not last.isdigit():
        raise StreamMuseError(f"{song_id!r} is not a POP909 song id (NNN)")
    return {"9": "valid", "0": "test"}.get(last, "train")


def song_files(data_dir: str | Path) -> list[Path]:
    """The ``NNN.mid`` files of a POP909 folder, sorted by id.

    Accepts the flat layout (``NNN.mid``) and the official one (``NNN/NNN.mid``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise StreamMuseError(f"{data_dir}: no such POP909 folder")
    try:
        files = [p for p in data_dir.glob("*.mid") if p.stem.isdigit()]
        files += [p for p in data_dir.glob("*/*.mid") if p.stem.isdigit() and p.parent.name == p.stem]
    except OSError as exc:
        raise StreamMuseError(f"{data_dir}: cannot read folder ({exc.strerror})") from None
    if not files:
        raise StreamMuseError(f"{data_dir}: no POP909 files (NNN.mid) in this folder")
    return sorted(files, key=lambda p: p.stem)


def tokenise_file(path: str | Path) -> tuple[np.ndarray, int]:
    """One POP909 file -> (InterL(M, A) as int16 ``(2T, FRAME_LEN)``, notes dropped by the cap)."""
    from streammuse.datasets.frames import interleave, song_to_frames
    from streammuse.datasets.skyline import load_song

    melody_frames, accompaniment_frames, n_dropped = song_to_frames(load_song(path))
    return interleave(melody_frames, accompaniment_frames), n_dropped


def _tokenise_job(path: str) -> tuple[str, np.ndarray | None, int, str]:
    try:
        seq, n_dropped = tokenise_file(path)
    except StreamMuseError as exc:
        return Path(path).stem, None, 0, getattr(exc, "reason", str(exc))
    return Path(path).stem, seq, n_dropped, ""


def tokenise_files(files: list[Path], workers: int = PARSE_WORKERS) -> Corpus:
    """Tokenise files (in ``workers`` processes); unreadable files land in ``skipped``."""
    paths = [str(f) for f in files]
    if workers > 1 and len(paths) > 1:
        # spawn, not fork: the caller may hold threads (torch, Ray) that fork would break.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_tokenise_job, paths, chunksize=16))
    else:
        results = [_tokenise_job(p) for p in paths]
    corpus = Corpus([], [], [])
    for (stem, seq, n_dropped, reason), path in zip(results, paths):
        if seq is None:
            corpus.skipped.append((path, reason))
            continue
        corpus.ids.append(stem)
        corpus.sequences.append(seq)
        corpus.n_dropped.append(n_dropped)
    return corpus


def load_corpus(
    data_dir: str | Path | None = None,
    split: str = "train",
    cache_dir: str | Path | None = None,
    workers: int = PARSE_WORKERS,
) -> Corpus:
    """The tokenised POP909 songs of one split (``train``, ``valid``, ``test`` or ``all``).

    The first call parses every file of the folder (``workers`` processes) and caches
    the whole corpus; later calls read the cache (numpy only). The cache key is the
    vocabulary layout plus every file's name and content, so editing a file, adding one
    or changing the vocabulary rebuilds it.

    Args:
        data_dir: a POP909 folder (``NNN.mid``); ``None``: :func:`default_data_dir`.
        split: which songs to return.
        cache_dir: cache folder; ``None``: ``$STREAMMUSE_CACHE`` or ``~/.cache/streammuse``.
        workers: parser processes on a cold cache.
    """
    if split not in (*SPLITS, "all"):
        raise StreamMuseError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}, all")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    files = song_files(data_dir)
    key = folder_key(files)
    path = cached_corpus_path(data_dir, key, cache_dir)
    corpus = read_cached(path, key)
    if corpus is None:
        corpus = tokenise_files(files, workers)
        corpus.save(path, key)
    if split == "all":
        return corpus
    return corpus.subset([sid for sid in corpus.ids if split_of(sid) == split])
