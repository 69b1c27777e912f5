"""POP909 split and the cached tokenised corpus."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammuse.datasets import pop909, vocab
from streammuse.datasets.corpus import Corpus
from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.skyline import load_song
from streammuse.errors import StreamMuseError

POP909 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pop909"
IDS = ["001", "009", "010", "042"]


@pytest.fixture
def small_pop909(tmp_path):
    folder = tmp_path / "pop909"
    folder.mkdir()
    for sid in IDS:
        shutil.copy(POP909 / f"{sid}.mid", folder / f"{sid}.mid")
    return folder


def test_split_rule():
    assert [pop909.split_of(s) for s in ["001", "009", "010", "909", "900", "458"]] == [
        "train", "valid", "test", "valid", "test", "train"]
    ids = [f"{i:03d}" for i in range(1, 910)]
    counts = {s: sum(pop909.split_of(i) == s for i in ids) for s in pop909.SPLITS}
    assert counts == {"train": 728, "valid": 91, "test": 90}


def test_load_corpus_splits_and_interleaving(small_pop909, tmp_path):
    cache = tmp_path / "cache"
    train = pop909.load_corpus(small_pop909, "train", cache_dir=cache, workers=2)
    assert train.ids == ["001", "042"]
    assert pop909.load_corpus(small_pop909, "valid", cache_dir=cache).ids == ["009"]
    assert pop909.load_corpus(small_pop909, "test", cache_dir=cache).ids == ["010"]
    # Row 2t is A[t], row 2t+1 is M[t] (design.md section 1).
    m, a, n_dropped = song_to_frames(load_song(small_pop909 / "001.mid"))
    seq = train.sequences[0]
    assert seq.dtype == np.int16 and seq.shape == (2 * len(m), vocab.FRAME_LEN)
    np.testing.assert_array_equal(seq[0::2], a)
    np.testing.assert_array_equal(seq[1::2], m)
    assert train.n_dropped[0] == n_dropped


def test_cache_is_reused_and_invalidated(small_pop909, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = pop909.load_corpus(small_pop909, "all", cache_dir=cache, workers=1)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(pop909, "tokenise_files", no_parsing)
    again = pop909.load_corpus(small_pop909, "all", cache_dir=cache)
    assert again.ids == first.ids
    for x, y in zip(again.sequences, first.sequences):
        np.testing.assert_array_equal(x, y)
    # Removing a file changes the key: the corpus is parsed again.
    (small_pop909 / "042.mid").unlink()
    with pytest.raises(AssertionError, match="cache should have been used"):
        pop909.load_corpus(small_pop909, "all", cache_dir=cache)


def test_cached_load_needs_no_midi_parser(small_pop909, tmp_path):
    cache = tmp_path / "cache"
    pop909.load_corpus(small_pop909, "all", cache_dir=cache, workers=1)
    code = (
        "import sys; sys.modules['pretty_midi'] = None; sys.modules['mido'] = None\n"
        "from streammuse.datasets.pop909 import load_corpus\n"
        f"c = load_corpus({str(small_pop909)!r}, 'train', cache_dir={str(cache)!r})\n"
        "print(c.ids)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['001', '042']"


def test_bad_file_is_skipped_with_reason(small_pop909, tmp_path):
    (small_pop909 / "100.mid").write_bytes(b"not a midi file")
    corpus = pop909.load_corpus(small_pop909, "all", cache_dir=tmp_path / "c", workers=1)
    assert corpus.ids == IDS
    assert len(corpus.skipped) == 1
    assert corpus.skipped[0][0].endswith("100.mid") and corpus.skipped[0][1] == "not a MIDI file (no MThd header)"


def test_bad_arguments(tmp_path, small_pop909):
    with pytest.raises(StreamMuseError, match="no such POP909 folder"):
        pop909.load_corpus(tmp_path / "missing", "train", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamMuseError, match="no POP909 files"):
        pop909.load_corpus(tmp_path / "empty", "train", cache_dir=tmp_path)
    with pytest.raises(StreamMuseError, match="unknown split"):
        pop909.load_corpus(small_pop909, "dev", cache_dir=tmp_path)


def test_corpus_save_load_round_trip(tmp_path):
    seqs = [np.arange(10, dtype=np.int16).reshape(2, 5), np.ones((4, 5), np.int16)]
    c = Corpus(["a", "b"], seqs, [3, 0], [("x.mid", "empty file")])
    back = Corpus.load(c.save(tmp_path / "c.npz"))
    assert back.ids == ["a", "b"] and back.n_dropped == [3, 0] and back.skipped == [("x.mid", "empty file")]
    for x, y in zip(back.sequences, seqs):
        np.testing.assert_array_equal(x, y)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(StreamMuseError, match="not a readable corpus cache"):
        Corpus.load(tmp_path / "junk.npz")
