"""`streammuse report`: Table III of the paper for any set of evaluated runs.

One table per setting (local, local-server, remote, ...), one row per (I, GL) sorted by
I then GL, the Offline row(s) at the bottom of every table, arrows for the better
direction in the headers, and the best values per column in bold among the comparable
rows: our own streaming rows of that setting (:func:`best_two`). Every row states how
many songs it covers and names its run folder; Offline rows name their song set when the
report mixes several. ``--paper`` adds the paper's rows (marked ``paper``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from streammuse.errors import StreamMuseError
from streammuse.metrics.evaluate import read_summary
from streammuse.metrics.muspy_metrics import KEYS as MUSPY_KEYS

COLUMNS = (  # key, header, lower is better
    ("jsd_pitch", "JSD(P)", True), ("jsd_onset", "JSD(O)", True), ("fmd", "FMD", True),
    ("cr", "CR", False), ("ur", "UR", True), ("nll_wavg", "NLL_wavg", True),
    ("isr", "ISR", False), ("staleness", "Staleness", True), ("isr_w", "ISR_w", False),
)
SETTING_ORDER = ("local", "local-server", "remote")
PAPER_FMD_EXTRACTOR = "clamp2 (paper)"


@dataclass
class Row:
    """One line of a table."""

    setting: str
    interval: int | None
    gen_len: int | None
    metrics: dict[str, float | None]
    n_songs: int | None = None
    n_songs_expected: int | None = None
    source: str = "ours"  # "ours" or "paper"
    run: str = ""
    fmd_extractor: str | None = None
    problems: list[str] = field(default_factory=list)
    songs: tuple[str, ...] = ()
    model_id: str | None = None
    name: str = ""  # the run folder, relative to the report's common folder (run_names)
    song_set: str = ""  # e.g. "16 songs x 16 bars": set where a report mixes song sets
    server_time: str = ""  # where the run's server time came from (its manifest's label)
    adaptive: bool = False  # replay --adaptive: (interval, gen_len) is the starting pair
    pair_note: str = ""  # adaptive: ticks under each pair, switches per song

    @property
    def offline(self) -> bool:
        """The offline baseline (no system metrics)."""
        return self.setting == "offline"

    @property
    def label(self) -> str:
        """``(I, GL)`` or ``Offline``, with ``paper`` for the paper's rows."""
        base = "Offline" if self.offline else f"({self.interval}, {self.gen_len})"
        base = f"adaptive from {base}" if self.adaptive else base
        if self.offline and self.song_set:
            base += f" ({self.song_set})"
        return f"{base} paper" if self.source == "paper" else base

    @property
    def songs_label(self) -> str:
        """``covered/expected`` songs, ``-`` for the paper's rows."""
        if self.source == "paper":
            return "-"
        return f"{self.n_songs}/{self.n_songs_expected}"


def _manifest(folder: Path) -> dict | None:
    """A run folder's manifest (a JSON object with a ``setting``), else None."""
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "setting" in data else None


