"""Does the planner predict reality? (issue 7, item 4; paper V-C against Table III)

For each shipped setting at 120 BPM, replay a few test songs on the sim clock (modelled
server time, fixed seeds) over a grid of (I, GL) pairs, and compare the planner's verdict
for each pair with the ISR_w the replay reached:

* hit rate   = share of planner-feasible pairs with ISR_w >= 0.9
* reject rate = share of planner-infeasible pairs with ISR_w < 0.9

Run by hand (a few minutes on 2 CPU cores):

    .venv/bin/python bench/planner_vs_sim.py --testset testset --songs 2 --max-bars 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from streammuse.experiment.config import ReplayConfig
from streammuse.experiment.replay import load_songs, realtime_summary, resolve_profile, run_pair
from streammuse.model.engine import StreamingEngine
from streammuse.feasibility import Verdict, classify, rt95_ticks
from streammuse.planner.profile_fit import f95_from_profile

SETTINGS = ("local", "local-server", "remote")
# Spans the valid band and both violations at 120 BPM (ceil(RT95) is 1 for local, 2 for
# the networked profiles), and includes the paper's Table III pairs that fit in 16 bars.
GRID = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (2, 5), (2, 8), (3, 4), (3, 6), (4, 5), (4, 8), (6, 8))
ISR_W_TARGET = 0.9


def run(testset: Path, songs: int, max_bars: int, bpm: float, seed: int, random_weights: bool = False) -> pd.DataFrame:
    """One row per (setting, I, GL): planner verdict and the replay's ISR, Staleness, ISR_w."""
    engine = StreamingEngine.random("tiny") if random_weights else StreamingEngine.load()
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for setting in SETTINGS:
            base = ReplayConfig(testset=testset, setting=setting, bpm=bpm, clock="sim", songs=songs,
                                max_bars=max_bars, seed=seed, out=Path(out))
            profile = resolve_profile(base)
            f95 = f95_from_profile(profile.to_dict())
            chosen = load_songs(base)
            for interval, gen_len in GRID:
                cfg = base.with_pair(interval, gen_len)
                path, _ = run_pair(cfg, chosen, profile, engine=engine, model_id="shipped")
                ticks = pd.read_parquet(path / "ticks.parquet")
                verdict = classify(interval, gen_len, rt95_ticks(f95, gen_len, bpm))
                rows.append({"setting": setting, "I": interval, "GL": gen_len, "verdict": verdict.value,
                             **realtime_summary(ticks)})
    return pd.DataFrame(rows)


def agreement(results: pd.DataFrame) -> pd.DataFrame:
    """Per setting: how often feasible pairs reach the target and infeasible ones miss it."""
    out = []
    for setting, group in results.groupby("setting", sort=False):
        feasible = group[group["verdict"] == Verdict.VALID.value]
        infeasible = group[group["verdict"] != Verdict.VALID.value]
        out.append({
            "setting": setting,
            "feasible": len(feasible),
            "feasible_reach_0.9": int((feasible["isr_w"] >= ISR_W_TARGET).sum()),
            "infeasible": len(infeasible),
            "infeasible_below_0.9": int((infeasible["isr_w"] < ISR_W_TARGET).sum()),
        })
    return pd.DataFrame(out)


def main() -> None:
    """Run the grid and print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testset", type=Path, default=Path("testset"))
    parser.add_argument("--songs", type=int, default=2)
    parser.add_argument("--max-bars", type=int, default=8)
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-weights", action="store_true", help="untrained engine (no checkpoint needed)")
    args = parser.parse_args()
    results = run(args.testset, args.songs, args.max_bars, args.bpm, args.seed, args.random_weights)
    console = Console()
    table = Table(title=f"planner verdict vs sim replay at {args.bpm:g} BPM")
    for col in ("setting", "I", "GL", "verdict", "ISR", "Staleness", "ISR_w"):
        table.add_column(col, justify="right")
    for r in results.itertuples():
        table.add_row(r.setting, str(r.I), str(r.GL), r.verdict, f"{r.isr:.3f}", f"{r.staleness:.2f}", f"{r.isr_w:.3f}")
    console.print(table)
    summary = Table(title=f"agreement (target ISR_w >= {ISR_W_TARGET})")
    for col in ("setting", "feasible pairs reaching target", "infeasible pairs below target"):
        summary.add_column(col, justify="right")
    for r in agreement(results).itertuples(index=False):
        summary.add_row(r.setting, f"{r[2]}/{r.feasible}", f"{r[4]}/{r.infeasible}")
    console.print(summary)


if __name__ == "__main__":
    main()
