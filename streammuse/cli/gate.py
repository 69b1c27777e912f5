"""`streammuse gate`: the fixed, seeded evaluation CI runs, compared with a committed baseline."""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from streammuse.gate.baseline import DEFAULT_BASELINE, check_same_config, read_baseline, write_baseline
from streammuse.gate.compare import Row, Verdict, compare, failed
from streammuse.gate.run import GateConfig, run_gate

_STYLE = {
    Verdict.PASS: "green",
    Verdict.IMPROVED: "cyan",
    Verdict.REGRESSED: "bold red",
    Verdict.MISSING: "bold red",
    Verdict.NEW: "yellow",
}


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def gate_table(rows: list[Row]) -> Table:
    """Metric, baseline, now, delta, verdict: one row per metric."""
    table = Table(title="streammuse gate")
    for col in ("metric", "baseline", "now", "delta", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right", no_wrap=True)
    for r in rows:
        delta = "-" if math.isnan(r.delta) else f"{r.delta:+.4f}"
        table.add_row(r.metric, _fmt(r.baseline), _fmt(r.now), delta, f"[{_STYLE[r.verdict]}]{r.verdict.value}[/]")
    return table


@contextlib.contextmanager
def _progress(out: Path, cfg: GateConfig):
    """Say what the gate runs, then (on a terminal) a bar with an ETA over the songs its
    configurations have finished, counted from the done markers under ``out`` (the gate
    itself reports nothing while it runs)."""
    console = Console(stderr=True, highlight=False)
    total = len(cfg.configurations) * cfg.songs
    console.print(f"gate: {len(cfg.configurations)} configurations x {cfg.songs} songs x {cfg.max_bars} bars, "
                  "each replayed then scored")
    if not console.is_terminal:
        yield
        return
    before = set(out.glob("*/done/*"))
    stop = threading.Event()
    with Progress(TextColumn("  songs replayed"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("gate", total=total)

        def poll() -> None:
            while not stop.wait(0.5):
                bar.update(task, completed=min(total, len(set(out.glob("*/done/*")) - before)))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()


def gate(
    baseline: Annotated[Path, typer.Option(help="The committed baseline JSON.")] = DEFAULT_BASELINE,
    update_baseline: Annotated[bool, typer.Option(help="Rewrite the baseline with this run's figures (deliberately).")] = False,
    testset: Annotated[Path, typer.Option(help="Test-set folder.")] = Path("testset"),
    model: Annotated[Path | None, typer.Option(help="Checkpoint to evaluate; default: the shipped one.")] = None,
    keep: Annotated[Path | None, typer.Option(help="Keep the gate's run folders here (default: a temp folder).")] = None,
) -> None:
    """Run the fixed evaluation and fail (exit 1) if any metric regressed past its tolerance."""
    from streammuse.model.threads import configure_threads

    configure_threads()  # before torch loads: the gate has no real-time need, so only the free cores
    from streammuse.experiment.runs import git_rev
    from streammuse.model.engine import StreamingEngine

    cfg = GateConfig(testset=testset)
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 100))
    reference = None if update_baseline else read_baseline(baseline)
    if reference is not None:
        check_same_config(reference, cfg.to_dict(), baseline)
    start = time.monotonic()
    engine = StreamingEngine.load(path=model)
    with tempfile.TemporaryDirectory(prefix="streammuse-gate-") as tmp:
        out = keep or Path(tmp)
        with _progress(out, cfg):
            metrics = run_gate(cfg, engine, out)
    elapsed = time.monotonic() - start
    if update_baseline:
        write_baseline(baseline, cfg.to_dict(), metrics, git_rev())
        console.print(f"baseline updated: {len(metrics)} metrics written to {baseline} ({elapsed:.0f} s). "
                      "Commit it with the change that moved the figures.")
        return
    rows = compare(reference["metrics"], metrics)
    console.print(gate_table(rows))
    regressed = [r.metric for r in rows if r.verdict in (Verdict.REGRESSED, Verdict.MISSING)]
    if failed(rows):
        console.print(f"[bold red]gate FAILED[/]: {len(regressed)} metric(s) regressed: {', '.join(regressed)} ({elapsed:.0f} s)")
        raise typer.Exit(code=1)
    console.print(f"[green]gate passed[/]: {len(rows)} metrics within tolerance of {baseline} ({elapsed:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add `gate` to the streammuse app."""
    app.command("gate")(gate)
