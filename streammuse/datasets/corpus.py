"""The tokenised corpus and its on-disk cache (numpy only, no MIDI parser).

A corpus is a list of interleaved frame sequences, one per song:
InterL(M, A) = (A[0], M[0], A[1], M[1], ...), int16 of shape ``(2T, FRAME_LEN)``
(section III-B). Training reads it from one ``.npz`` per data folder, so this module
imports only numpy: a GPU machine without ``pretty_midi`` can still load a cached corpus.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streammuse.datasets import vocab
from streammuse.errors import StreamMuseError

# Bump when the way songs become frames changes (tick grid, split rules, cap rule),
# so old caches are ignored rather than silently reused.
CACHE_FORMAT = 2


@dataclass
class Corpus:
    """Tokenised songs.

    Attributes:
        ids: song ids (file stems, e.g. ``"001"``).
        sequences: per song, the interleaved frames, int16 ``(2T, FRAME_LEN)``.
        n_dropped: per song, notes dropped by the 4-note cap (or outside the vocabulary's
            pitch range).
        skipped: ``(file, reason)`` for source files that could not be tokenised.
    """

    ids: list[str]
    sequences: list[np.ndarray]
    n_dropped: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep_ids: set[str] | list[str]) -> "Corpus":
        """The songs whose id is in ``keep_ids``, in corpus order."""
        keep = set(keep_ids)
        rows = [i for i, sid in enumerate(self.ids) if sid in keep]
        return Corpus(
            [self.ids[i] for i in rows],
            [self.sequences[i] for i in rows],
            [self.n_dropped[i] for i in rows],
            list(self.skipped),
        )

    @property
    def n_frames(self) -> int:
        """Total rows (frames) over all sequences."""
        return int(sum(len(s) for s in self.sequences))

    def save(self, path: str | Path, key: str = "") -> Path:
        """Write the corpus to one ``.npz`` (atomically: temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        frames = (
            np.concatenate(self.sequences).astype(np.int16)
            if self.sequences
            else np.zeros((0, vocab.FRAME_LEN), np.int16)
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            key=np.array(key),
            ids=np.array(self.ids, dtype=str),
            lengths=lengths,
            frames=frames,
            n_dropped=np.array(self.n_dropped, dtype=np.int64),
            skipped=np.array([f"{f}\t{r}" for f, r in self.skipped], dtype=str),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Corpus":
        """Read a corpus written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return _from_npz(z)
        except (OSError, KeyError, ValueError) as exc:
            raise StreamMuseError(f"{path}: not a readable corpus cache ({exc})") from None


def _from_npz(z) -> Corpus:
    frames = z["frames"]
    cuts = np.cumsum(z["lengths"])[:-1]
    sequences = np.split(frames, cuts) if len(z["lengths"]) else []
    skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
    return Corpus(z["ids"].tolist(), sequences, z["n_dropped"].tolist(), skipped)


def vocab_layout() -> str:
    """A string that changes whenever the token layout changes."""
    return (
        f"format={CACHE_FORMAT} pad={vocab.PAD} eof={vocab.EOF} bos={vocab.BOS} "
        f"note_offset={vocab.NOTE_OFFSET} pitches={vocab.MIN_PITCH}-{vocab.MAX_PITCH} "
        f"durations={vocab.DURATIONS_TICKS} frame_len={vocab.FRAME_LEN}"
    )


def folder_key(files: list[Path]) -> str:
    """Cache key: the vocabulary layout plus the name and content (sha1) of each file.

    Content rather than mtimes, so a copied data folder (another machine, a fresh clone
    of shared data) still finds its cache; hashing 11 MB takes a few tens of ms.
    """
    h = hashlib.sha1(vocab_layout().encode())
    for f in sorted(files):
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha1(f.read_bytes()).digest())
    return h.hexdigest()


def cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: the argument, else ``$STREAMMUSE_CACHE``, else ``~/.cache/streammuse``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("STREAMMUSE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "streammuse"


def cached_corpus_path(data_dir: str | Path, key: str, cache: str | Path | None = None) -> Path:
    """Where the corpus of ``data_dir`` with this ``key`` is cached."""
    return cache_dir(cache) / f"corpus-{Path(data_dir).resolve().name}-{key[:16]}.npz"


def read_cached(path: Path, key: str) -> Corpus | None:
    """The cached corpus at ``path`` if it exists and was written for ``key``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return _from_npz(z)
    except (OSError, KeyError, ValueError):
        return None  # a half-written or foreign file: rebuild it
