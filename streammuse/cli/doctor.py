"""`streammuse doctor`: measure this machine in under a minute and say what to expect
from the main job and from `serve` here, beside the figures the README was written with.

It times the same code the commands run: the engine's GL = 3 request at a long session's
history, the capacity `serve` measures through the replica's app (T(B), then B*), and the
main job's server step (four Local sessions asking I = 2, GL = 5 at once). The HTTP-path
probe `serve` adds on top (Ray's proxy) is not run: it needs Ray and a minute more.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import typer
from rich.console import Console
from rich.table import Table

# What the README's headline table says, with the machine it was measured on
# (docs/benchmarks.md has the commands); a reader's machine is compared with these.
REFERENCE_MACHINE = "the 2-core dev machine (AMD EPYC, no GPU), 2026-12-04"
REFERENCE = {"gl3_ms": 23.0, "capacity": 7, "main_step_ms": 125.0}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gl3_ms(engine, repeats: int = 15) -> float:
    """Median ms of a GL = 3 request at B = 1, I = 1, a minute into a song."""
    from streammuse.datasets.frames import empty_frames
    from streammuse.model.engine import Sampling

    history = engine.config.steady_context_ticks
    melody = empty_frames(history + repeats + 1)
    melody[::3, 0] = 3 + 39 * 15  # a note every third tick: C4, shortest duration
    melody[::3, 1] = 1
    state = engine.new_session(Sampling(seed=0))
    engine.infer(state, history, melody[:history], 3)
    times = []
    for r in range(1, repeats + 1):
        s = history + r
        t = time.perf_counter()
        engine.infer(state, s, melody[s - 1 : s], 3)
        times.append((time.perf_counter() - t) * 1000)
    engine.release(state)
    return statistics.median(times)


def doctor() -> None:
    """Measure this machine and say what to expect from the main job and `serve` here."""
    from streammuse.contract import tau_ms
    from streammuse.model.threads import configure_threads

    console = Console(highlight=False)
    choice = configure_threads()
    from streammuse.model.engine import StreamingEngine
    from streammuse.serving.app import create_app
    from streammuse.serving.capacity import Plan, ladder, sessions_for
    from streammuse.serving.capacity_probe import measure_step_ms

    started = time.monotonic()
    load = os.getloadavg()[0]
    console.print(f"machine: {os.cpu_count()} cores, {_cpu_model()}, load average {load:.2f}, "
                  f"torch threads {choice.threads} ({choice.reason})")
    engine = StreamingEngine.load()
    gl3 = _gl3_ms(engine)
    plan = Plan()
    table = measure_step_ms(engine, plan, ladder(8), create_app)
    capacity = sessions_for(table, plan, 8)
    main = Plan(interval=2, gen_len=5)
    step = measure_step_ms(engine, main, [4], create_app)[4]
    rows = Table(title="this machine against the README's figures")
    for col in ("figure", "here", "README", "what it means here"):
        rows.add_column(col, justify="left" if col in ("figure", "what it means here") else "right")
    rows.add_row("GL = 3 request, B = 1 (ms)", f"{gl3:.1f}", f"{REFERENCE['gl3_ms']:.1f}",
                 f"{'faster' if gl3 < REFERENCE['gl3_ms'] else 'slower'} by {max(gl3, REFERENCE['gl3_ms']) / min(gl3, REFERENCE['gl3_ms']):.2f}x")
    rows.add_row("`serve` capacity, app path, I = 1, GL = 3 (sessions, of at most 8)", str(capacity), str(REFERENCE["capacity"]),
                 "T(B) ms: " + ", ".join(f"{b}: {t:.0f}" for b, t in table.items()))
    budget = main.interval * tau_ms(120.0)
    verdict = ("keeps real time: expect the README's Local ISR_w" if step <= 0.8 * budget else
               "tight: answers arrive late but mostly in time, expect a lower ISR_w" if step <= budget else
               "cannot keep real time here: expect a low ISR_w")
    rows.add_row("main job server step, 4 x GL 5 (ms)", f"{step:.0f}", f"{REFERENCE['main_step_ms']:.0f}",
                 f"{verdict} (budget I x tau = {budget:.0f} ms)")
    console.print(rows)
    console.print(f"README figures: {REFERENCE_MACHINE}. {time.monotonic() - started:.0f} s. "
                  "A machine under load measures lower; run it again when idle.")


def register(app: typer.Typer) -> None:
    """Add `doctor` to the streammuse app."""
    app.command("doctor")(doctor)
