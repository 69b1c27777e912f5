"""MIDI <-> the 1/16-note tick grid.

Reading works in the file's own beat grid (MIDI ticks / ticks-per-quarter), not in
seconds, so tempo maps (Pop1K7 files have hundreds of tempo changes) and any
resolution come out right: one tick = ``resolution / 4`` MIDI ticks.

Files from the wild, one rule each for every command (docs/data.md, "Files from the wild"):

* notes outside the 88 piano keys (``vocab.MIN_PITCH`` .. ``vocab.MAX_PITCH``) are dropped
  here, when the file is read, and counted (``GridMidi.n_out_of_range``), apart from the
  notes the 4-note cap drops later;
* an SMPTE time division (no beat grid) and a type-2 file with several tracks (independent
  sequences, not parts of one piece) are refused with one line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi

from streammuse.datasets import vocab
from streammuse.datasets.song import DURATION, ONSET, PITCH, TICKS_PER_BEAT, Song, merge_unisons, note_array
from streammuse.errors import BadMidiError

MELODY_VELOCITY = 90
ACCOMPANIMENT_VELOCITY = 70


@dataclass
class Track:
    """The pitched notes of one MIDI instrument on the tick grid."""

    name: str
    program: int
    notes: np.ndarray  # (n, 3): onset_tick, duration_ticks, pitch


@dataclass
class GridMidi:
    """A MIDI file read onto the tick grid: its pitched tracks and time signatures."""

    path: str
    tracks: list[Track]
    time_signatures: list[tuple[int, int, int]]
    n_drum_notes: int
    n_out_of_range: int = 0  # pitched notes off the piano keys, dropped when read
    bpm: float = 120.0  # the file's first tempo

    def no_notes_reason(self) -> str:
        """Why a file without pitched tracks has nothing to read (for :class:`BadMidiError`)."""
        if self.n_out_of_range:
            return (f"all {self.n_out_of_range} pitched notes are outside the piano range "
                    f"{vocab.MIN_PITCH}..{vocab.MAX_PITCH} (dropped)")
        return "drums only, no pitched notes" if self.n_drum_notes else "no notes"


def load_pretty_midi(path: str | Path) -> pretty_midi.PrettyMIDI:
    """Open a MIDI file, turning every parse failure into one :class:`BadMidiError`."""
    path = Path(path)
    if not path.is_file():
        raise BadMidiError(path, "no such file")
    if path.stat().st_size == 0:
        raise BadMidiError(path, "empty file")
    with path.open("rb") as f:
        head = f.read(256)
    if head[:4] not in (b"MThd", b"RIFF"):  # RIFF: an RMID wrapper, which mido reads
        raise BadMidiError(path, "not a MIDI file (no MThd header)")
    _check_header(path, head)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about type-0 files and odd meta events
            return pretty_midi.PrettyMIDI(str(path))
    except EOFError:
        raise BadMidiError(path, "truncated MIDI file (it ends inside a track)") from None
    except Exception as exc:  # mido/pretty_midi raise OSError, KeyError, ValueError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadMidiError(path, f"not a readable MIDI file ({reason})") from None


def _check_header(path: Path, head: bytes) -> None:
    """Refuse what has no beat grid or is not one piece: SMPTE division, multi-track type 2."""
    at = head.find(b"MThd")
    if at < 0 or len(head) < at + 14:
        return  # let the parser say what is wrong
    # MThd, length (4 bytes), then format, number of tracks, division (2 bytes each)
    fmt, n_tracks, division = (int.from_bytes(head[i:i + 2], "big") for i in range(at + 8, at + 14, 2))
    if division & 0x8000:
        fps, per_frame = 256 - (division >> 8), division & 0xFF
        raise BadMidiError(path, f"SMPTE time division ({fps} frames/s x {per_frame} ticks/frame) is not "
                                 "supported: StreamMUSE needs a beat grid (ticks per quarter note)")
    if division == 0:
        raise BadMidiError(path, "not a readable MIDI file (0 ticks per quarter note)")
    if fmt == 2 and n_tracks > 1:
        raise BadMidiError(path, f"type-2 MIDI file ({n_tracks} independent sequences) is not supported: "
                                 "save it as type 1 (one piece, parallel tracks)")


def read_grid_midi(path: str | Path) -> GridMidi:
    """Read a MIDI file onto the tick grid: pitched tracks (drums dropped), time signatures.

    Notes whose pitch is outside the piano keys ``[vocab.MIN_PITCH, vocab.MAX_PITCH]`` are
    dropped and counted in ``n_out_of_range`` (the one rule for every command; see
    docs/data.md). A track left without notes is left out.
    """
    pm = load_pretty_midi(path)
    per_tick = pm.resolution / TICKS_PER_BEAT
    tracks, n_drums, n_out = [], 0, 0
    for inst in pm.instruments:
        if inst.is_drum:
            n_drums += len(inst.notes)
            continue
        notes = [n for n in inst.notes if vocab.MIN_PITCH <= n.pitch <= vocab.MAX_PITCH]
        n_out += len(inst.notes) - len(notes)
        if not notes:
            continue
        starts = np.array([pm.time_to_tick(n.start) for n in notes], dtype=np.float64)
        ends = np.array([pm.time_to_tick(n.end) for n in notes], dtype=np.float64)
        onset = np.rint(starts / per_tick).astype(np.int32)
        dur = np.maximum(np.rint(ends / per_tick).astype(np.int32) - onset, 1)
        pitch = np.array([n.pitch for n in notes], dtype=np.int32)
        tracks.append(Track(inst.name.strip(), inst.program, note_array(np.stack([onset, dur, pitch], 1))))
    ts = [
        (int(round(pm.time_to_tick(t.time) / per_tick)), t.numerator, t.denominator)
        for t in pm.time_signature_changes
    ]
    if not ts or ts[0][0] > 0:
        ts.insert(0, (0, 4, 4))
    _, tempi = pm.get_tempo_changes()
    bpm = float(tempi[0]) if len(tempi) else 120.0
    return GridMidi(str(path), tracks, ts, n_drums, n_out, bpm)


def song_to_midi(song: Song, bpm: float = 120.0, path: str | Path | None = None) -> pretty_midi.PrettyMIDI:
    """Write a Song as a two-track MIDI (``melody``, ``accompaniment``) at a constant BPM.

    The tick grid is kept exactly: one tick is ``resolution / 4`` MIDI ticks. A note is
    cut where the next note of its pitch in its part starts (:func:`merge_unisons`):
    MIDI cannot hold both, and a reader would otherwise end them together.
    """
    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=bpm)
    seconds_per_tick = 60.0 / (bpm * TICKS_PER_BEAT)
    for name, part, vel in (
        ("melody", song.melody, MELODY_VELOCITY),
        ("accompaniment", song.accompaniment, ACCOMPANIMENT_VELOCITY),
    ):
        inst = pretty_midi.Instrument(program=0, name=name)
        for onset, dur, pitch in merge_unisons(part).tolist():
            inst.notes.append(
                pretty_midi.Note(vel, int(pitch), onset * seconds_per_tick, (onset + dur) * seconds_per_tick)
            )
        pm.instruments.append(inst)
    for tick, num, den in song.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, tick * seconds_per_tick))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pm.write(str(path))
    return pm


def part_end(part: np.ndarray) -> int:
    """Tick after the last note of a part (0 when empty)."""
    return int((part[:, ONSET] + part[:, DURATION]).max()) if len(part) else 0


__all__ = ["GridMidi", "Track", "read_grid_midi", "song_to_midi", "load_pretty_midi", "part_end", "PITCH"]
