"""The 64-song evaluation test set: build it from its sources and load it.

Build (``streammuse datasets build-testset SRC --out testset/``): every source MIDI goes
through skyline extraction over all its pitched tracks (as the paper does; even the
AccoMontage-3 files, which have a ``melody`` track), and is written as
``<stem>.mid`` with two tracks, ``melody`` and ``accompaniment``, at 120 BPM on the
1/16-note grid, plus ``manifest.json`` (source, license, bars, ticks, note counts and
the notes the 4-note cap will drop, the notes off the piano keys dropped when the source
was read). The MIDI keeps every note on the piano keys; the cap applies when the song is
cut into frames. Source files sharing a stem (``x.mid``, ``x.midi``) get distinct names
(:func:`output_names`); OUT may not be SRC or inside it, and holds only its own build.

Load: :func:`load_testset` reads the folder back (``melody_track="melody"``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
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
    notes_dropped: int  # by the 4-note cap, when the song becomes frames
    notes_out_of_range: int = 0  # off the piano keys, dropped when the source was read


@dataclass
class TestsetBuild:
    """What :func:`build_testset` did."""

    __test__ = False

    entries: list[TestsetEntry]
    skipped: list[tuple[str, str]]  # (source file, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source file name, test-set file name)
    removed: list[str] = field(default_factory=list)  # songs of a previous build in OUT not made again


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


def output_names(files: list[Path]) -> dict[Path, str]:
    """The test-set name (stem) of each source file, unique even where file systems ignore case.

    A stem that only one source file has is kept (``a.mid`` -> ``a``); files sharing a
    stem (``x.mid``, ``x.midi``, ``X.MID``) each get their extension appended (``x_mid``,
    ``x_midi``), then a number if that is taken too, so no song overwrites another.
    """
    counts = Counter(p.stem.casefold() for p in files)
    taken = {stem for stem, n in counts.items() if n == 1}
    names = {}
    for p in files:
        if counts[p.stem.casefold()] == 1:
            names[p] = p.stem
            continue
        base = name = f"{p.stem}_{p.suffix[1:]}"
        k = 2
        while name.casefold() in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name.casefold())
        names[p] = name
    return names


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise StreamMuseError(f"{path}: not a readable JSON file{where}") from None


def _is_build_manifest(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("songs"), list)


def _source_manifest(src: Path) -> dict[str, dict]:
    path = src / MANIFEST
    if not path.is_file():
        return {}
    data = _read_json(path)
    if _is_build_manifest(data):
        raise StreamMuseError(f"{src}: this is a built test set (its {MANIFEST} was written by build-testset), "
                              "not a folder of source pieces; use it as it is, or build from the sources")
    if not isinstance(data, list) or not all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in data):
        raise StreamMuseError(f"{path}: not a source manifest (a list of {{file, source, path, license}} objects)")
    return {row["file"]: row for row in data}


def _check_out(src: Path, out: Path) -> list[str]:
    """Refuse an output folder that would overwrite sources or mix with foreign files;
    return the song files of a previous build there (replaced by this one)."""
    src_abs, out_abs = src.resolve(), out.resolve()
    if out_abs == src_abs or src_abs in out_abs.parents:
        raise StreamMuseError(f"{out}: the output folder is the source folder or inside it; "
                              "choose another --out (the sources would be overwritten)")
    if not out.is_dir():
        return []
    previous = _read_json(out / MANIFEST) if (out / MANIFEST).is_file() else None
    if previous is not None and not _is_build_manifest(previous):
        raise StreamMuseError(f"{out}: holds a {MANIFEST} that build-testset did not write; choose another --out")
    ours = {str(s.get("file")) for s in previous["songs"] if isinstance(s, dict)} if previous else set()
    foreign = [p.name for p in out.iterdir() if p.suffix.lower() in (".mid", ".midi") and p.name not in ours]
    if foreign:
        raise StreamMuseError(f"{out}: holds MIDI files that no earlier build wrote ({foreign[0]}, ...); "
                              "choose an empty or new --out")
    return sorted(ours)


def build_testset(src: str | Path, out: str | Path) -> TestsetBuild:
    """Skyline-extract every MIDI in ``src`` into ``out`` and write ``out/manifest.json``.

    Files that cannot be read or split are skipped, not fatal; a source whose notes are
    all off the piano keys is one of them. ``out`` must not be ``src`` or inside it, and
    may hold only an earlier build, whose songs this one replaces.

    Returns:
        the songs written, the files skipped (with the reason), the sources renamed because
        their stems collide, and the earlier build's songs removed.
    """
    src, out = Path(src), Path(out)
    files = midi_files(src)
    sources = _source_manifest(src)
    previous = _check_out(src, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StreamMuseError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    names = output_names(files)
    build = TestsetBuild([], [], [(p.name, f"{names[p]}.mid") for p in files if names[p] != p.stem])
    for path in files:
        try:
            song = load_song(path, skyline_only=True)
        except BadMidiError as exc:
            build.skipped.append((str(path), exc.reason))
            continue
        build.entries.append(_write_song(song, out / f"{names[path]}.mid", sources.get(path.name, {}), path,
                                         len(build.entries), len(files)))
    if not build.entries:
        return build
    manifest = {
        "description": "StreamMUSE test set: skyline extraction (melody = top line of all "
                       "pitched notes, accompaniment = the rest) of the source pieces",
        "split_rule": "skyline",
        "bpm": TESTSET_BPM,
        "ticks_per_beat": 4,
        "songs": [asdict(e) for e in build.entries],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    written = {e.file for e in build.entries}
    build.removed = [name for name in previous if name not in written and (out / name).is_file()]
    for name in build.removed:
        (out / name).unlink()
    return build


def _write_song(song: Song, target: Path, meta: dict, path: Path, n_done: int, n_files: int) -> TestsetEntry:
    """Write one test song and return its manifest entry."""
    _, _, n_dropped = song_to_frames(song)
    try:
        song_to_midi(song, TESTSET_BPM, target)
    except OSError as exc:
        raise StreamMuseError(f"{target}: cannot write ({exc.strerror}); stopped after "
                              f"{n_done} of {n_files} songs, no manifest written") from None
    return TestsetEntry(
        file=target.name,
        source=meta.get("source", ""),
        path=meta.get("path", path.name),
        license=meta.get("license", "unknown"),
        bars=song.n_bars,
        ticks=song.n_ticks,
        melody_notes=len(song.melody),
        accompaniment_notes=len(song.accompaniment),
        notes_dropped=n_dropped,
        notes_out_of_range=song.notes_out_of_range,
    )


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
