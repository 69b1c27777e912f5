"""`streammuse datasets ...` end to end, and every bad input the issue lists."""

import json
from pathlib import Path

import pytest
from datasets_midi import POP909, write_midi
from typer.testing import CliRunner

from streammuse.cli.main import app

TESTSET = Path(__file__).resolve().parents[1] / "testset"


def run(*args):
    return CliRunner().invoke(app, ["datasets", *map(str, args)])


def _bad_files(folder: Path) -> dict[str, str]:
    """name -> the reason the CLI must give for it."""
    (folder / "text.mid").write_text("MIDI? no, just text\n")
    (folder / "empty.mid").write_bytes(b"")
    data = (POP909 / "001.mid").read_bytes()
    (folder / "truncated.mid").write_bytes(data[: len(data) // 2])
    write_midi(folder / "drums.mid", [("kit", 9, [(0, 240, 36), (480, 240, 38)])])
    write_midi(folder / "nonotes.mid", [("piano", 0, [])])
    # Every pitched note off the piano keys (21..108): nothing is left once they are dropped.
    write_midi(folder / "offkeys.mid", [("synth", 0, [(0, 480, 12), (480, 480, 120)])])
    # A usable POP909-layout file (for the named-track error).
    write_midi(folder / "pop909like.mid", [("MELODY", 0, [(0, 480, 72)]), ("PIANO", 1, [(0, 480, 48)])])
    return {
        "text.mid": "not a MIDI file (no MThd header)",
        "empty.mid": "empty file",
        "truncated.mid": "truncated MIDI file (it ends inside a track)",
        "drums.mid": "drums only, no pitched notes",
        "nonotes.mid": "no notes",
        "offkeys.mid": "all 2 pitched notes are outside the piano range 21..108 (dropped)",
    }


@pytest.mark.parametrize("name", ["text.mid", "empty.mid", "truncated.mid", "drums.mid", "nonotes.mid", "offkeys.mid"])
def test_bad_file_one_line_exit_2(tmp_path, name):
    reason = _bad_files(tmp_path)[name]
    result = run("info", tmp_path / name)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / name}: {reason}"
    assert "Traceback" not in result.output


def test_named_track_missing(tmp_path):
    _bad_files(tmp_path)
    result = run("info", tmp_path / "pop909like.mid", "--melody-track", "lead")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'pop909like.mid'}: no track named 'lead' (tracks: MELODY, PIANO)"


def test_folder_skips_bad_files_and_says_why(tmp_path):
    reasons = _bad_files(tmp_path)
    (tmp_path / "pop909like.mid").unlink()
    (tmp_path / "001.mid").write_bytes((POP909 / "001.mid").read_bytes())
    result = run("info", tmp_path)
    assert result.exit_code == 0
    assert "001" in result.stdout and "pop909" in result.stdout and "1164" in result.stdout
    assert f"skipped {len(reasons)} of {len(reasons) + 1} files:" in result.stderr
    for name, reason in reasons.items():
        assert f"{tmp_path / name}: {reason}" in result.stderr


def test_folder_with_only_bad_files(tmp_path):
    _bad_files(tmp_path)
    (tmp_path / "pop909like.mid").unlink()
    result = run("info", tmp_path)
    assert result.exit_code == 2
    assert f"error: {tmp_path}: none of the 6 MIDI files is usable" in result.stderr


def test_missing_and_unreadable_folders(tmp_path, monkeypatch):
    result = run("info", tmp_path / "nowhere")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such file or folder"
    result = run("info", tmp_path)
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path}: no MIDI files in this folder"
    result = run("build-testset", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"

    # Tests run as root here, where chmod 000 does not stop reading; make listing fail instead.
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    result = run("info", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path}: cannot read folder (Permission denied)"


def test_info_single_pop909_file():
    result = run("info", POP909 / "001.mid")
    assert result.exit_code == 0
    # 001: 146 bars, 1164 ticks, 264 melody and 1292 accompaniment notes, 14 over the cap,
    # none off the piano keys; muspy's polyphony counts a pitch the two parts share once.
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ 001"))
    assert [c.strip() for c in row.strip("│ ").split("│")] == [
        "001", "pop909", "146", "1164", "264", "1292", "3.68", "14", "0"]


def test_build_testset_command(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_midi(src / "song.mid", [("a", 0, [(0, 960, 72), (0, 960, 60)]), ("drums", 9, [(0, 120, 36)])])
    (src / "bad.mid").write_text("x")
    result = run("build-testset", src, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"wrote 1 songs to {tmp_path / 'out'}" in result.stdout
    assert f"{src / 'bad.mid'}: not a MIDI file (no MThd header)" in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["file"] for s in manifest["songs"]] == ["song.mid"]
    only_bad = tmp_path / "onlybad"
    only_bad.mkdir()
    (only_bad / "bad.mid").write_text("x")
    result = run("build-testset", only_bad, "--out", tmp_path / "out2")
    assert result.exit_code == 2 and "none of the 1 MIDI files is usable; nothing written" in result.stderr


def test_help_lists_datasets():
    result = CliRunner().invoke(app, ["datasets", "--help"])
    assert result.exit_code == 0
    for command in ("info", "build-testset", "download"):
        assert command in result.stdout


def test_build_testset_output_not_writable(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_midi(src / "song.mid", [("a", 0, [(0, 960, 72), (0, 960, 60)])])
    (tmp_path / "file").write_text("in the way")
    result = run("build-testset", src, "--out", tmp_path / "file" / "out")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'file' / 'out'}: cannot create the output folder")
