"""`streammuse render RUN --format wav` and the page's voice in numpy."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from streammuse.audio.render import render_run
from streammuse.audio.synth import SAMPLE_RATE, VOICE, decay_s, note_wave
from streammuse.cli.main import app as cli_app
from streammuse.experiment.runs import RunWriter
from streammuse.datasets.song import Song, note_array
from streammuse.errors import StreamMuseError


def _run(tmp_path, melody, accompaniment=(), bpm=120.0):
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({"setting": "jam", "interval": 2, "gen_len": 5, "bpm": bpm, "songs": ["take"]})
    writer.write_song(Song("take", note_array(melody), note_array(accompaniment)), bpm, [], [])
    return writer.path


def _read(path):
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float) / 32767.0


def test_an_a4_renders_at_440_hz_for_its_length(tmp_path):
    run = _run(tmp_path, [(0, 8, 69)])  # 8 ticks at 120 BPM: 1 s
    (path,) = render_run(run)
    assert path == run / "audio" / "take.wav"
    audio = _read(path)
    tail_s = 5 * VOICE["release_s"]
    assert len(audio) / SAMPLE_RATE == pytest.approx(1.0 + tail_s + 0.05, abs=0.01)
    spectrum = np.abs(np.fft.rfft(audio[: SAMPLE_RATE]))
    assert np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(440.0, abs=1.0)
    peak = VOICE["gain"]["melody"]
    assert 0.5 * peak < np.abs(audio[: SAMPLE_RATE // 10]).max() <= peak  # the attack reaches the gain


def test_the_voice_decays_and_releases():
    wave_ = note_wave(60, 0.5, 1.0)
    env = lambda a, b: np.abs(wave_[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)]).max()  # noqa: E731
    # one decay time constant after the attack the level is about 1/e of the start
    assert env(0.4, 0.42) / env(0.0, 0.02) == pytest.approx(np.exp(-0.4 / decay_s(60)), rel=0.15)
    assert env(0.5 + 4 * VOICE["release_s"], 0.5 + 5 * VOICE["release_s"]) < 0.05 * env(0.45, 0.5)
    assert decay_s(84) == pytest.approx(decay_s(60) / 2)


def test_a_dense_take_is_scaled_below_full_scale(tmp_path):
    chord = [(0, 16, p) for p in (48, 52, 55, 60, 64, 67, 72, 76)]
    audio = _read(render_run(_run(tmp_path, chord, chord))[0])
    assert np.abs(audio).max() == pytest.approx(0.9, abs=0.01)


def test_render_cli_and_its_errors(tmp_path):
    run = _run(tmp_path, [(0, 4, 60)])
    ok = CliRunner().invoke(cli_app, ["render", str(run), "--format", "wav", "--out", str(tmp_path / "wav")])
    assert ok.exit_code == 0 and (tmp_path / "wav" / "take.wav").is_file()
    for args, message in ((["--format", "mp3"], "--format must be one of wav"), (["--song", "nope"], "no finished song 'nope'")):
        bad = CliRunner().invoke(cli_app, ["render", str(run), *args])
        assert bad.exit_code == 2 and message in bad.output and bad.output.count("\n") == 1
    with pytest.raises(StreamMuseError, match="no such run folder"):
        render_run(tmp_path / "missing")
