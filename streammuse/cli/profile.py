"""`streammuse profile`: measure RTT per GL against a real server and write a latency profile."""

from __future__ import annotations

import contextlib
import json
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
    """The transport to measure: ``--server URL`` (``http://host:port`` or ``ipc://PATH``),
    ``--server inprocess`` (the engine called in this process: inference alone, no
    server), or by default an embedded IPC server started here and stopped afterwards
    (the network part is injected either way, so a local server is what is measured)."""
    if server == "inprocess":
        from streammuse.client.inprocess import InProcessTransport
        from streammuse.model.engine import StreamingEngine

        engine = StreamingEngine.random("tiny") if random_weights else StreamingEngine.load(path=checkpoint)
        transport = InProcessTransport(engine)
        try:
            yield transport
        finally:
            transport.close()
        return
    from streammuse.serving import transport as tr

    if server is not None:
        transport = tr.connect(server)
        try:
            yield transport
        finally:
            transport.close()
        return
    with tr.start_embedded("ipc", checkpoint=checkpoint, random_weights=random_weights) as transport:
        yield transport


def profile(
    gen_lens: Annotated[str, typer.Option(help="GLs to sweep: a range 1-16 and/or a list 1,2,4.")] = "1-16",
    samples: Annotated[int, typer.Option(help="Requests per GL (after 2 warm-up requests).")] = 1000,
    server: Annotated[str | None, typer.Option(help="Server URL (http://host:port or ipc://PATH), or inprocess (the engine in this process); default: an embedded IPC server.")] = None,
    setting: Annotated[str, typer.Option(help="Latency profile whose network delay is injected client-side (name or JSON).")] = "local",
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint for the embedded or in-process engine; default: the shipped one.")] = None,
    random_weights: Annotated[bool, typer.Option(help="Embedded/in-process engine with untrained weights of the shipped size (timing only).")] = False,
    song: Annotated[Path | None, typer.Option(help="MIDI whose melody is fed, one frame per request; default: silence.")] = None,
    bpm: Annotated[float, typer.Option(help="BPM the sessions are opened with.")] = 120.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the injected delays.")] = 0,
    sleep: Annotated[bool, typer.Option(help="Really wait out the injected network delay instead of adding it.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the profile JSON here (and the raw samples next to it as .parquet).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a Fig. 3 style PNG here.")] = None,
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
    where = server or "embedded IPC server"
    if random_weights:
        where += " (untrained weights)"
    description = (
        f"measured by `streammuse profile` on {platform.node()} "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC) against {where}, network of profile "
        f"{latency.name!r} injected; {samples} samples per GL, GL {settings.gen_lens[0]}-{settings.gen_lens[-1]}"
    )
    result, warnings = build_profile(table, name=f"{latency.name}-measured", description=description)
    console.print(_summary(table))
    fit = result["rtt_fit"]
    for key in ("mean", "p95"):
        console.print(f"f_{key}(GL) = {fit[key]['a']:.4g} GL^2 + {fit[key]['b']:.4g} GL + {fit[key]['c']:.4g} ms")
    if result["network"]:
        net = result["network"]
        console.print(f"network: nu = {net['nu_ms']:.2f} ms, x_min = {net['x_min_ms']:.2f} ms, alpha = {net['alpha']:.3f}")
    for warning in warnings:
        console.print(f"[yellow]warning: {warning}[/]")
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n")
        table.to_parquet(out.with_suffix(".parquet"), index=False)
        console.print(f"wrote {out} and {out.with_suffix('.parquet')}")
    if plot is not None:
        from streammuse.planner.plots import plot_rtt_fit
        from streammuse.planner.rtt_model import QuadraticFit, RttFit

        rtt_fit = RttFit(QuadraticFit.from_dict(fit["mean"]), QuadraticFit.from_dict(fit["p95"]))
        plot_rtt_fit(table["gen_len"].to_numpy(), table["rtt_ms"].to_numpy(), rtt_fit, plot, title=f"RTT vs GL: {where}, {latency.name}")
        console.print(f"wrote {plot}")


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
