"""`streammuse evaluate` and `streammuse report`: the paper's Table III for run folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streammuse.errors import StreamMuseError

FORMATS = ("table", "markdown", "csv", "json")


def _evaluator(no_nll: bool, no_fmd: bool, fmd_extractor: str, model: Path | None):
    """``evaluate(run) -> summary`` sharing one engine and one extractor across runs."""
    from streammuse.metrics.evaluate import evaluate_run

    cache: dict = {}

    def engine():
        if "engine" not in cache:
            from streammuse.model.engine import StreamingEngine

            cache["engine"] = StreamingEngine.load(path=model)
        return cache["engine"]

    def extractor():
        if "fmd" not in cache:
            from streammuse.metrics.fmd import make_extractor

            cache["fmd"] = make_extractor(fmd_extractor)
        return cache["fmd"]

    def evaluate(run: Path) -> dict:
        return evaluate_run(run, engine=engine, with_nll=not no_nll, with_fmd=not no_fmd,
                            fmd_extractor=extractor() if not no_fmd else None)

    return evaluate


NoNll = Annotated[bool, typer.Option("--no-nll", help="Skip NLL_wavg (no model load).")]
NoFmd = Annotated[bool, typer.Option("--no-fmd", help="Skip FMD.")]
Extractor = Annotated[str, typer.Option(help="FMD features: auto (CLaMP 2 if cached, else streammuse-symbolic-v1), "
                                             "clamp2, streammuse-symbolic-v1.")]
Model = Annotated[Path | None, typer.Option(help="Checkpoint for NLL; default: the shipped one.")]


def evaluate(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (runs/<date>-<setting>-I<I>-GL<GL>).")],
    no_nll: NoNll = False,
    no_fmd: NoFmd = False,
    fmd_extractor: Extractor = "auto",
    model: Model = None,
) -> None:
    """Score run folders by the paper's metrics into RUN/metrics/ (per_song.parquet, summary.json)."""
    from streammuse.metrics.report import fmt

    evaluate_one = _evaluator(no_nll, no_fmd, fmd_extractor, model)
    console = Console()
    for run in runs:
        s = evaluate_one(run)
        m = s["metrics"]
        shown = ", ".join(f"{k} {fmt(m[k])}" for k in ("cr", "ur", "jsd_pitch", "fmd", "nll_wavg", "isr_w"))
        console.print(f"{run}: {s['n_songs']}/{s['n_songs_expected']} songs; {shown}"
                      + (f" (FMD: {s['fmd_extractor']})" if s["fmd_extractor"] else ""), markup=False)
        for p in s["problems"]:
            console.print(f"  note: {p}", markup=False)


def report(
    runs: Annotated[list[Path] | None, typer.Argument(help="Run folders; default: every run under runs/.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table | markdown | csv | json")] = "table",
    paper: Annotated[bool, typer.Option("--paper", help="Add the paper's Table III rows beside ours.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Write PNG figures into this folder.")] = None,
    song: Annotated[str | None, typer.Option(help="Song for the piano roll (default: the first).")] = None,
    no_nll: NoNll = False,
    no_fmd: NoFmd = False,
    fmd_extractor: Extractor = "auto",
    model: Model = None,
) -> None:
    """Print Table III for run folders: one table per setting, one row per (I, GL), Offline
    last, the two best values per column in bold. Runs not yet evaluated are evaluated."""
    from streammuse.metrics import report as rp

    if format not in FORMATS:
        raise StreamMuseError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    folders = rp.run_folders(list(runs or []))
    notes: list[str] = []
    summaries = rp.summaries(folders, _evaluator(no_nll, no_fmd, fmd_extractor, model), notes)
    rows = [rp.row_from_summary(s) for s in summaries]
    tables = rp.group_rows(rows, rp.paper_rows() if paper else None)
    notes += rp.notes_for(tables)
    if format == "table":
        rp.render_rich(tables, Console(width=max(Console().width, 150)), notes)
    elif format == "markdown":
        sys.stdout.write(rp.render_markdown(tables, notes))
    elif format == "csv":
        sys.stdout.write(rp.render_csv(tables))
    else:
        sys.stdout.write(rp.render_json(tables, notes))
    if plots is not None:
        from streammuse.metrics.plots import write_plots

        for path in write_plots(rows, folders, plots, song):
            typer.echo(f"wrote {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `report` to the `streammuse` app."""
    app.command("evaluate")(evaluate)
    app.command("report")(report)
