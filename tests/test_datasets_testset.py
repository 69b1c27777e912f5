"""The committed 64-song test set, its build, and load_testset."""

import json
from pathlib import Path

import numpy as np
import pytest
from datasets_midi import TESTSET_SRC, write_midi

from streammuse.datasets.skyline import load_song
from streammuse.datasets.testset import build_testset, load_testset
from streammuse.errors import StreamMuseError

TESTSET = Path(__file__).resolve().parents[1] / "testset"


def test_committed_testset_has_64_nonempty_songs():
    manifest = json.loads((TESTSET / "manifest.json").read_text())
    songs = manifest["songs"]
    assert len(songs) == 64
    assert sum(s["file"].startswith("accomontage3_") for s in songs) == 30
    assert sum(s["file"].startswith("pop1k7_") for s in songs) == 34
    for s in songs:
        assert (TESTSET / s["file"]).is_file()
        assert s["melody_notes"] > 0 and s["accompaniment_notes"] > 0 and s["bars"] > 0
        assert s["license"] and s["source"] and s["path"]
    loaded = load_testset(TESTSET)
    assert len(loaded) == 64
    assert all(len(s.melody) and len(s.accompaniment) for s in loaded)


@pytest.mark.parametrize("name", ["accomontage3_018", "pop1k7_src_003_595"])
def test_testset_file_equals_skyline_of_its_source(name):
    """Build -> MIDI at 120 BPM -> read back gives exactly the skyline split of the source."""
    src = load_song(TESTSET_SRC / f"{name}.mid", skyline_only=True)
    (back,) = load_testset(TESTSET, songs=[name])
    np.testing.assert_array_equal(back.melody, src.melody)
    np.testing.assert_array_equal(back.accompaniment, src.accompaniment)
    assert back.time_signatures == src.time_signatures
    entry = next(s for s in json.loads((TESTSET / "manifest.json").read_text())["songs"]
                 if s["file"] == f"{name}.mid")
    assert entry["ticks"] == src.n_ticks and entry["melody_notes"] == len(src.melody)


def test_skyline_melody_is_monophonic_top_line():
    (song,) = load_testset(TESTSET, songs=["pop1k7_src_002_147"])
    mel = song.melody
    ends = mel[:-1, 0] + mel[:-1, 1]
    assert np.all(ends <= mel[1:, 0])  # no two melody notes overlap
    assert len(np.unique(mel[:, 0])) == len(mel)


def test_load_testset_selection_and_crop():
    songs = load_testset(TESTSET, songs=["pop1k7_src_002_147", "accomontage3_001"], max_bars=4)
    assert [s.name for s in songs] == ["pop1k7_src_002_147", "accomontage3_001"]
    # pop1k7_src_002_147 has a 2-beat pickup bar (time signature again at tick 8): 8 + 3 * 16
    assert songs[0].n_ticks <= 56 and songs[0].n_bars == 4
    assert songs[1].n_ticks <= 64 and songs[1].n_bars == 4
    with pytest.raises(StreamMuseError, match="no song named 'nope'"):
        load_testset(TESTSET, songs=["nope"])
    with pytest.raises(StreamMuseError, match="max_bars must be at least 1"):
        load_testset(TESTSET, max_bars=0)


def test_load_testset_missing_or_empty_folder(tmp_path):
    with pytest.raises(StreamMuseError, match="no such folder"):
        load_testset(tmp_path / "missing")
    with pytest.raises(StreamMuseError, match="no MIDI files"):
        load_testset(tmp_path)


def test_build_testset_small(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Two voices: top line C5 D5 over a held C4-E4 dyad.
    write_midi(src / "a.mid", [("piano", 0, [(0, 960, 72), (960, 960, 74), (0, 1920, 60), (0, 1920, 64)])])
    (src / "bad.mid").write_bytes(b"")
    (src / "manifest.json").write_text(json.dumps(
        [{"file": "a.mid", "source": "me/repo", "path": "x/a.mid", "license": "MIT"}]))
    build = build_testset(src, tmp_path / "out")
    assert [e.file for e in build.entries] == ["a.mid"] and build.skipped == [(str(src / "bad.mid"), "empty file")]
    e = build.entries[0]
    assert (e.source, e.path, e.license, e.bars, e.ticks, e.melody_notes, e.accompaniment_notes,
            e.notes_dropped, e.notes_out_of_range) == ("me/repo", "x/a.mid", "MIT", 1, 16, 2, 2, 0, 0)
    (song,) = load_testset(tmp_path / "out")
    assert song.melody.tolist() == [[0, 8, 72], [8, 8, 74]]
    assert song.accompaniment.tolist() == [[0, 16, 60], [0, 16, 64]]