def find_runs(root: Path) -> list[Path]:
    """Every run folder at or below ``root`` (a run folder's own subfolders are not searched)."""
    found = []
    for here, dirs, _ in os.walk(root):
        if _manifest(Path(here)) is not None:
            found.append(Path(here))
            dirs.clear()
        dirs.sort()
    return sorted(found)


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders named; a named folder that holds runs (``runs/main-*``) stands for
    every run below it. Default: every run under ``runs/``, at any depth."""
    if not paths:
        root = Path("runs")
        if not root.is_dir():
            raise StreamMuseError("no runs/ folder here; name run folders: streammuse report RUN...")
        found = find_runs(root)
        if not found:
            raise StreamMuseError("runs/ holds no run folder (no manifest.json below it)")
        return found
    out: list[Path] = []
    for path in paths:
        nested = find_runs(path) if path.is_dir() and not (path / "manifest.json").is_file() else []
        # a path that is neither a run nor holds one stays: evaluating it says what is wrong
        out += [p for p in nested or [path] if p not in out]
    return out


def run_names(folders: list[Path]) -> list[str]:
    """Each run folder relative to the folder that holds them all (``main-.../<run>``), so
    runs with the same folder name in different places are told apart."""
    if len(folders) < 2:
        return [f.name for f in folders]
    paths = [os.path.abspath(f) for f in folders]  # as named: a symlinked folder keeps its name
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # different drives
        return [str(f) for f in folders]
    return [os.path.relpath(p, common) for p in paths]


def _set_key(manifest: dict | None, row: Row) -> tuple:
    m = manifest or {}
    return (Path(str(m.get("testset", ""))).name, tuple(m.get("songs") or row.songs), m.get("max_bars"))


def describe_runs(rows: list[Row], folders: list[Path]) -> None:
    """Name each row's run (``Row.name``) and, where the rows cover different song sets,
    label each by its set (``Row.song_set``: "8 songs x 16 bars", "... of <testset>")."""
    manifests = [_manifest(f) for f in folders]
    keys = [_set_key(m, r) for r, m in zip(rows, manifests)]
    for r, name, m in zip(rows, run_names(folders), manifests):
        r.name = name
        r.server_time = (m or {}).get("server_time_label") or (m or {}).get("server_time", "")
    if len(set(keys)) < 2:
        return
    testsets = {k[0] for k in keys}
    for r, (testset, songs, bars) in zip(rows, keys):
        n = f"{len(songs)} song{'s' if len(songs) != 1 else ''}"
        text = f"{n} x {bars} bars" if bars else f"{n}, whole"
        r.song_set = text + (f" of {testset}" if len(testsets) > 1 else "")
    labels = {}
    for r, k in zip(rows, keys):
        labels.setdefault(r.song_set, set()).add(k)
    for r, k in zip(rows, keys):  # same counts, different songs: number the sets
        if len(labels[r.song_set]) > 1:
            r.song_set += f", set {sorted(labels[r.song_set]).index(k) + 1}"


def _done(run: Path) -> list[str]:
    from streammuse.runfolder import done_songs

    return sorted(done_songs(run))


def needs_evaluation(run: Path) -> bool:
    """No ``metrics/summary.json`` yet, or its finished songs changed since."""
    summary = read_summary(run)
    return summary is None or sorted(summary.get("songs", [])) != _done(run)


def summaries(runs: list[Path], evaluate=None, notes: list[str] | None = None) -> list[dict]:
    """Each run's ``metrics/summary.json``; a run without one, or whose finished songs
    changed since, is evaluated first with ``evaluate(run) -> summary``."""
    out = []
    for run, name in zip(runs, run_names(runs)):
        summary = read_summary(run)
        if summary is None or sorted(summary.get("songs", [])) != _done(run):
            if evaluate is None:
                raise StreamMuseError(f"{run}: not evaluated (run: streammuse evaluate {run})")
            if notes is not None:
                notes.append(f"{name}: evaluated now ({'songs changed' if summary else 'no metrics yet'})")
            summary = evaluate(run)
        out.append(summary)
    return out


def row_from_summary(s: dict) -> Row:
    """A table row from an evaluation summary."""
    from streammuse.metrics.adaptive import describe

    metrics = {**s["metrics"], **(s.get("muspy") or {})}  # muspy's metrics: json and csv only
    setting, profile = s["setting"], s.get("profile")
    if profile and setting != "offline" and profile != setting:  # its own table: not the setting's latency
        setting = f"{setting}, profile {profile}"
    adaptive = bool(s.get("adaptive"))
    note = describe(s.get("pair_share") or {}, s.get("switches_per_song")) if adaptive else ""
    return Row(setting, s.get("interval"), s.get("gen_len"), metrics, s.get("n_songs"),
               s.get("n_songs_expected"), "ours", s.get("run", ""), s.get("fmd_extractor"),
               list(s.get("problems", [])), tuple(s.get("songs", [])), s.get("model_id"),
               adaptive=adaptive, pair_note=note)


def paper_rows() -> list[Row]:
    """The paper's Table III, from ``paper_table3.json``."""
    data = json.loads(resources.files("streammuse.metrics").joinpath("paper_table3.json").read_text())
    return [Row("offline" if r["offline"] else r["setting"], r["interval"], r["gen_len"], r["metrics"],
                source="paper", run=f"paper-{r['setting']}", fmd_extractor=PAPER_FMD_EXTRACTOR)
            for r in data["rows"]]


