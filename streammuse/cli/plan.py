"""`streammuse plan`: which (I, GL) pairs run in real time for a latency profile (paper IV-D)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streammuse.errors import StreamMuseError
from streammuse.feasibility import Plan, Verdict, infeasible_advice, plan_bpm
from streammuse.planner.profile_fit import f95_from_profile, load_profile_dict
from streammuse.rtt import QuadraticFit

_CELL = {
    Verdict.VALID: "[green]ok[/]",
    Verdict.C1: "[yellow]C1[/]",
    Verdict.C2: "[red]C2[/]",
    Verdict.BOTH: "[bold red]XX[/]",
}


def parse_bpms(text: str) -> list[float]:
    """'60,90,120' -> [60.0, 90.0, 120.0]; anything not a positive number is a user error."""
    bpms = []
    for part in text.split(","):
        try:
            bpm = float(part)
        except ValueError:
            raise StreamMuseError(f"--bpm: {part.strip()!r} is not a number") from None
        if not bpm > 0:
            raise StreamMuseError(f"--bpm: BPM must be > 0, got {part.strip()}")
        bpms.append(bpm)
    return bpms


def plan_table(plan: Plan) -> Table:
    """Rows I, columns GL, one verdict per cell; the first row is ceil(RT95) per GL."""
    table = Table(title=f"{plan.bpm:g} BPM (tau = {plan.tick_ms:.1f} ms/tick)", show_lines=False)
    table.add_column("I \\ GL", justify="right")
    for gl in range(1, plan.max_gl + 1):
        table.add_column(str(gl), justify="center")
    table.add_row("ceil(RT95)", *[str(math.ceil(r)) for r in plan.rt95], end_section=True)
    for i in range(1, plan.max_i + 1):
        table.add_row(str(i), *[_CELL[v] for v in plan.verdicts[i - 1]])
    return table


def plan_to_dict(plan: Plan) -> dict:
    """The JSON form of one BPM's plan."""
    return {
        "bpm": plan.bpm,
        "tick_ms": round(plan.tick_ms, 6),
        "rt95_ticks": [round(r, 6) for r in plan.rt95],
        "feasible_share": round(plan.feasible_share, 6),
        "recommended": list(plan.recommended) if plan.recommended else None,
        "counts": plan.counts(),
        "grid": [[v.value for v in row] for row in plan.verdicts],
    }


def plan_report(profile: dict, f95: QuadraticFit, plans: list[Plan]) -> dict:
    """The JSON written by ``--json``: the curve used and each BPM's plan."""
    return {
        "profile": profile.get("name", ""),
        "f95": f95.to_dict(),
        "f95_source": "rtt_fit.p95" if (profile.get("rtt_fit") or {}).get("p95") else "server_model+network",
        "max_i": plans[0].max_i,
        "max_gl": plans[0].max_gl,
        "plans": [plan_to_dict(p) for p in plans],
    }


def plan(
    profile: Annotated[str, typer.Option(help="Shipped profile name (local, local-server, remote) or a profile JSON.")],
    bpm: Annotated[str, typer.Option(help="Comma-separated BPMs.")] = "60,90,120,150",
    max_gl: Annotated[int, typer.Option(help="Largest GL in the search space.")] = 16,
    max_i: Annotated[int, typer.Option(help="Largest I in the search space.")] = 16,
    plot: Annotated[Path | None, typer.Option(help="Write a Fig. 4 style heatmap PNG here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
) -> None:
    """Classify every (I, GL) as valid, C1, C2 or both (equation 3) for each BPM."""
    data = load_profile_dict(profile)
    f95 = f95_from_profile(data)
    plans = [plan_bpm(f95, b, max_i=max_i, max_gl=max_gl) for b in parse_bpms(bpm)]
    console = Console(highlight=False, soft_wrap=True, width=max(Console().width, 120))
    console.print(
        f"profile {data['name']}: f95(GL) = {f95.a:.4g} GL^2 + {f95.b:.4g} GL + {f95.c:.4g} ms"
    )
    bad = [gl for gl in range(1, max_gl + 1) if f95(gl) <= 0]
    if bad:
        console.print(f"[yellow]warning: f95(GL) <= 0 ms at GL = {', '.join(map(str, bad))}: the fit is "
                      "extrapolating (read as 0 ms); profile those GLs before trusting these cells[/]")
    for p in plans:
        console.print(plan_table(p))
        console.print(f"feasible: {len(p.feasible_pairs)}/{p.max_i * p.max_gl} pairs ({p.feasible_share:.1%})")
        if p.recommended:
            console.print(f"recommended (I, GL) = ({p.recommended[0]}, {p.recommended[1]})")
        else:
            console.print(f"[red]{infeasible_advice(f95, p.bpm, max_i=max_i, max_gl=max_gl)}[/]")
        console.print()
    if plot is not None:
        from streammuse.planner.plots import plot_solution_space

        plot_solution_space(plans, plot, title=f"solution space: {data['name']}")
        console.print(f"wrote {plot}")
    if json_out is not None:
        json_out.write_text(json.dumps(plan_report(data, f95, plans), indent=1) + "\n")
        console.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    """Add `plan` to the streammuse app."""
    app.command("plan")(plan)
