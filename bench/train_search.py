"""A small search over dropout, width, depth and steps within the CPU real-time budget.

For each configuration: the GL = 3 streaming-request median (history 512 frames, timed as
``bench/model_latency.py`` does, random weights: latency depends on the shapes only), as CPU
time of one thread (a shared, niced run's wall time measures the load more than the model),
reported with its ratio to ``tiny`` times tiny's idle-machine wall figure (``--tiny-idle-ms``,
docs/benchmarks.md); if that is within the budget (default 40 ms), a short training run on the
POP909 train split, scored on a fixed subset of the *validation* split (never the test
set). Resumable: each run is a folder under ``--out`` continued with ``--resume``, and
finished configurations are read back from ``results.json``.

Run: ``nice -n 19 .venv/bin/python bench/train_search.py --steps 30 --batch-size 4``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from streammuse.datasets.frames import song_to_frames
from streammuse.datasets.testset import load_testset
from streammuse.model.engine import StreamingEngine
from streammuse.model.train import STATE_FILE, TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=256, intermediate_size=640, num_attention_heads=4, global_layers=4, decoder_layers=2)
# name -> (size overrides of the tiny preset, residual = attention dropout)
GRID: dict[str, tuple[dict, float]] = {
    "tiny": (TINY, 0.0),
    "tiny-d0.1": (TINY, 0.1),
    "narrow-192": ({**TINY, "hidden_size": 192, "intermediate_size": 480, "num_attention_heads": 3}, 0.0),
    "wide-320": ({**TINY, "hidden_size": 320, "intermediate_size": 800, "num_attention_heads": 5}, 0.0),
    "deep-g6": ({**TINY, "global_layers": 6}, 0.0),
    "deep-g6-d3": ({**TINY, "global_layers": 6, "decoder_layers": 3}, 0.0),
    "wide-384-g6": ({**TINY, "hidden_size": 384, "intermediate_size": 960, "num_attention_heads": 6,
                     "global_layers": 6}, 0.0),
}


def gl3_latencies(names: list[str], repeats: int) -> dict[str, float]:
    """Median *CPU* ms (one torch thread, ``time.thread_time``) of a GL = 3 request after a
    512-frame history, as ``request_latency`` of ``bench/model_latency.py`` times it (requests
    every tick after a rollback), per configuration, random weights. CPU time rather than wall
    time: on a shared machine a niced process waits for the CPU far longer than it computes;
    on an idle one the two agree. The configurations take turns, request by request."""
    from streammuse.model.config import preset
    from streammuse.model.sampling import Sampling

    songs = load_testset(ROOT / "testset")
    m = np.concatenate([song_to_frames(s)[0] for s in songs])[:1200]  # melody input only: timing
    engines = {n: StreamingEngine.random(preset("tiny", **GRID[n][0]), seed=0) for n in names}
    states = {n: engines[n].new_session(Sampling(seed=0)) for n in names}
    for n in names:
        engines[n].infer(states[n], 512, m[:512], 3)  # the history is encoded once
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(1, repeats + 1):
        for n in names:
            t = time.thread_time()
            engines[n].infer(states[n], 512 + r, m[511 + r : 512 + r], 3)
            times[n].append((time.thread_time() - t) * 1000)
    return {n: float(np.median(t)) for n, t in times.items()}


def run_one(name: str, args: argparse.Namespace, ms: float, tiny_ms: float) -> dict:
    """A short resumable training run when the estimated latency is within budget; the result row."""
    sizes, dropout = GRID[name]
    row = {"name": name, "dropout": dropout, **sizes, "gl3_cpu_ms": ms, "gl3_ratio_to_tiny": ms / tiny_ms,
           "gl3_ms_idle_estimate": ms / tiny_ms * args.tiny_idle_ms}
    settings = TrainSettings(config="tiny", data=args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             warmup=max(1, args.steps // 6), eval_every=args.eval_every, val_windows=args.val_windows,
                             checkpoint_every=args.eval_every, residual_dropout=dropout, attention_dropout=dropout,
                             seed=args.seed, model=dict(sizes))
    from streammuse.model.modeling import StreamMuseModel

    row["parameters"] = sum(p.numel() for p in StreamMuseModel(settings.model_config()).parameters())
    if row["gl3_ms_idle_estimate"] > args.budget_ms:
        row["note"] = f"over the {args.budget_ms:.0f} ms budget: not trained"
        return row
    if name in args.no_train.split(","):
        row["note"] = "latency only (--no-train)"
        return row
    folder = Path(args.out) / name
    log = train(settings, folder, resume=(folder / STATE_FILE).is_file(), device="cpu", show_progress=False,
                final_validation=False)
    row.update(val_nll=log["best"]["val_nll"], best_step=log["best"]["step"], train_s=round(log["elapsed_s"]),
               curve={h["step"]: round(h["val_nll"], 4) for h in log["history"]})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "pop909"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "search"))
    ap.add_argument("--only", default="", help="comma-separated names from the grid (default: all)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--val-windows", type=int, default=16)
    ap.add_argument("--budget-ms", type=float, default=40.0)
    ap.add_argument("--tiny-idle-ms", type=float, default=21.9,
                    help="GL=3 median of tiny on the idle machine (docs/benchmarks.md); scales the measured ratios")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train", default="", help="comma-separated names measured for latency only")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else list(GRID)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lat_file, results_file = out / "latency.json", out / "results.json"
    lat = json.loads(lat_file.read_text()) if lat_file.is_file() else {}
    if not set(names) | {"tiny"} <= set(lat):
        lat = gl3_latencies(sorted(set(names) | {"tiny"}), args.repeats)
        lat_file.write_text(json.dumps(lat, indent=1))
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in names:
        if name not in results:
            results[name] = run_one(name, args, lat[name], lat["tiny"])
            results_file.write_text(json.dumps(results, indent=1))
        Console().print(json.dumps(results[name]))
    show(results, args)


def show(results: dict, args: argparse.Namespace) -> None:
    """The search table (configuration, parameters, validation NLL, GL = 3 latency)."""
    table = Table(title=f"search: {args.steps} steps x {args.batch_size} windows, validation NLL on "
                        f"{args.val_windows} fixed valid windows (best of the schedule)")
    for col in ("configuration", "dropout", "parameters", "val NLL", "GL=3 CPU ms", "x tiny", "est. idle ms"):
        table.add_column(col, justify="right")
    for r in results.values():
        shape = f"h{r['hidden_size']} g{r['global_layers']} d{r['decoder_layers']}"
        nll = f"{r['val_nll']:.3f} (step {r['best_step']})" if "val_nll" in r else r.get("note", "-")
        table.add_row(f"{r['name']} ({shape})", f"{r['dropout']}", f"{r['parameters'] / 1e6:.2f} M", nll,
                      f"{r['gl3_cpu_ms']:.1f}", f"{r['gl3_ratio_to_tiny']:.2f}", f"{r['gl3_ms_idle_estimate']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
