"""The paper's whole Table III on the full test set (all 64 songs, whole length, 120 BPM):
the 8 (I, GL) pairs x 3 settings on the sim clock (one virtual replica per song, the
paper's single user; the engine batched across songs; each batch lasting the profile's
modelled server time) plus the offline baseline, every configuration a Ray task that also
scores its run, longest first; then the report.

    .venv/bin/python bench/table3_full.py --out runs/table3-full                # seed 0
    .venv/bin/python bench/table3_full.py --out runs/table3-full --seeds 0,1,2  # three seeds + spread
    .venv/bin/python bench/table3_full.py --out runs/table3-full --ray-address ray://head:10001
    PYTHONPATH=. python bench/table3_full.py --out runs/t3-gpu --device cuda --workers 16  # a GPU box without Ray

Each seed's runs go to ``OUT/seed-N``. Interrupted: run the same command again (a
configuration whose run folder is complete is not run again). With more than one seed
it ends with each column's spread over the seeds (``OUT/spread.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from streammuse.experiment.config import PAPER_SWEEP, ReplayConfig, parse_sweep
from streammuse.experiment.sweep import run_sweep_in_processes, run_sweep_on_ray

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("local", "local-server", "remote")
COLUMNS = ("jsd_pitch", "jsd_onset", "fmd", "cr", "ur", "nll_wavg", "isr", "staleness", "isr_w")


def configurations(out: Path, seed: int, songs: int | None = None, max_bars: int | None = None,
                   pairs=PAPER_SWEEP, settings=(*SETTINGS, "offline")) -> list[ReplayConfig]:
    """Offline and the 24 sim configurations of one seed (or those of ``pairs`` and
    ``settings``), longest first (the offline baseline is one engine call per tick and
    song; a sim pair costs about (GL + 2) / I)."""
    base = dict(testset=ROOT / "testset", songs=songs, max_bars=max_bars, seed=seed, out=out / f"seed-{seed}",
                resume=True)
    sims = [ReplayConfig(setting=s, clock="sim", servers="per-song", concurrency=64, interval=i, gen_len=gl, **base)
            for i, gl in pairs for s in SETTINGS if s in settings]
    sims.sort(key=lambda c: -(c.gen_len + 2) / c.interval)
    offline = [ReplayConfig(setting="offline", interval=1, gen_len=1, **base)] if "offline" in settings else []
    return [*offline, *sims]


def spread(out: Path, seeds: list[int]) -> str:
    """Markdown: per configuration and column, mean and (max - min) over the seeds."""
    cells: dict[tuple, dict[str, list[float]]] = {}
    for seed in seeds:
        for path in sorted((out / f"seed-{seed}").glob("*/metrics/summary.json")):
            s = json.loads(path.read_text())
            key = (s["setting"], s["interval"], s["gen_len"])
            for col in COLUMNS:
                value = s["metrics"].get(col)
                if value is not None:
                    cells.setdefault(key, {}).setdefault(col, []).append(value)
    lines = [f"seeds {', '.join(map(str, seeds))}: mean (max - min) per column",
             "", "| setting | (I, GL) | " + " | ".join(COLUMNS) + " |", "|" + " --- |" * (len(COLUMNS) + 2)]
    for (setting, i, gl), cols in sorted(cells.items()):
        row = [f"{statistics.mean(v):.4g} ({max(v) - min(v):.2g})" if len(v) == len(seeds) else "-"
               for v in (cols.get(c, []) for c in COLUMNS)]
        lines.append(f"| {setting} | ({i}, {gl}) | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/table3-full"))
    ap.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("--ray-address", default=None, help="a Ray cluster; default: a local Ray instance")
    ap.add_argument("--songs", type=int, default=0, help="the first N songs (a smoke run); 0: all 64")
    ap.add_argument("--max-bars", type=int, default=0, help="crop to B bars (a smoke run); 0: whole songs")
    ap.add_argument("--pairs", default="paper", help='(I, GL) pairs, e.g. "4,5 7,9"; default: the paper\'s 8')
    ap.add_argument("--settings", default=",".join((*SETTINGS, "offline")), help="comma-separated; default: all four")
    ap.add_argument("--workers", type=int, default=0, help="N worker processes here instead of Ray tasks")
    ap.add_argument("--device", default="cpu", help="the engines' device with --workers (cuda: they share the GPU)")
    ap.add_argument("--no-cuda-graphs", action="store_true", help="with --device cuda: the eager step")
    ap.add_argument("--no-evaluate", action="store_true", help="generate only; score later with `streammuse report`")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    settings = tuple(args.settings.split(","))
    configs = [c for seed in seeds for c in configurations(args.out, seed, args.songs or None, args.max_bars or None,
                                                           parse_sweep(args.pairs), settings)]
    started = time.monotonic()

    def done(cfg: ReplayConfig, path: Path) -> None:
        print(f"[{(time.monotonic() - started) / 60:6.1f} min] {path}", flush=True)

    n_songs = args.songs or 64
    if args.workers:
        run_sweep_in_processes(configs, n_songs, args.workers, device=args.device,
                               cuda_graphs=not args.no_cuda_graphs, on_done=done, evaluate=not args.no_evaluate)
    else:
        run_sweep_on_ray(configs, n_songs=n_songs, ray_address=args.ray_address, on_done=done,
                         evaluate=not args.no_evaluate)
    print(f"all {len(configs)} configurations in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    if args.no_evaluate:
        return
    for seed in seeds:
        subprocess.run([sys.executable, "-m", "streammuse", "report", str(args.out / f"seed-{seed}"),
                        "--format", "markdown"], check=True)
    if len(seeds) > 1:
        table = spread(args.out, seeds)
        (args.out / "spread.md").write_text(table + "\n")
        print(table)


if __name__ == "__main__":
    main()
