"""Adaptive (I, GL) against fixed pairs while the latency drifts (issue 17's table).

For each profile (the four drifting ones and the three stationary ones shipped), on the
sim clock (one virtual replica per song, the paper's single user; each batch timed by
the profile's server model, ``--server-time modelled``), over ``--seeds``:

* ``planner(8 bars)``: the pair the planner picks (equation 3, smallest I then GL) from
  the p95 RTT a profile measurement over the song's first 8 bars would see (Monte Carlo
  draws of the profile, its drift included, at send times in [0, 8 bars));
* ``adaptive``: ``replay --adaptive`` starting from that pair;
* every fixed pair of a candidate set: the paper's 8 pairs, every pair the adaptive
  client used, and the planner's pair. ``best fixed`` is the best of them in hindsight
  (highest mean ISR_w over the seeds).

ISR, Staleness and ISR_w come from runs with ``model.silent.SilentEngine`` (timing
only: under modelled server time the tick log does not depend on the tokens, tested in
tests/test_client_adaptive.py), so the whole grid takes minutes. ``--cr`` adds the
consonance rate CR for the adaptive and planner runs of seed 0 with the shipped model
(on the first ``--cr-songs`` songs).

    .venv/bin/python bench/adaptive_drift.py --songs 16 --max-bars 16 --seeds 0,1,2 [--cr]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DRIFTING = ("drift-step", "drift-ramp", "drift-bursts", "drift-contention")
STATIONARY = ("local", "local-server", "remote")
BPM = 120.0


def planner_pair_from_window(profile, window_s: float, draws: int = 4000, seed: int = 0) -> tuple[int, int]:
    """The planner's pair from a measurement over song time [0, window_s): per GL, the
    95th percentile of RTT = NL(t) + IL(GL) x k(t) + jitter drawn at uniform t."""
    from streammuse.client.drift import drift_at
    from streammuse.client.latency import LatencyInjector
    from streammuse.feasibility import recommend_pair

    rng = np.random.default_rng(seed)
    injector = LatencyInjector(profile, seed=seed)
    times_ms = rng.uniform(0.0, window_s * 1000.0, draws)
    net = np.array([injector.draw(t) for t in times_ms], dtype=object)
    network = np.array([d.network_ms + d.server_jitter_ms for d in net])
    scale = np.array([drift_at(profile.drift, t / 1000.0).server_scale for t in times_ms])
    server = profile.server_model
    f95 = {gl: float(np.quantile(network + scale * np.array([server.sample_ms(rng, gl) for _ in range(draws)]), 0.95))
           for gl in range(1, 17)}
    return recommend_pair(lambda gl: f95[int(gl)], BPM)


def run(profile_name: str, pair: tuple[int, int], seed: int, adaptive: bool, args, out: Path, engine) -> dict:
    from streammuse.client.adaptive import AdaptiveSettings
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, realtime_summary, resolve_profile, run_pair

    cfg = ReplayConfig(testset=Path(args.testset), setting="remote", profile=_profile_path(profile_name),
                       interval=pair[0], gen_len=pair[1], clock="sim", server_time="modelled", servers="per-song",
                       songs=args.songs, max_bars=args.max_bars, seed=seed, out=out, concurrency=args.songs,
                       adaptive=AdaptiveSettings(rule=args.rule) if adaptive else None)
    songs, profile = load_songs(cfg), resolve_profile(cfg)
    path, _ = run_pair(cfg, songs, profile, engine=engine, model_id=engine.model_id)
    ticks = pd.read_parquet(path / "ticks.parquet")
    row = {"profile": profile_name, "pair": f"({pair[0]},{pair[1]})", "adaptive": adaptive, "seed": seed,
           **realtime_summary(ticks), "path": str(path)}
    if adaptive:
        row["pairs_used"] = sorted({(int(i), int(g)) for i, g in zip(ticks["interval"], ticks["gen_len"])})
        row["switches"] = len(pd.read_parquet(path / "switches.parquet")) / ticks["song"].nunique()
    return row


def _profile_path(name: str) -> str:
    from importlib import resources

    return str(resources.files("streammuse.client").joinpath("profiles", f"{name}.json"))


def grid(name: str, args, out: Path, engine) -> tuple[list[dict], tuple[int, int]]:
    """Planner pair, adaptive runs and the fixed candidates for one profile, every seed."""
    from streammuse.client.latency import load_profile
    from streammuse.experiment.config import PAPER_SWEEP

    start = planner_pair_from_window(load_profile(name), window_s=8 * 4 * 60.0 / BPM)
    rows = [run(name, start, seed, True, args, out, engine) for seed in args.seeds]
    candidates = set(PAPER_SWEEP) | {start} | {p for r in rows for p in r["pairs_used"]}
    for pair in sorted(candidates):
        rows += [run(name, pair, seed, False, args, out, engine) for seed in args.seeds]
    return rows, start


def summarise(name: str, rows: list[dict], start: tuple[int, int]) -> dict:
    """One line of the table: adaptive, the planner's pair, the best fixed pair in hindsight."""
    t = pd.DataFrame(rows)
    fixed = t[~t.adaptive].groupby("pair")[["isr", "staleness", "isr_w"]].mean()
    ad = t[t.adaptive]
    best = fixed["isr_w"].idxmax()
    planner = f"({start[0]},{start[1]})"
    spread = lambda s: f"{s.mean():.4f} ± {s.std(ddof=0):.4f}"  # noqa: E731
    return {"profile": name, "adaptive ISR_w": spread(ad["isr_w"]), "adaptive ISR": round(ad["isr"].mean(), 4),
            "adaptive S": round(ad["staleness"].mean(), 3), "switches/song": round(ad["switches"].mean(), 2),
            "planner(8 bars)": planner, "planner ISR_w": round(fixed.loc[planner, "isr_w"], 4),
            "best fixed": best, "best ISR_w": round(fixed.loc[best, "isr_w"], 4),
            "adaptive - best": round(ad["isr_w"].mean() - fixed.loc[best, "isr_w"], 4),
            "adaptive - planner": round(ad["isr_w"].mean() - fixed.loc[planner, "isr_w"], 4),
            "pairs used": " ".join(f"({i},{g})" for i, g in sorted({p for r in ad.pairs_used for p in r}))}


