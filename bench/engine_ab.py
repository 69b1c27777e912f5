"""The engine before and after, side by side in one run: each measurement runs in a child
process per engine (the old one from a git revision, unpacked to a temp folder), the two
alternating, so both see the same machine. Shipped checkpoint, one thread, same seeds.

Figures (median of each child's repeats, then over rounds):
- ``gl3_b1``: a GL = 3 request at B = 1 after a 512-tick history (the window has slid);
- ``gl3_b8``, ``gl3_b16``: one batched GL = 3 request of 8 / 16 sessions (200 ticks in);
- ``offline``: offline generation, 16 songs x 64 ticks in one call per tick (ticks/s);
- ``ops_tick``: aten ops per tick of a GL = 3 request at B = 1 (history 256);
- ``generate_s``: ``python -m streammuse generate`` of a one-bar melody, start to finish (s).

Run: ``.venv/bin/python bench/engine_ab.py [--old 0318fae] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _request(mod, state, s, melody, gl):
    req = getattr(mod, "EngineRequest", None)
    return req(state, s, melody, gl) if req else (state, s, melody, gl)


def child(what: str, repeats: int) -> dict:
    """Runs in the child: the engine on PYTHONPATH, one thread."""
    import torch

    torch.set_num_threads(1)
    import streammuse.model.engine as eng
    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset
    from streammuse.model.sampling import Sampling

    engine = eng.StreamingEngine.load()
    songs = load_testset(ROOT / "testset")
    melodies = [song_to_frames(s)[0] for s in songs]
    m = np.concatenate(melodies)[:1200]
    out = {}
    if what in ("all", "gl3_b1"):
        st = engine.new_session(Sampling(seed=0))
        engine.infer_batch([_request(eng, st, 512, m[:512], 3)])
        times = []
        for r in range(1, repeats + 1):
            s = 512 + r
            t = time.perf_counter()
            engine.infer_batch([_request(eng, st, s, m[s - 1 : s], 3)])
            times.append((time.perf_counter() - t) * 1000)
        out["gl3_b1"] = float(np.median(times))
    for b in (8, 16):
        if what not in ("all", f"gl3_b{b}"):
            continue
        long = [mm for mm in melodies if len(mm) >= 260][:b]
        states = [engine.new_session(Sampling(seed=i)) for i in range(b)]
        engine.infer_batch([_request(eng, st, 200, mm[:200], 3) for st, mm in zip(states, long)])
        times = []
        for r in range(1, repeats + 1):
            s = 200 + r
            t = time.perf_counter()
            engine.infer_batch([_request(eng, st, s, mm[s - 1 : s], 3) for st, mm in zip(states, long)])
            times.append((time.perf_counter() - t) * 1000)
        out[f"gl3_b{b}"] = float(np.median(times))
    if what in ("all", "offline"):
        songs16 = [mm[:64] for mm in melodies[:16]]
        t = time.perf_counter()
        eng.generate_offline_batch(engine, songs16, [Sampling(seed=i) for i in range(16)])
        out["offline"] = 16 * 64 / (time.perf_counter() - t)
    if what in ("all", "ops_tick"):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Count(TorchDispatchMode):
            n = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                Count.n += 1
                return func(*args, **(kwargs or {}))

        st = engine.new_session(Sampling(seed=0))
        engine.infer_batch([_request(eng, st, 256, m[:256], 3)])
        with torch.inference_mode(), Count():
            engine.infer_batch([_request(eng, st, 257, m[256:257], 3)])
        out["ops_tick"] = Count.n / 3
    return out


def generate_seconds(env: dict, tmp: Path) -> float:
    """Seconds of ``python -m streammuse generate`` on a one-bar melody (C D E F, 120 BPM)."""
    import pretty_midi

    melody = tmp / "onebar.mid"
    if not melody.exists():
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        inst = pretty_midi.Instrument(0, name="melody")
        inst.notes += [pretty_midi.Note(90, p, i * 0.5, i * 0.5 + 0.5) for i, p in enumerate((60, 62, 64, 65))]
        pm.instruments.append(inst)
        pm.write(str(melody))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streammuse", "generate", str(melody), "--out", str(tmp / "acc.mid")],
                   env=env, cwd=tmp, check=True, capture_output=True)
    return time.perf_counter() - t


def unpack(rev: str, dest: Path) -> Path:
    """The package as it was at ``rev``, under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "old.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "streammuse"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="0318fae", help="git revision of the old engine")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--what", default="all")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.what, args.repeats)))
        return
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        paths = {"old": unpack(args.old, Path(tmp)), "new": ROOT}
        results: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for impl in (("old", "new") if r % 2 == 0 else ("new", "old")):
                env = {**os.environ, "PYTHONPATH": str(paths[impl]), "OMP_NUM_THREADS": "1"}
                done = subprocess.run([sys.executable, __file__, "--child", "--what", args.what,
                                       "--repeats", str(args.repeats)], env=env, capture_output=True, text=True,
                                      cwd=tmp)
                if done.returncode:
                    sys.exit(f"{impl} child failed:\n{done.stderr[-3000:]}")
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                if args.what == "all":
                    figures["generate_s"] = generate_seconds(env, Path(tmp))
                results[impl].append(figures)
                print(f"round {r + 1} {impl}: {results[impl][-1]}", flush=True)
    keys = list(results["new"][0])
    table = Table(title=f"engine: {args.old} (old) vs working tree (new), one thread, {args.rounds} rounds alternating")
    for col in ("figure", "old", "new", "new / old"):
        table.add_column(col, justify="right")
    for k in keys:
        old = float(np.median([x[k] for x in results["old"]]))
        new = float(np.median([x[k] for x in results["new"]]))
        table.add_row(k, f"{old:.1f}", f"{new:.1f}", f"{new / old:.2f}")
    Console().print(table)
    print("ms for gl3_*, ticks/s for offline, ops for ops_tick, s for generate_s; load average", os.getloadavg())


if __name__ == "__main__":
    main()
