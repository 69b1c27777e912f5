"""`streammuse datasets ...`: inspect MIDI files, build the test set, download POP909."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streammuse.errors import BadMidiError, StreamMuseError

datasets_app = typer.Typer(help="Symbolic-music data: inspect files, build the test set, download POP909.",
                           no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


def _report_skipped(skipped: list[tuple[str, str]], total: int) -> None:
    if skipped:
        _err.print(f"skipped {len(skipped)} of {total} files:", highlight=False)
        for path, reason in skipped:
            _err.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)


@datasets_app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A MIDI file or a folder of them.")],
    melody_track: Annotated[str | None, typer.Option(help="Take this track as the melody.")] = None,
    skyline: Annotated[bool, typer.Option("--skyline", help="Force skyline extraction.")] = False,
) -> None:
    """Songs, bars, notes per part, polyphony and notes dropped, per file.

    melody / accomp.: notes per part (a melody-only file has accompaniment 0). poly.: mean
    pitches sounding per tick where any sounds (muspy's polyphony). capped: notes the
    4-note cap removes when the song becomes frames. off-key: notes outside the piano keys
    (21..108), dropped when the file is read.
    """
    from streammuse.datasets.stats import file_stats
    from streammuse.datasets.testset import midi_files

    if not path.exists():
        raise StreamMuseError(f"{path}: no such file or folder")
    files = midi_files(path) if path.is_dir() else [path]
    rows, skipped = [], []
    for f in files:
        try:
            rows.append(file_stats(f, melody_track, skyline))
        except BadMidiError as exc:
            if len(files) == 1:
                raise
            skipped.append((str(f), exc.reason))
    if not rows:
        _report_skipped(skipped, len(files))
        raise StreamMuseError(f"{path}: none of the {len(files)} MIDI files is usable")
    _out.print(_info_table(str(path), rows))
    _report_skipped(skipped, len(files))


def _info_table(title: str, rows: list) -> Table:
    """The `datasets info` table: one row per song, a total row for several."""
    table = Table(title=title)
    table.add_column("song", no_wrap=True)
    table.add_column("split")
    for col in ("bars", "ticks", "melody", "accomp.", "poly.", "capped", "off-key"):
        table.add_column(col, justify="right")
    for r in rows:
        poly = "-" if math.isnan(r.polyphony) else f"{r.polyphony:.2f}"
        table.add_row(r.name, r.rule, str(r.bars), str(r.ticks), str(r.melody_notes),
                      str(r.accompaniment_notes), poly, str(r.notes_dropped), str(r.notes_out_of_range))
    if len(rows) > 1:
        n_notes = sum(r.melody_notes + r.accompaniment_notes for r in rows)
        dropped = sum(r.notes_dropped for r in rows)
        off = sum(r.notes_out_of_range for r in rows)
        table.add_section()
        table.add_row(f"{len(rows)} songs", "", str(sum(r.bars for r in rows)), str(sum(r.ticks for r in rows)),
                      str(sum(r.melody_notes for r in rows)), str(sum(r.accompaniment_notes for r in rows)), "",
                      str(dropped), str(off))
        table.caption = (f"the 4-note cap drops {dropped} of {n_notes} notes "
                         f"({100 * dropped / max(n_notes, 1):.2f}%); {off} notes off the piano keys dropped")
    return table


@datasets_app.command("build-testset")
def build_testset_command(
    src: Annotated[Path, typer.Argument(help="Folder of source MIDI files (and their manifest.json).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: new, empty, or an earlier build.")] = Path("testset"),
) -> None:
    """Skyline-extract every source piece into OUT: <name>.mid (melody, accompaniment) + manifest.json."""
    from streammuse.datasets.testset import build_testset

    build = build_testset(src, out)
    entries, skipped = build.entries, build.skipped
    if not entries:
        _report_skipped(skipped, len(skipped))
        raise StreamMuseError(f"{src}: none of the {len(skipped)} MIDI files is usable; nothing written")
    dropped = sum(e.notes_dropped for e in entries)
    off = sum(e.notes_out_of_range for e in entries)
    _out.print(f"wrote {len(entries)} songs to {out} ({sum(e.bars for e in entries)} bars, "
               f"{dropped} notes over the 4-note cap, {off} off the piano keys dropped) "
               f"and {out / 'manifest.json'}", highlight=False, soft_wrap=True)
    for source, name in build.renamed:
        _out.print(f"  {source} -> {name} (another source file has the same name)",
                   highlight=False, soft_wrap=True)
    if build.removed:
        _out.print(f"removed {len(build.removed)} songs of the earlier build not made again: "
                   f"{', '.join(build.removed)}", highlight=False, soft_wrap=True)
    _report_skipped(skipped, len(entries) + len(skipped))


@datasets_app.command()
def download(
    dest: Annotated[Path, typer.Option("--dest", help="Folder to write NNN.mid into.")],
    url: Annotated[str | None, typer.Option(help="Archive URL (default: the official GitHub zip).")] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Accept an archive with fewer than 909 songs.")] = False,
) -> None:
    """Download POP909, verify each file's sha256 against the shipped manifest, extract NNN.mid."""
    from streammuse.datasets.download import OFFICIAL_ZIP_URL, download_pop909

    with _err.status(f"downloading {url or OFFICIAL_ZIP_URL}"):
        files = download_pop909(dest, url or OFFICIAL_ZIP_URL, require_complete=not partial)
    _out.print(f"verified and wrote {len(files)} POP909 files to {dest}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `datasets` command group to the main app."""
    app.add_typer(datasets_app, name="datasets")