def group_rows(rows: list[Row], paper: list[Row] | None = None) -> dict[str, list[Row]]:
    """Rows per setting table: configurations by (I, GL), then Offline; paper rows beside
    ours (a paper table for a setting appears only where we have that setting)."""
    settings = sorted({r.setting for r in rows if not r.offline},
                      key=lambda s: (SETTING_ORDER.index(s) if s in SETTING_ORDER else 99, s))
    offline = [r for r in rows if r.offline]
    if not settings:
        their_offline = [r for r in (paper or []) if r.offline][:1]  # the same row in (a), (b), (c)
        return {"offline": offline + their_offline}
    tables = {}
    for setting in settings:
        ours = [r for r in rows if r.setting == setting]
        theirs = [r for r in (paper or []) if r.setting == setting and r.run == f"paper-{setting}"]
        body = sorted(ours + theirs, key=lambda r: (r.adaptive, r.interval, r.gen_len, r.source != "ours"))
        their_offline = [r for r in (paper or []) if r.offline and r.run == f"paper-{setting}"]
        tables[setting] = body + offline + their_offline
    return tables


def _num(v) -> float:
    return math.nan if v is None else float(v)


def best_two(rows: list[Row]) -> dict[str, set[int]]:
    """Per column, the indices of the rows to bold: among the comparable rows (our own
    streaming rows; a table holds one setting), the first and second with three or more
    values, the first with two, none with fewer. A row tied with the last one bolded is
    bold too; where every candidate would be bold (all tied), none is. The Offline and
    paper rows are never candidates."""
    best = {}
    for key, _, lower in COLUMNS:
        cand = [(i, v) for i, r in enumerate(rows) if r.source == "ours" and not r.offline
                and not math.isnan(v := _num(r.metrics.get(key)))]
        vals = sorted((v for _, v in cand), reverse=not lower)
        if len(vals) < 2:
            best[key] = set()
            continue
        last = vals[1 if len(vals) >= 3 else 0]
        bold = {i for i, v in cand if (v <= last if lower else v >= last)}
        best[key] = bold if len(bold) < len(cand) else set()
    return best


def fmt(v) -> str:
    """Four significant digits, like the paper; ``-`` for a missing value."""
    v = _num(v)
    return "-" if math.isnan(v) else f"{v:.4g}"


def _fmd_header(rows: list[Row]) -> tuple[str, bool]:
    names = {r.fmd_extractor for r in rows if r.source == "ours" and r.fmd_extractor}
    if len(names) == 1:
        return f"FMD [{names.pop()}]", False
    return "FMD", True  # several (or no) extractors: each cell names its own


def headers(rows: list[Row]) -> tuple[list[str], bool]:
    """Column headers with arrows, and whether FMD cells must carry their extractor."""
    fmd_header, per_cell = _fmd_header(rows)
    heads = ["(I, GL)", "songs"]
    for key, name, lower in COLUMNS:
        heads.append(f"{fmd_header if key == 'fmd' else name} {'↓' if lower else '↑'}")
    return heads + ["run"], per_cell


def cells(row: Row, per_cell_fmd: bool) -> list[str]:
    """A row's printed values (no emphasis)."""
    out = [row.label, row.songs_label]
    for key, _, _ in COLUMNS:
        text = fmt(row.metrics.get(key))
        if key == "fmd" and text != "-" and (per_cell_fmd or row.source == "paper") and row.fmd_extractor:
            text += f" [{row.fmd_extractor}]"
        out.append(text)
    return out + [row.name or row.run]


def notes_for(tables: dict[str, list[Row]]) -> list[str]:
    """Problems, partial rows, rows over different song sets, mixed models."""
    notes = []
    ours = [r for rows in tables.values() for r in rows if r.source == "ours"]
    seen = set()
    for r in ours:
        name = r.name or r.run
        if name in seen:
            continue
        seen.add(name)
        if r.n_songs != r.n_songs_expected:
            notes.append(f"{name}: covers {r.n_songs} of {r.n_songs_expected} songs")
        if r.adaptive:
            notes.append(f"{name} (adaptive): ticks under each pair: {r.pair_note}")
        notes.extend(f"{name}: {p}" for p in r.problems)
    for setting, rows in tables.items():
        sets = {r.songs for r in rows if r.source == "ours"}
        if len(sets) > 1:
            notes.append(f"{setting}: rows cover different sets of songs; compare them with care")
    models = {r.model_id for r in ours if r.model_id}
    if len(models) > 1:
        notes.append(f"runs from different models: {', '.join(sorted(models))}")
    return notes


