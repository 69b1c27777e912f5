"""A small search over dropout, width, depth and steps within the CPU real-time budget.

For each configuration: the GL = 3 streaming-request median (ms, history 512 frames,
``request_latency`` of ``bench/model_latency.py``, random weights: latency depends on the
shapes only); if it is within the budget (default 40 ms), a short training run on the
POP909 train split, scored on a fixed subset of the *validation* split (never the test
set). Resumable: each run is a folder under ``--out`` continued with ``--resume``, and
finished configurations are read back from ``results.json``.

Run: ``nice -n 19 .venv/bin/python bench/train_search.py --steps 30 --batch-size 4``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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


def gl3_latency(sizes: dict, repeats: int) -> float:
    """Median ms of a GL = 3 request after a 512-frame history (random weights)."""
    spec = importlib.util.spec_from_file_location("model_latency", ROOT / "bench" / "model_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from streammuse.model.config import preset

    engine = StreamingEngine.random(preset("tiny", **sizes), seed=0)
    songs = load_testset(ROOT / "testset")
    m = np.concatenate([song_to_frames(s)[0] for s in songs])[:1200]  # melody input only: timing
    return bench.request_latency(engine, m, 512, 3, repeats)[0]


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Latency, then (within budget) a short resumable training run; the result row."""
    sizes, dropout = GRID[name]
    row = {"name": name, "dropout": dropout, **sizes, "gl3_ms": gl3_latency(sizes, args.repeats)}
    settings = TrainSettings(config="tiny", data=args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             warmup=max(1, args.steps // 6), eval_every=args.eval_every, val_windows=args.val_windows,
                             checkpoint_every=args.eval_every, residual_dropout=dropout, attention_dropout=dropout,
                             seed=args.seed, model=dict(sizes))
    from streammuse.model.modeling import StreamMuseModel

    row["parameters"] = sum(p.numel() for p in StreamMuseModel(settings.model_config()).parameters())
    if row["gl3_ms"] > args.budget_ms:
        row["note"] = f"over the {args.budget_ms:.0f} ms budget: not trained"
        return row
    folder = Path(args.out) / name
    log = train(settings, folder, resume=(folder / STATE_FILE).is_file(), device="cpu", show_progress=False)
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
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results_file = Path(args.out) / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in args.only.split(",") if args.only else GRID:
        if name not in results:
            results[name] = run_one(name, args)
            results_file.parent.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1))
        Console().print(json.dumps(results[name]))
    show(results, args)


def show(results: dict, args: argparse.Namespace) -> None:
    """The search table (configuration, parameters, validation NLL, GL = 3 latency)."""
    table = Table(title=f"search: {args.steps} steps x {args.batch_size} windows, validation NLL on "
                        f"{args.val_windows} fixed valid windows (best of the schedule)")
    for col in ("configuration", "dropout", "parameters", "val NLL", "GL=3 median ms"):
        table.add_column(col, justify="right")
    for r in results.values():
        shape = f"h{r['hidden_size']} g{r['global_layers']} d{r['decoder_layers']}"
        nll = f"{r['val_nll']:.3f} (step {r['best_step']})" if "val_nll" in r else r.get("note", "-")
        table.add_row(f"{r['name']} ({shape})", f"{r['dropout']}", f"{r['parameters'] / 1e6:.2f} M", nll,
                      f"{r['gl3_ms']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
