"""`streammuse profile`: measure RTT per GL against a real server and write a latency profile."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from streammuse.errors import StreamMuseError
from streammuse.planner.profiler import ProfileSettings, build_profile, measure_rtt, parse_gen_lens, summary_table


def melody_for(song: Path | None) -> np.ndarray:
    """The melody frames fed one per request: a song's, or one silent frame."""
    from streammuse.datasets.frames import empty_frames, song_to_frames

    if song is None:
        return empty_frames(1)
    from streammuse.datasets.skyline import load_song

    melody, _, _ = song_to_frames(load_song(song))
    return melody if len(melody) else empty_frames(1)


@contextlib.contextmanager
def open_transport(server: str | None, checkpoint: Path | None, random_weights: bool):
    """The transport to measure: ``--server URL`` (``http://host:port`` or
    ``unix:///PATH``), ``--server inprocess`` (the session core in this process: no
    server, no HTTP), or by default the embedded Local server (the app on a Unix socket)
    started here and stopped afterwards (the network part is injected either way, so a
    local server is what is measured)."""
    from streammuse.client.transports import InProcessTransport, connect
    from streammuse.serving.embedded import start_server

    embedded = None
    if server == "inprocess":
        from streammuse.core.sessions import SessionCore
        from streammuse.model.engine import StreamingEngine

        engine = StreamingEngine.random("tiny") if random_weights else StreamingEngine.load(path=checkpoint)
        transport = InProcessTransport(SessionCore(engine))
    else:
        if server is None:
            embedded = start_server("local", checkpoint=str(checkpoint) if checkpoint else None, random_weights=random_weights)
        transport = connect(server or embedded.url)
    try:
        yield transport
    finally:
        transport.close()
        if embedded is not None:
            embedded.stop()


