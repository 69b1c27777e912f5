"""The piano-like voice of the jam page, in numpy (``streammuse render`` uses it).

One voice, written once here and served to the page as ``/jam/config.json`` (the page
builds the same sound with Web Audio): a sum of harmonics (``partials``, amplitude of
the n-th harmonic) under an envelope of a linear attack, an exponential decay whose
time constant halves every ``decay_halving_semitones`` above middle C (high piano
strings die sooner), and an exponential release after the note's end. It is additive
synthesis, not a sampled piano: nothing is downloaded, and a take renders the same on
any machine.
"""

from __future__ import annotations

import numpy as np

VOICE: dict = {
    "partials": [1.0, 0.42, 0.22, 0.12, 0.07, 0.035],  # a bright, piano-ish spectrum
    "attack_s": 0.005,  # hammer: fast, but no click
    "decay_s_at_c4": 0.8,  # time constant of the decay at MIDI 60
    "decay_halving_semitones": 24.0,  # two octaves up, the decay is twice as fast
    "release_s": 0.06,  # time constant after the key is released
    "gain": {"melody": 0.22, "accompaniment": 0.13, "metronome": 0.25},
}
SAMPLE_RATE = 44100


def midi_hz(pitch: float) -> float:
    """Frequency of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def decay_s(pitch: float, voice: dict = VOICE) -> float:
    """Time constant of the decay for ``pitch``."""
    return voice["decay_s_at_c4"] * 2.0 ** (-(pitch - 60.0) / voice["decay_halving_semitones"])


def note_wave(pitch: int, duration_s: float, gain: float, sr: int = SAMPLE_RATE, voice: dict = VOICE) -> np.ndarray:
    """One note: ``duration_s`` held, then the release tail (5 release time constants)."""
    tail_s = 5.0 * voice["release_s"]
    t = np.arange(int(round((duration_s + tail_s) * sr))) / sr
    f0 = midi_hz(pitch)
    wave = np.zeros_like(t)
    for n, amp in enumerate(voice["partials"], start=1):
        if n * f0 < sr / 2:  # no aliasing
            wave += amp * np.sin(2 * np.pi * n * f0 * t)
    wave /= sum(voice["partials"])
    attack = np.clip(t / voice["attack_s"], 0.0, 1.0)
    env = attack * np.exp(-np.maximum(t - voice["attack_s"], 0.0) / decay_s(pitch, voice))
    held = t < duration_s
    at_release = env[held][-1] if held.any() else 0.0
    env[~held] = at_release * np.exp(-(t[~held] - duration_s) / voice["release_s"])
    return gain * env * wave


def render_notes(parts: list[tuple[np.ndarray, float]], seconds_per_tick: float, sr: int = SAMPLE_RATE,
                 voice: dict = VOICE) -> np.ndarray:
    """Mix note arrays ``(onset, duration, pitch)`` in ticks, each with its gain, to mono float32."""
    ends = [((p[:, 0] + p[:, 1]).max() * seconds_per_tick) for p, _ in parts if len(p)]
    total_s = (max(ends) if ends else 0.0) + 5.0 * voice["release_s"] + 0.05
    out = np.zeros(int(round(total_s * sr)) + 1, dtype=np.float64)
    for part, gain in parts:
        for onset, dur, pitch in np.asarray(part).tolist():
            wave = note_wave(pitch, dur * seconds_per_tick, gain, sr, voice)
            start = int(round(onset * seconds_per_tick * sr))
            out[start:start + len(wave)] += wave[: len(out) - start]
    return out.astype(np.float32)
