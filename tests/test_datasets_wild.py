"""MIDI files from the wild (issue 16): every case on a small file the test writes itself."""

import json

import mido
import numpy as np
import pretty_midi
import pytest
from datasets_midi import write_midi
from typer.testing import CliRunner

from streammuse.cli.main import app
from streammuse.datasets.skyline import load_melody, load_song
from streammuse.datasets.testset import build_testset, load_testset, output_names
from streammuse.errors import StreamMuseError

TWO_VOICES = [("piano", 0, [(0, 960, 72), (960, 960, 74), (0, 1920, 60), (0, 1920, 64)])]


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _src(tmp_path, names=("a.mid",)):
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        write_midi(src / name, TWO_VOICES)
    return src


# 1. Two source files with one stem: both songs are kept, under distinct names.

def test_same_stem_sources_are_all_kept(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_midi(src / "x.mid", TWO_VOICES)
    write_midi(src / "x.midi", [("piano", 0, [(0, 960, 67), (0, 960, 55)])])
    write_midi(src / "y.mid", TWO_VOICES)
    result = run("datasets", "build-testset", src, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"wrote 3 songs to {tmp_path / 'out'}" in result.stdout
    assert "x.mid -> x_mid.mid" in result.stdout and "x.midi -> x_midi.mid" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["file"] for s in manifest["songs"]] == ["x_mid.mid", "x_midi.mid", "y.mid"]
    assert [s["path"] for s in manifest["songs"]] == ["x.mid", "x.midi", "y.mid"]
    songs = {s.name: s for s in load_testset(tmp_path / "out")}
    assert sorted(songs) == ["x_mid", "x_midi", "y"]
    assert songs["x_midi"].melody.tolist() == [[0, 8, 67]] and songs["x_mid"].melody[0, 2] == 72


def test_output_names_never_collide():
    from pathlib import Path

    files = [Path(n) for n in ("X.MID", "a_mid.mid", "a.mid", "a.midi", "x.mid")]
    names = output_names(files)
    assert names == {Path("X.MID"): "X_MID", Path("a_mid.mid"): "a_mid", Path("a.mid"): "a_mid_2",
                     Path("a.midi"): "a_midi", Path("x.mid"): "x_mid_2"}
    assert len({n.casefold() for n in names.values()}) == len(files)


# 2. --out equal to or inside SRC is refused; a second run replaces its own build.

@pytest.mark.parametrize("inside", ["", "sub", "sub/deeper"])
def test_out_in_source_folder_is_refused(tmp_path, inside):
    src = _src(tmp_path)
    before = (src / "a.mid").read_bytes()
    out = src / inside if inside else src
    line = one_error_line(run("datasets", "build-testset", src, "--out", out))
    assert line == (f"error: {out}: the output folder is the source folder or inside it; "
                    "choose another --out (the sources would be overwritten)")
    assert (src / "a.mid").read_bytes() == before and not (src / "manifest.json").exists()


def test_second_run_replaces_the_first_build(tmp_path):
    src = _src(tmp_path, ("a.mid", "b.mid"))
    out = tmp_path / "out"
    assert len(build_testset(src, out).entries) == 2
    (src / "b.mid").unlink()
    write_midi(src / "c.mid", TWO_VOICES)
    build = build_testset(src, out)  # reads its own manifest in OUT without trouble
    assert [e.file for e in build.entries] == ["a.mid", "c.mid"] and build.removed == ["b.mid"]
    assert sorted(p.name for p in out.iterdir()) == ["a.mid", "c.mid", "manifest.json"]
    result = run("datasets", "build-testset", src, "--out", out)
    assert result.exit_code == 0 and "wrote 2 songs" in result.stdout


def test_out_with_foreign_files_and_built_source_are_refused(tmp_path):
    src = _src(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    write_midi(foreign / "mine.mid", TWO_VOICES)
    line = one_error_line(run("datasets", "build-testset", src, "--out", foreign))
    assert line == (f"error: {foreign}: holds MIDI files that no earlier build wrote (mine.mid, ...); "
                    "choose an empty or new --out")
    build_testset(src, tmp_path / "built")
    line = one_error_line(run("datasets", "build-testset", tmp_path / "built", "--out", tmp_path / "again"))
    assert line == (f"error: {tmp_path / 'built'}: this is a built test set (its manifest.json was written by "
                    "build-testset), not a folder of source pieces; use it as it is, or build from the sources")
    (src / "manifest.json").write_text('{"not": "a list"}')
    line = one_error_line(run("datasets", "build-testset", src, "--out", tmp_path / "o"))
    assert line == f"error: {src / 'manifest.json'}: not a source manifest (a list of {{file, source, path, license}} objects)"


# 3. Notes off the piano keys: dropped when read and counted apart from the cap, everywhere.

def _off_keys_file(path):
    # Skyline melody 72, 74 with one note at pitch 11 (below A0) under it and one at 127
    # (above C8) that would otherwise become the melody; five notes start at tick 0 in
    # the accompaniment (48, 52, 55, 60, 64 under 72), one over the 4-note cap.
    return write_midi(path, [("piano", 0, [(0, 960, 72), (960, 960, 74), (0, 1920, 11), (960, 480, 127)]
                              + [(0, 1920, p) for p in (48, 52, 55, 60, 64)])])


def test_off_key_notes_one_rule_for_info_build_and_load(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _off_keys_file(src / "wild.mid")
    song = load_song(src / "wild.mid", skyline_only=True)
    assert song.notes_out_of_range == 2
    assert song.melody[:, 2].tolist() == [72, 74]  # 127 was dropped before the skyline
    assert song.accompaniment[:, 2].tolist() == [48, 52, 55, 60, 64]

    result = run("datasets", "info", src / "wild.mid", "--skyline")
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ wild"))
    # bars, ticks, melody, accomp., poly., capped, off-key
    assert [c.strip() for c in row.strip("│ ").split("│")][2:] == ["1", "16", "2", "5", "6.00", "1", "2"]

    build = build_testset(src, tmp_path / "out")
    (e,) = build.entries
    assert (e.notes_dropped, e.notes_out_of_range, e.melody_notes, e.accompaniment_notes) == (1, 2, 2, 5)
    (loaded,) = load_testset(tmp_path / "out")  # what replay plays
    both = np.concatenate([loaded.melody, loaded.accompaniment])
    assert both[:, 2].min() >= 21 and both[:, 2].max() <= 108


def test_all_off_key_file_is_no_test_song(tmp_path):
    src = _src(tmp_path)
    write_midi(src / "low.mid", [("bass", 0, [(0, 480, 5), (480, 480, 9)]), ("top", 1, [(0, 480, 120)])])
    build = build_testset(src, tmp_path / "out")
    assert [e.file for e in build.entries] == ["a.mid"]
    assert build.skipped == [(str(src / "low.mid"), "all 3 pitched notes are outside the piano range 21..108 (dropped)")]


# 4. `datasets info` on a melody-only file.

def test_info_on_melody_only_file(tmp_path):
    write_midi(tmp_path / "tune.mid", [("flute", 0, [(0, 480, 72), (480, 480, 74), (960, 960, 76)])])
    result = run("datasets", "info", tmp_path / "tune.mid")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ tune"))
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["tune", "skyline", "1", "16", "3", "0", "1.00", "0", "0"]


# 6. Messages for files that have no beat grid or are not one piece.

def test_smpte_division_is_one_line(tmp_path):
    path = write_midi(tmp_path / "smpte.mid", TWO_VOICES)
    data = bytearray(path.read_bytes())
    data[12:14] = bytes([0xE7, 40])  # -25 frames per second, 40 ticks per frame
    path.write_bytes(bytes(data))
    line = one_error_line(run("datasets", "info", path))
    assert line == (f"error: {path}: SMPTE time division (25 frames/s x 40 ticks/frame) is not supported: "
                    "StreamMUSE needs a beat grid (ticks per quarter note)")


def test_type2_file_is_one_line(tmp_path):
    mid = mido.MidiFile(type=2, ticks_per_beat=480)
    for pitch in (60, 64):
        mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=pitch, velocity=80, time=0),
                                          mido.Message("note_off", note=pitch, velocity=0, time=480)]))
    mid.save(str(tmp_path / "two.mid"))
    line = one_error_line(run("datasets", "info", tmp_path / "two.mid"))
    assert line == (f"error: {tmp_path / 'two.mid'}: type-2 MIDI file (2 independent sequences) is not supported: "
                    "save it as type 1 (one piece, parallel tracks)")


