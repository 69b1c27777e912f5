"""Instructions one engine request executes, counted by valgrind's callgrind: repeatable
whatever else the machine does (unlike seconds), so the old and new engines compare on a
busy machine. Runs each engine (the old one from a git revision) under
``valgrind --tool=callgrind --instr-atstart=no``; the child switches instrumentation on
(``callgrind_control -i on``) only around ``--requests`` GL = 3 requests at B = 1 after a
256-tick history, so imports and loading are not counted.

Run: ``.venv/bin/python bench/engine_instructions.py [--old 0318fae] [--requests 3]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def child(requests: int, sessions: int) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import streammuse.model.engine as eng
    from engine_ab import _request
    from streammuse.datasets.frames import song_to_frames
    from streammuse.datasets.testset import load_testset
    from streammuse.model.sampling import Sampling

    engine = eng.StreamingEngine.load()
    m = np.concatenate([song_to_frames(s)[0] for s in load_testset(ROOT / "testset")[:4]])
    states = [engine.new_session(Sampling(seed=i)) for i in range(sessions)]
    engine.infer_batch([_request(eng, st, 256, m[:256], 3) for st in states])
    engine.infer_batch([_request(eng, st, 257, m[256:257], 3) for st in states])  # warm
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    time.sleep(0.5)
    for r in range(requests):
        s = 258 + r
        engine.infer_batch([_request(eng, st, s, m[s - 1 : s], 3) for st in states])
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


def count(pythonpath: Path, requests: int, sessions: int, tmp: Path) -> int:
    out = tmp / f"cg.{pythonpath.name}.{sessions}.out"
    env = {**os.environ, "PYTHONPATH": f"{pythonpath}:{ROOT / 'bench'}", "OMP_NUM_THREADS": "1"}
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--child", "--requests", str(requests), "--sessions", str(sessions)],
                   env=env, check=True, capture_output=True, cwd=tmp)
    text = "".join(p.read_text(errors="replace") for p in tmp.glob(f"{out.name}*"))
    return sum(int(x) for x in re.findall(r"^(?:summary|totals): (\d+)", text, re.M))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default="0318fae")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--sessions", default="1,8")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.requests, int(args.sessions))
        return
    from engine_ab import unpack

    with tempfile.TemporaryDirectory() as tmp:
        old = unpack(args.old, Path(tmp) / "old")
        for b in [int(x) for x in args.sessions.split(",")]:
            n_old = count(old, args.requests, b, Path(tmp))
            n_new = count(ROOT, args.requests, b, Path(tmp))
            print(f"B = {b}: instructions per GL = 3 request: old {n_old / args.requests / 1e6:.1f} M, "
                  f"new {n_new / args.requests / 1e6:.1f} M, new / old {n_new / n_old:.2f}", flush=True)


if __name__ == "__main__":
    main()