def render_rich(tables: dict[str, list[Row]], console, notes: list[str]) -> None:
    """Print one rich table per setting, then the notes."""
    from rich.markup import escape
    from rich.table import Table

    for setting, rows in tables.items():
        heads, per_cell = headers(rows)
        table = Table(title=f"{setting}", title_justify="left", caption=server_times(rows) or None,
                      caption_justify="left")
        for i, h in enumerate(heads):
            table.add_column(escape(h), justify="left" if i in (0, len(heads) - 1) else "right")
        best = best_two(rows)
        for i, r in enumerate(rows):
            values = [escape(v) for v in cells(r, per_cell)]
            for j, (key, _, _) in enumerate(COLUMNS):
                if i in best[key]:
                    values[j + 2] = f"[bold]{values[j + 2]}[/bold]"
            table.add_row(*values, style="dim" if r.source == "paper" else None,
                          end_section=r.offline is False and i + 1 < len(rows) and rows[i + 1].offline)
        console.print(table)
    for note in notes:
        console.print(f"note: {note}", markup=False)


def server_times(rows: list[Row]) -> str:
    """One line naming the server time behind a table's streaming rows (each distinct
    label with its rows, when they differ)."""
    labels: dict[str, list[str]] = {}
    for r in rows:
        if r.source == "ours" and not r.offline and r.server_time:
            labels.setdefault(r.server_time, []).append(r.label)
    if len(labels) == 1:
        return f"server time: {next(iter(labels))}"
    return "; ".join(f"server time {', '.join(rs)}: {label}" for label, rs in labels.items())


def render_markdown(tables: dict[str, list[Row]], notes: list[str]) -> str:
    """GitHub markdown: a heading and a table per setting, the best values in bold (:func:`best_two`)."""
    out = []
    for setting, rows in tables.items():
        heads, per_cell = headers(rows)
        best = best_two(rows)
        times = server_times(rows)
        out += [f"**{setting}**", "", *([times, ""] if times else []), "| " + " | ".join(heads) + " |",
                "| " + " | ".join(["---"] + ["---:"] * (len(heads) - 2) + ["---"]) + " |"]
        for i, r in enumerate(rows):
            values = cells(r, per_cell)
            for j, (key, _, _) in enumerate(COLUMNS):
                if i in best[key]:
                    values[j + 2] = f"**{values[j + 2]}**"
            out.append("| " + " | ".join(values) + " |")
        out.append("")
    out += [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


def _flat(rows_by_setting: dict[str, list[Row]]) -> list[dict]:
    out = []
    for table, rows in rows_by_setting.items():
        best = best_two(rows)
        for i, r in enumerate(rows):
            d = {"table": table, "setting": r.setting, "interval": r.interval, "gen_len": r.gen_len,
                 "source": r.source, "run": r.run, "n_songs": r.n_songs, "n_songs_expected": r.n_songs_expected,
                 "label": r.label, "run_name": r.name or r.run, "server_time": r.server_time,
                 "adaptive": r.adaptive, "pairs": r.pair_note}
            d.update({k: r.metrics.get(k) for k, _, _ in COLUMNS})
            d.update({k: r.metrics.get(k) for k in MUSPY_KEYS})
            d["fmd_extractor"] = r.fmd_extractor
            d["best_two"] = [k for k, _, _ in COLUMNS if i in best[k]]
            out.append(d)
    return out


def render_csv(tables: dict[str, list[Row]]) -> str:
    """One CSV line per row (all tables), raw values; ``best_two`` lists the bold columns."""
    rows = _flat(tables)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["table"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "best_two": " ".join(r["best_two"])})
    return buf.getvalue()


def render_json(tables: dict[str, list[Row]], notes: list[str]) -> str:
    """``{"rows": [...], "notes": [...]}`` with raw values (null where missing)."""
    return json.dumps({"rows": _flat(tables), "notes": notes}, indent=2) + "\n"