# 5. `generate`: melody, meters and length of the input; messages.

@pytest.fixture(scope="module")
def micro_checkpoint(tmp_path_factory):
    from streammuse.model.config import StreamMuseConfig
    from streammuse.model.engine import StreamingEngine

    micro = StreamMuseConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, global_layers=2,
                             encoder_layers=1, decoder_layers=1, max_frames=128)  # no window rebuild
    folder = tmp_path_factory.mktemp("micro")
    StreamingEngine.random(micro, seed=0).model.save_pretrained(folder)
    return folder


def test_generate_keeps_meters_melody_and_length(tmp_path, micro_checkpoint):
    # 7/8 for two bars (28 ticks), then 13/4; the last note lasts 13 ticks, which no
    # duration token holds (12 or 16): the output must still end where the input ends.
    notes = [(i * 240, 240, 60 + i % 7) for i in range(20)] + [(20 * 240, 13 * 120, 11), (20 * 240, 13 * 120, 72)]
    path = write_midi(tmp_path / "tune.mid", [("lead", 0, notes)], time_signatures=((0, 7, 8), (3360, 13, 4)))
    result = run("generate", path, "--out", tmp_path / "out.mid", "--checkpoint", micro_checkpoint)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'out.mid'} (53 ticks at 120 BPM" in result.stdout
    assert "dropped 1 notes outside the piano keys (21..108)" in result.stderr
    inp, out = pretty_midi.PrettyMIDI(str(path)), pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    assert out.get_end_time() == pytest.approx(inp.get_end_time()) == pytest.approx(53 * 0.125)
    assert [(t.numerator, t.denominator, t.time) for t in out.time_signature_changes] == [(7, 8, 0.0), (13, 4, 3.5)]
    melody = load_melody(tmp_path / "out.mid")[0].melody
    assert melody.tolist() == load_melody(path)[0].melody.tolist()
    assert melody[-1].tolist() == [40, 13, 72]


def test_generate_messages(tmp_path):
    line = one_error_line(run("generate", tmp_path, "--out", tmp_path / "o.mid"))
    assert line == (f"error: {tmp_path}: is a folder; generate takes one MIDI file "
                    "(a folder of songs: streammuse replay FOLDER --setting offline)")
    line = one_error_line(run("generate", tmp_path / "none.mid", "--out", tmp_path / "o.mid"))
    assert line == f"error: {tmp_path / 'none.mid'}: no such file"
    path = write_midi(tmp_path / "t.mid", TWO_VOICES)
    line = one_error_line(run("generate", path, "--out", tmp_path))
    assert line == f"error: {tmp_path}: is a folder; --out takes the name of the MIDI file to write"
    write_midi(tmp_path / "low.mid", [("lead", 0, [(0, 480, 3)])])
    with pytest.raises(StreamMuseError, match="all 1 pitched notes are outside the piano range"):
        load_melody(tmp_path / "low.mid")
