"""`streammuse render RUN --format wav`: hear a run folder's performances.

Each ``songs/<name>.mid`` (melody as played, accompaniment as played) is rendered with
the jam page's voice (:mod:`streammuse.audio.synth`) at the run's BPM into
``RUN/audio/<name>.wav`` (16-bit PCM mono, 44.1 kHz). The voice is additive synthesis
in numpy, chosen over FluidSynth + a General MIDI SoundFont because it needs no system
package, sounds like what the musician heard in the page, and renders the same on
every machine (the tests can check its output sample by sample).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from streammuse.audio.synth import SAMPLE_RATE, VOICE, render_notes
from streammuse.datasets.song import TICKS_PER_BEAT, Song
from streammuse.errors import StreamMuseError

FORMATS = ("wav",)
PEAK = 0.9  # headroom below full scale when a dense passage would clip


def render_song(song: Song, bpm: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A performance as mono float32 samples in [-1, 1] (melody and accompaniment mixed)."""
    seconds_per_tick = 60.0 / (bpm * TICKS_PER_BEAT)
    gain = VOICE["gain"]
    audio = render_notes([(song.melody, gain["melody"]), (song.accompaniment, gain["accompaniment"])],
                         seconds_per_tick, sr)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > PEAK else audio


def write_wav(path: Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def render_run(run: Path, fmt: str = "wav", out: Path | None = None, songs: list[str] | None = None) -> list[Path]:
    """Render the finished songs of ``run`` (all, or those named) into ``out`` (default ``RUN/audio``)."""
    from streammuse.metrics.evaluate import read_manifest, read_performance

    if fmt not in FORMATS:
        raise StreamMuseError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    run = Path(run)
    manifest = read_manifest(run)
    bpm = float(manifest.get("bpm") or 120.0)
    done = {p.name for p in (run / "done").iterdir()} if (run / "done").is_dir() else set()
    names = [n for n in manifest["songs"] if n in done]
    if songs:
        unknown = [n for n in songs if n not in names]
        if unknown:
            raise StreamMuseError(f"{run}: no finished song {unknown[0]!r} (finished: {', '.join(names) or 'none'})")
        names = list(songs)
    if not names:
        raise StreamMuseError(f"{run}: no finished song to render")
    out = Path(out) if out is not None else run / "audio"
    written = []
    for name in names:
        path = out / f"{name}.{fmt}"
        write_wav(path, render_song(read_performance(run / "songs" / f"{name}.mid"), bpm))
        written.append(path)
    return written
