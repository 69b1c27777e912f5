"""`streammuse report`: Table III of the paper for any set of evaluated runs.

One table per setting (local, local-server, remote, ...), one row per (I, GL) sorted by
I then GL, the Offline row(s) at the bottom of every table, arrows for the better
direction in the headers, and the two best values per column in bold among the
non-offline rows of our own runs (ties share the bold, as in the paper). Every row
states how many songs it covers; ``--paper`` adds the paper's rows (marked ``paper``).
"""

from __future__ import annotations

import csv
import io
import json
import math
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

    @property
    def offline(self) -> bool:
        """The offline baseline (no system metrics)."""
        return self.setting == "offline"

    @property
    def label(self) -> str:
        """``(I, GL)`` or ``Offline``, with ``paper`` for the paper's rows."""
        base = "Offline" if self.offline else f"({self.interval}, {self.gen_len})"
        return f"{base} paper" if self.source == "paper" else base

    @property
    def songs_label(self) -> str:
        """``covered/expected`` songs, ``-`` for the paper's rows."""
        if self.source == "paper":
            return "-"
        return f"{self.n_songs}/{self.n_songs_expected}"


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders named, or every folder with a manifest under ``runs/`` by default."""
    if paths:
        return list(paths)
    root = Path("runs")
    if not root.is_dir():
        raise StreamMuseError("no runs/ folder here; name run folders: streammuse report RUN...")
    found = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    if not found:
        raise StreamMuseError("runs/ holds no run folder (no */manifest.json)")
    return found


def _done(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "done").iterdir()) if (run / "done").is_dir() else []


def summaries(runs: list[Path], evaluate=None, notes: list[str] | None = None) -> list[dict]:
    """Each run's ``metrics/summary.json``; a run without one, or whose finished songs
    changed since, is evaluated first with ``evaluate(run) -> summary``."""
    out = []
    for run in runs:
        summary = read_summary(run)
        if summary is None or sorted(summary.get("songs", [])) != _done(run):
            if evaluate is None:
                raise StreamMuseError(f"{run}: not evaluated (run: streammuse evaluate {run})")
            if notes is not None:
                notes.append(f"{run.name}: evaluated now ({'songs changed' if summary else 'no metrics yet'})")
            summary = evaluate(run)
        out.append(summary)
    return out


def row_from_summary(s: dict) -> Row:
    """A table row from an evaluation summary."""
    metrics = {**s["metrics"], **(s.get("muspy") or {})}  # muspy's metrics: json and csv only
    return Row(s["setting"], s.get("interval"), s.get("gen_len"), metrics, s.get("n_songs"),
               s.get("n_songs_expected"), "ours", s.get("run", ""), s.get("fmd_extractor"),
               list(s.get("problems", [])), tuple(s.get("songs", [])), s.get("model_id"))


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
        body = sorted(ours + theirs, key=lambda r: (r.interval, r.gen_len, r.source != "ours"))
        their_offline = [r for r in (paper or []) if r.offline and r.run == f"paper-{setting}"]
        tables[setting] = body + offline + their_offline
    return tables


def _num(v) -> float:
    return math.nan if v is None else float(v)


def best_two(rows: list[Row]) -> dict[str, set[int]]:
    """Per column, the indices of the rows ranked first and second among our own
    non-offline rows; a row tied with the second is bold too."""
    best = {}
    for key, _, lower in COLUMNS:
        cand = [(i, _num(r.metrics.get(key))) for i, r in enumerate(rows) if r.source == "ours" and not r.offline]
        vals = sorted((v for _, v in cand if not math.isnan(v)), reverse=not lower)
        if not vals:
            best[key] = set()
            continue
        second = vals[min(1, len(vals) - 1)]
        best[key] = {i for i, v in cand if not math.isnan(v) and (v <= second if lower else v >= second)}
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
    return heads, per_cell


def cells(row: Row, per_cell_fmd: bool) -> list[str]:
    """A row's printed values (no emphasis)."""
    out = [row.label, row.songs_label]
    for key, _, _ in COLUMNS:
        text = fmt(row.metrics.get(key))
        if key == "fmd" and text != "-" and (per_cell_fmd or row.source == "paper") and row.fmd_extractor:
            text += f" [{row.fmd_extractor}]"
        out.append(text)
    return out


def notes_for(tables: dict[str, list[Row]]) -> list[str]:
    """Problems, partial rows, rows over different song sets, mixed models."""
    notes = []
    ours = [r for rows in tables.values() for r in rows if r.source == "ours"]
    seen = set()
    for r in ours:
        if r.run in seen:
            continue
        seen.add(r.run)
        if r.n_songs != r.n_songs_expected:
            notes.append(f"{r.run}: covers {r.n_songs} of {r.n_songs_expected} songs")
        notes.extend(f"{r.run}: {p}" for p in r.problems)
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
        table = Table(title=f"{setting}", title_justify="left")
        for i, h in enumerate(heads):
            table.add_column(escape(h), justify="left" if i == 0 else "right")
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


def render_markdown(tables: dict[str, list[Row]], notes: list[str]) -> str:
    """GitHub markdown: a heading and a table per setting, best two per column in bold."""
    out = []
    for setting, rows in tables.items():
        heads, per_cell = headers(rows)
        best = best_two(rows)
        out += [f"**{setting}**", "", "| " + " | ".join(heads) + " |",
                "| " + " | ".join(["---"] + ["---:"] * (len(heads) - 1)) + " |"]
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
                 "source": r.source, "run": r.run, "n_songs": r.n_songs, "n_songs_expected": r.n_songs_expected}
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