def consonance(names: list[str], args, out: Path) -> list[dict]:
    """CR of the adaptive and planner runs of the first seed, with the shipped model."""
    from streammuse.client.latency import load_profile
    from streammuse.metrics.evaluate import evaluate_run
    from streammuse.model.engine import StreamingEngine

    engine = StreamingEngine.load()
    args = argparse.Namespace(**{**vars(args), "songs": args.cr_songs})
    result = []
    for name in names:
        pair = planner_pair_from_window(load_profile(name), window_s=8 * 4 * 60.0 / BPM)
        crs, isr_w = {}, {}
        for adaptive in (True, False):
            r = run(name, pair, args.seeds[0], adaptive, args, out, engine)
            crs[adaptive] = evaluate_run(Path(r["path"]), with_nll=False, with_fmd=False)["metrics"]["cr"]
            isr_w[adaptive] = round(r["isr_w"], 4)
        result.append({"profile": name, "songs": args.songs, "ISR_w adaptive": isr_w[True],
                       "ISR_w planner": isr_w[False], "CR adaptive": round(crs[True], 4), "CR planner": round(crs[False], 4),
                       "relative": f"{(crs[True] - crs[False]) / crs[False] * 100:+.2f} %"})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testset", default="testset")
    parser.add_argument("--songs", type=int, default=16)
    parser.add_argument("--max-bars", type=int, default=16)
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--profiles", default=",".join(DRIFTING + STATIONARY))
    parser.add_argument("--rule", default="isr_w", choices=("isr_w", "equation3"))
    parser.add_argument("--cr", action="store_true", help="CR with the shipped model (slow: real engine)")
    parser.add_argument("--cr-songs", type=int, default=8, help="songs in the CR runs")
    parser.add_argument("--cr-only", action="store_true", help="only the CR runs (not the timing grid)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from streammuse.model.silent import SilentEngine

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start: {os.getloadavg()}")
    started = time.perf_counter()
    lines = []
    names = args.profiles.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names if not args.cr_only else []:
            rows, start = grid(name, args, Path(tmp) / name, SilentEngine())
            lines.append(summarise(name, rows, start))
        crs = consonance(names, args, Path(tmp) / "cr") if args.cr or args.cr_only else []
    for cr in crs:
        print(cr)
    if not lines:
        return
    table = Table(title=f"adaptive vs fixed (I, GL): {args.songs} songs x {args.max_bars} bars, {BPM:g} BPM, "
                        f"seeds {args.seeds}, rule {args.rule}, sim clock, per-song replicas, modelled server time")
    for key in lines[0]:
        table.add_column(key, justify="left" if key in ("profile", "pairs used") else "right")
    for line in lines:
        table.add_row(*(str(v) for v in line.values()))
    Console(width=200).print(table)
    print(f"wall time {time.perf_counter() - started:.0f} s, load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