def profile(
    gen_lens: Annotated[str, typer.Option(help="GLs to sweep: a range 1-16 and/or a list 1,2,4.")] = "1-16",
    samples: Annotated[int, typer.Option(help="Requests per GL (after 2 warm-up requests).")] = 1000,
    server: Annotated[str | None, typer.Option(help="Server URL (http://host:port or unix:///PATH), or inprocess (the session core in this process); default: the embedded Local server.")] = None,
    setting: Annotated[str, typer.Option(help="Latency profile whose network delay is injected client-side (name or JSON).")] = "local",
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint for the embedded or in-process engine; default: the shipped one.")] = None,
    random_weights: Annotated[bool, typer.Option(help="Embedded/in-process engine with untrained weights of the shipped size (timing only).")] = False,
    song: Annotated[Path | None, typer.Option(help="MIDI whose melody is fed, one frame per request; default: silence.")] = None,
    bpm: Annotated[float, typer.Option(help="BPM the sessions are opened with.")] = 120.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the injected delays.")] = 0,
    sleep: Annotated[bool, typer.Option(help="Really wait out the injected network delay instead of adding it.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the profile JSON here (and the raw samples next to it as .parquet).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a Fig. 3 style PNG here.")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Batch sizes B timed in this process for the server model's batch_slope ('' to skip).")] = "1,2,4,8",
    name: Annotated[str | None, typer.Option(help="The profile's name; default: <setting>-measured.")] = None,
) -> None:
    """Measure RTT(GL) and its parts, fit f, f95 and the Pareto network model (paper V-B)."""
    from streammuse.client.latency import LatencyInjector, load_profile

    settings = ProfileSettings(gen_lens=parse_gen_lens(gen_lens), samples=samples, bpm=bpm, seed=seed, sleep=sleep)
    if samples < 20:
        raise StreamMuseError(f"--samples must be >= 20 for a p95 fit, got {samples}")
    latency = load_profile(setting)
    melody = melody_for(song)
    console = Console(highlight=False, soft_wrap=True)
    total = len(settings.gen_lens) * (samples + 2)
    with open_transport(server, checkpoint, random_weights) as transport, Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"profiling {len(settings.gen_lens)} GLs", total=total)
        table = measure_rtt(
            transport, settings, melody, LatencyInjector(latency, seed), on_request=lambda: progress.advance(task)
        )
    where = server or "embedded Local server"
    if random_weights:
        where += " (untrained weights)"
    description = (
        f"measured by `streammuse profile` on {platform.node()} "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC) against {where}, network of profile "
        f"{latency.name!r} injected; {samples} samples per GL, GL {settings.gen_lens[0]}-{settings.gen_lens[-1]}"
    )
    source = {"kind": "measured", "detail": "streammuse " + " ".join(sys.argv[1:]), "machine": _machine(),
              "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}
    result, warnings = build_profile(table, name=name or f"{latency.name}-measured", description=description, source=source)
    if batch_sizes.strip() and server in (None, "inprocess"):
        beta = _batch_slope(batch_sizes, checkpoint, random_weights, melody, console)
        result["server_model"]["batch_slope"] = beta
    console.print(_summary(table))
    fit = result["rtt_fit"]
    for key in ("mean", "p95"):
        console.print(f"f_{key}(GL) = {fit[key]['a']:.4g} GL^2 + {fit[key]['b']:.4g} GL + {fit[key]['c']:.4g} ms")
    if result["network"]:
        net = result["network"]
        console.print(f"network: nu = {net['nu_ms']:.2f} ms, x_min = {net['x_min_ms']:.2f} ms, alpha = {net['alpha']:.3f}")
    for warning in warnings:
        console.print(f"[yellow]warning: {warning}[/]")
    _write(result, table, out, plot, f"RTT vs GL: {where}, {latency.name}", console)


def _write(result: dict, table, out: Path | None, plot: Path | None, title: str, console) -> None:
    """The profile JSON (+ raw samples as Parquet) and the Fig. 3 plot, where asked."""
    fit = result["rtt_fit"]
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
        table.to_parquet(out.with_suffix(".parquet"), index=False)
        console.print(f"wrote {out} and {out.with_suffix('.parquet')}")
    if plot is not None:
        from streammuse.planner.plots import plot_rtt_fit
        from streammuse.rtt import QuadraticFit, RttFit

        rtt_fit = RttFit(QuadraticFit.from_dict(fit["mean"]), QuadraticFit.from_dict(fit["p95"]))
        plot_rtt_fit(table["gen_len"].to_numpy(), table["rtt_ms"].to_numpy(), rtt_fit, plot, title=title)
        console.print(f"wrote {plot}")


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()}, {os.cpu_count()} CPUs, load {load:.2f} at start"


def _batch_slope(text: str, checkpoint: Path | None, random_weights: bool, melody, console) -> float:
    """beta of the server model, timed with the engine in this process (as many torch
    threads as the embedded Local server uses)."""
    import torch

    from streammuse.model.engine import StreamingEngine
    from streammuse.planner.profiler import measure_batch_slope
    from streammuse.serving.embedded import client_threads

    sizes = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    torch.set_num_threads(client_threads())
    engine = StreamingEngine.random("tiny") if random_weights else StreamingEngine.load(path=checkpoint)
    beta, table = measure_batch_slope(engine, melody, batch_sizes=sizes)
    means = table.groupby("batch_size")["compute_ms"].mean()
    console.print("batch compute ms (GL 4): " + ", ".join(f"B={b}: {v:.1f}" for b, v in means.items())
                  + f"; batch_slope = {beta:.3f}")
    return beta


def _summary(table) -> Table:
    out = Table(title="RTT per GL (ms)")
    for name in ("GL", "n", "mean", "p95", "inference", "queue", "network"):
        out.add_column(name, justify="right")
    for gl, row in summary_table(table).iterrows():
        out.add_row(
            str(gl), str(int(row["n"])), f"{row['rtt_mean']:.1f}", f"{row['rtt_p95']:.1f}",
            f"{row['inference_mean']:.1f}", f"{row['queue_mean']:.1f}", f"{row['network_mean']:.1f}",
        )
    return out


def register(app: typer.Typer) -> None:
    """Add `profile` to the streammuse app."""
    app.command("profile")(profile)
