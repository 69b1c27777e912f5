"""`streammuse evaluate` and `streammuse report`: the paper's Table III for run folders."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from streammuse.errors import StreamMuseError

FORMATS = ("table", "markdown", "csv", "json")


def _evaluator(no_nll: bool, no_fmd: bool, fmd_extractor: str, model: Path | None):
    """``evaluate(run) -> summary`` sharing one engine and one extractor across runs."""
    from streammuse.metrics.evaluate import evaluate_run

    cache: dict = {}

    def engine():
        if "engine" not in cache:
            from streammuse.model.threads import configure_threads

            configure_threads()  # NLL has no real-time need: only the cores free right now
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
    """Print Table III for run folders (evaluating those not yet evaluated).

    One table per setting, one row per (I, GL), Offline last, the best values among
    comparable rows in bold, a column naming each run. A folder holding runs stands for
    every run below it."""
    from streammuse.metrics import report as rp

    if format not in FORMATS:
        raise StreamMuseError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    folders = rp.run_folders(list(runs or []))
    evaluated: list[str] = []  # what this command did: stderr, never in a table pasted into docs
    evaluate_one = _evaluator(no_nll, no_fmd, fmd_extractor, model)
    with _progress([f for f in folders if f.is_dir() and rp.needs_evaluation(f)], evaluate_one) as evaluate_one:
        summaries = rp.summaries(folders, evaluate_one, evaluated)
    for line in evaluated:
        typer.echo(f"note: {line}", err=True)
    rows = [rp.row_from_summary(s) for s in summaries]
    rp.describe_runs(rows, folders)
    tables = rp.group_rows(rows, rp.paper_rows() if paper else None)
    notes = rp.notes_for(tables)
    if format == "table":
        rp.render_rich(tables, Console(width=max(Console().width, 200)), notes)
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


@contextlib.contextmanager
def _progress(pending: list[Path], evaluate_one):
    """``evaluate_one`` advancing a progress bar (stderr, with an ETA) over the runs that
    need evaluating; unchanged where there are none or stderr is not a terminal."""
    console = Console(stderr=True)
    if not pending or not console.is_terminal:
        yield evaluate_one
        return
    with Progress(TextColumn("evaluating {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("evaluate", total=len(pending), run=pending[0].name)

        def evaluate(run: Path) -> dict:
            bar.update(task, run=run.name)
            try:
                return evaluate_one(run)
            finally:
                bar.advance(task)

        yield evaluate


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `report` to the `streammuse` app."""
    app.command("evaluate")(evaluate)
    app.command("report")(report)
