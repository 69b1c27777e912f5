"""The adaptive client on a server it shares (issue 33): adaptive against fixed pairs, the
songs playing at once on one virtual replica (``--servers shared``), on the sim clock.

The server is the ``remote`` profile's network (about 150 ms) in front of a CPU-like
replica: IL(GL) = 20 GL + 10 ms for one session, each extra session in a batch adding
half of that (``batch_slope`` 0.5), so four sessions at (2, 5) ask for more than the
server computes (a batch of 275 ms every 250 ms) while (3, 6) and (4, 8) fit. Every
batch is timed by that model (``--server-time modelled``) and the engine is the
timing-only one (``model.silent``: under modelled time the tick log does not depend on
the tokens), so each run takes a second or two and replays identically.

    .venv/bin/python bench/adaptive_contention.py [--songs 4,8] [--max-bars 16]

Prints ISR, Staleness and ISR_w per pair and the adaptive run's pairs and switches.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BUSY_SERVER = {
    "name": "remote-busy",
    "description": "remote network in front of a CPU-like replica that four (2, 5) sessions overfill",
    "source": {"kind": "scenario", "detail": "bench/adaptive_contention.py (issue 33)"},
    "network": {"nu_ms": 148.0, "x_min_ms": 5.0, "alpha": 4.0},
    "server_jitter_ms": 1.0,
    "server_model": {"a": 0.0, "b": 20.0, "c": 10.0, "sigma_ms": 2.0, "batch_slope": 0.5},
    "rtt_fit": None,
}
FIXED = ((1, 3), (2, 5), (3, 6), (4, 7), (4, 8), (5, 8), (6, 9), (6, 12), (8, 12), (8, 16))


def run(profile: Path, songs: int, max_bars: int, pair: tuple[int, int], adaptive: bool, out: Path) -> dict:
    from streammuse.client.adaptive import AdaptiveSettings
    from streammuse.experiment.config import ReplayConfig
    from streammuse.experiment.replay import load_songs, realtime_summary, resolve_profile, run_pair
    from streammuse.model.silent import SilentEngine

    cfg = ReplayConfig(testset=ROOT / "testset", setting="remote", profile=str(profile), interval=pair[0],
                       gen_len=pair[1], clock="sim", server_time="modelled", servers="shared", songs=songs,
                       max_bars=max_bars, seed=0, out=out, concurrency=songs,
                       adaptive=AdaptiveSettings() if adaptive else None)
    engine = SilentEngine()
    path, _ = run_pair(cfg, load_songs(cfg), resolve_profile(cfg), engine=engine, model_id=engine.model_id)
    ticks = pd.read_parquet(path / "ticks.parquet")
    row = {"run": f"adaptive from {pair}" if adaptive else f"fixed {pair}", **realtime_summary(ticks)}
    if adaptive:
        used = ticks.groupby(["interval", "gen_len"]).size().sort_values(ascending=False)
        row["pairs"] = " ".join(f"({i},{g}) {n / len(ticks):.0%}" for (i, g), n in used.head(4).items())
        row["switches"] = len(pd.read_parquet(path / "switches.parquet"))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", default="4,8", help="songs on the one replica (comma-separated)")
    ap.add_argument("--max-bars", type=int, default=16)
    ap.add_argument("--start", default="2,5", help="the adaptive client's first pair")
    args = ap.parse_args()
    start = tuple(int(v) for v in args.start.split(","))
    console = Console(width=140)
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "remote-busy.json"
        profile.write_text(json.dumps(BUSY_SERVER))
        for songs in (int(v) for v in args.songs.split(",")):
            rows = [run(profile, songs, args.max_bars, start, True, Path(tmp) / "runs")]
            rows += [run(profile, songs, args.max_bars, pair, False, Path(tmp) / "runs") for pair in FIXED]
            table = Table(title=f"{songs} songs x {args.max_bars} bars on one virtual replica, remote-busy, 120 BPM")
            for col in ("run", "ISR", "Staleness", "ISR_w", "pairs (share of ticks)", "switches"):
                table.add_column(col, justify="left" if col in ("run", "pairs (share of ticks)") else "right")
            best = max((r for r in rows[1:]), key=lambda r: r["isr_w"])
            for r in rows:
                table.add_row(r["run"] + (" (best fixed)" if r is best else ""), f"{r['isr']:.4f}", f"{r['staleness']:.3f}",
                              f"{r['isr_w']:.4f}", r.get("pairs", ""), str(r.get("switches", "")))
            console.print(table)


if __name__ == "__main__":
    main()
