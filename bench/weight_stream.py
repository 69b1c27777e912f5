"""How fast this machine multiplies one activation row by weights it cannot keep in cache:
the floor under a B = 1 engine step on the CPU.

A GL = 3 request at B = 1 reads the shipped model's weights 122 times (34 layer calls,
each reading its qkv, o, gate-up and down projections, and the heads): 96 MB of fp32
weights per request (``--count-request`` counts them: every ``mm``/``addmm``/``linear``
whose operand is one of the model's weights, in one GL = 3 request after 256 ticks). Once the weights no longer fit in the cache, each
product streams its weights from memory, and the request cannot be faster than
``bytes / bandwidth``. This benchmark times ``(1, H) @ (H, 5H)`` with one torch thread,
cycling through N distinct weight matrices so that the working set grows past the
cache: a jump in µs per product marks the cache edge, and the plateau is the
streaming cost the engine pays per weight read.

    .venv/bin/python bench/weight_stream.py [--hidden 256] [--dtype float32] [--count-request]

Prints one row per working set: MB, µs per product, GB/s of weight reads, and the
request floor (``--reads-mb`` MB of weights per request at that bandwidth).
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table


def time_products(weights: list[torch.Tensor], x: torch.Tensor, rounds: int) -> float:
    """µs per product, cycling through ``weights`` (median of 5 passes of ``rounds`` cycles)."""
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            for w in weights:
                torch.mm(x, w)
        passes.append((time.perf_counter() - start) / (rounds * len(weights)) * 1e6)
    return sorted(passes)[len(passes) // 2]


def weight_reads_of_a_request() -> tuple[float, int]:
    """(MB of weights read, reads) in one GL = 3 request at B = 1 of the shipped model,
    after a 256-tick history of the first test-set song long enough."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset
    from streammuse.model.engine import StreamingEngine

    engine = StreamingEngine.load()
    weights = {p.data_ptr() for p in engine.model.parameters()}

    class Reads(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.bytes, self.count = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("mm", "addmm", "linear"):
                for a in args:
                    if isinstance(a, torch.Tensor) and a.data_ptr() in weights:
                        self.bytes += a.numel() * a.element_size()
                        self.count += 1
            return func(*args, **(kwargs or {}))

    melody = next(m for m, _, _ in map(song_to_frames, load_testset("testset")) if len(m) > 260)
    state = engine.new_session()
    engine.infer(state, 256, melody[:256], 3)
    with torch.inference_mode(), Reads() as reads:
        engine.infer(state, 257, melody[256:257], 3)
    return reads.bytes / 1e6, reads.count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=256, help="H: the shipped tiny model's width")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--sets-mb", default="2,5,10,20,30,50,100", help="working sets to try (MB)")
    ap.add_argument("--reads-mb", type=float, default=96.0, help="weights one request reads (MB)")
    ap.add_argument("--count-request", action="store_true", help="count the weights one GL = 3 request reads")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.count_request:
        mb, n = weight_reads_of_a_request()
        print(f"one GL = 3 request at B = 1 (256 ticks in) reads {mb:.1f} MB of weights in {n} reads")
        args.reads_mb = mb
    dtype = getattr(torch, args.dtype)
    h = args.hidden
    x = torch.randn(1, h, dtype=dtype)
    one_mb = h * 5 * h * x.element_size() / 1e6
    table = Table(title=f"(1, {h}) @ ({h}, {5 * h}) {args.dtype}, one thread, N distinct weights")
    for col in ("working set (MB)", "N", "µs / product", "GB/s", f"floor of a {args.reads_mb:g} MB request (ms)"):
        table.add_column(col, justify="right")
    for mb in (float(v) for v in args.sets_mb.split(",")):
        n = max(1, round(mb / one_mb))
        weights = [torch.randn(h, 5 * h, dtype=dtype) for _ in range(n)]
        us = time_products(weights, x, rounds=max(1, 400 // n))
        gbs = one_mb * 1e3 / us  # MB per µs = TB/s
        table.add_row(f"{n * one_mb:.1f}", str(n), f"{us:.0f}", f"{gbs:.1f}", f"{args.reads_mb / gbs:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
