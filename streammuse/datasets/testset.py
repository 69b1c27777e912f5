"""The 64-song evaluation test set: build it from its sources and load it.

Build (``streammuse datasets build-testset SRC --out testset/``): every source MIDI goes
through skyline extraction over all its pitched tracks (as the paper does; even the
AccoMontage-3 files, which have a ``melody`` track), and is written as
``<stem>.mid`` with two tracks, ``melody`` and ``accompaniment``, at 120 BPM on the
1/16-note grid, plus ``manifest.json`` (source, license, bars, ticks, note counts and
the notes the 4-note cap will drop). The MIDI keeps every note; the cap applies when
the song is cut into frames.

Load: :func:`load_testset` reads the folder back (``melody_track="melody"``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.skyline import load_song
from streammuse.datasets.song import Song, bar_starts
from streammuse.datasets.tick_grid import song_to_midi
from streammuse.errors import BadMidiError, StreamMuseError

TESTSET_BPM = 120.0
MANIFEST = "manifest.json"


@dataclass
class TestsetEntry:
    """One song of the test set, as listed in ``manifest.json``."""

    __test__ = False  # not a pytest class

    file: str
    source: str
    path: str
    license: str
    bars: int
    ticks: int
    melody_notes: int
    accompaniment_notes: int
    notes_dropped: int


def midi_files(folder: str | Path) -> list[Path]:
    """The ``.mid``/``.midi`` files of a folder, sorted by name.

    Raises:
        StreamMuseError: the folder is missing or unreadable, or holds no MIDI files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StreamMuseError(f"{folder}: no such folder")
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mid", ".midi") and p.is_file())
    except OSError as exc:
        raise StreamMuseError(f"{folder}: cannot read folder ({exc.strerror})") from None
    if not files:
        raise StreamMuseError(f"{folder}: no MIDI files in this folder")
    return files


def _source_manifest(src: Path) -> dict[str, dict]:
    path = src / MANIFEST
    if not path.is_file():
        return {}
    try:
        return {row["file"]: row for row in json.loads(path.read_text())}
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamMuseError(f"{path}: not a source manifest (list of {{file, source, path, license}}): {exc}") from None


def build_testset(src: str | Path, out: str | Path) -> tuple[list[TestsetEntry], list[tuple[str, str]]]:
    """Skyline-extract every MIDI in ``src`` into ``out`` and write ``out/manifest.json``.

    Files that cannot be read or split are skipped, not fatal.

    Returns:
        (the songs written, ``(file, reason)`` for each file skipped).
    """
    src, out = Path(src), Path(out)
    sources = _source_manifest(src)
    files = midi_files(src)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StreamMuseError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    entries: list[TestsetEntry] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            song = load_song(path, skyline_only=True)
        except BadMidiError as exc:
            skipped.append((str(path), exc.reason))
            continue
        _, _, n_dropped = song_to_frames(song)
        try:
            song_to_midi(song, TESTSET_BPM, out / f"{path.stem}.mid")
        except OSError as exc:
            raise StreamMuseError(
                f"{out / path.stem}.mid: cannot write ({exc.strerror}); stopped after "
                f"{len(entries)} of {len(files)} songs, no manifest written") from None
        meta = sources.get(path.name, {})
        entries.append(TestsetEntry(
            file=f"{path.stem}.mid",
            source=meta.get("source", ""),
            path=meta.get("path", str(path.name)),
            license=meta.get("license", "unknown"),
            bars=song.n_bars,
            ticks=song.n_ticks,
            melody_notes=len(song.melody),
            accompaniment_notes=len(song.accompaniment),
            notes_dropped=n_dropped,
        ))
    manifest = {
        "description": "StreamMUSE test set: skyline extraction (melody = top line of all "
                       "pitched notes, accompaniment = the rest) of the source pieces",
        "split_rule": "skyline",
        "bpm": TESTSET_BPM,
        "ticks_per_beat": 4,
        "songs": [asdict(e) for e in entries],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return entries, skipped


def crop_bars(song: Song, max_bars: int) -> Song:
    """The first ``max_bars`` bars of a song (following its time signatures)."""
    starts = bar_starts(song.time_signatures, song.n_ticks)
    return song.crop(starts[max_bars]) if max_bars < len(starts) else song


def load_testset(folder: str | Path, songs: list[str] | None = None, max_bars: int | None = None) -> list[Song]:
    """Read a test-set folder: one Song per ``<name>.mid`` (tracks ``melody``/``accompaniment``).

    Args:
        folder: the folder (``testset/``).
        songs: names (file stems) to load, in that order; ``None``: all, sorted by name.
        max_bars: crop every song to its first ``max_bars`` bars.

    Raises:
        StreamMuseError: missing/empty folder, unknown song name, bad ``max_bars``.
        BadMidiError: a file without the two tracks or with an empty part.
    """
    if max_bars is not None and max_bars < 1:
        raise StreamMuseError(f"max_bars must be at least 1 (got {max_bars})")
    files = {p.stem: p for p in midi_files(folder)}
    if songs is None:
        names = sorted(files)
    else:
        unknown = [s for s in songs if s not in files]
        if unknown:
            raise StreamMuseError(f"{folder}: no song named {unknown[0]!r} ({len(files)} songs in the folder)")
        names = list(songs)
    loaded = [load_song(files[name], melody_track="melody") for name in names]
    return [crop_bars(s, max_bars) for s in loaded] if max_bars is not None else loaded
