"""`streammuse replay`: the test set through the real-time client, one run folder per (I, GL)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from streammuse.client.adaptive import AdaptiveSettings
from streammuse.experiment import config as xc
from streammuse.experiment import replay as rp
from streammuse.experiment import servers as xs


def replay(
    testset: Annotated[Path, typer.Argument(help="Test-set folder (one MIDI per song, tracks melody/accompaniment).")],
    setting: Annotated[str, typer.Option(help="local | local-server | remote | offline (the offline baseline).")] = "local",
    bpm: Annotated[float, typer.Option(help="Tempo; one tick is tau = 60000 / (4 BPM) ms.")] = 120.0,
    interval: Annotated[int, typer.Option("--interval", "-i", help="I: ticks between requests.")] = 2,
    gen_len: Annotated[int, typer.Option("--gen-len", "-g", help="GL: ticks asked for per request.")] = 5,
    server: Annotated[str | None, typer.Option(help="Server URL; default: start an embedded server and stop it after.")] = None,
    profile: Annotated[Path | None, typer.Option(help="Latency profile JSON; default: the shipped one for --setting.")] = None,
    clock: Annotated[str, typer.Option(help="wall (real time, real server) or sim (virtual clock, engine in process).")] = "wall",
    concurrency: Annotated[int, typer.Option(help="Songs playing at once (wall clock).")] = 4,
    songs: Annotated[int | None, typer.Option(help="Play the first N songs; 0 = all.")] = 8,
    max_bars: Annotated[int | None, typer.Option(help="Crop each song to B bars; 0 = whole songs.")] = 16,
    seed: Annotated[int, typer.Option(help="Seeds sampling and injected latency.")] = 0,
    sweep: Annotated[
        str | None,
        typer.Option(help='(I,GL) pairs, e.g. "1,3 2,5"; "paper": the paper\'s 8 pairs (Table III).'),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the newest run folder with these settings.")] = False,
    out: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    model: Annotated[Path | None, typer.Option(help="Checkpoint for --clock sim / offline; default: shipped.")] = None,
    server_time: Annotated[str, typer.Option(help="Sim clock: modelled (the profile's measured or paper server model) or measured (engine compute per batch here).")] = "modelled",
    front: Annotated[str, typer.Option(help="Sim clock: core (the session core directly) or http (the FastAPI app in process).")] = "core",
    servers: Annotated[str, typer.Option(help="Sim clock: shared (the songs playing at once share one replica) or per-song (each its own: the paper's single user).")] = "shared",
    random_weights: Annotated[bool, typer.Option(help="Random tiny weights instead of a checkpoint (tests, speed).")] = False,
    auto: Annotated[bool, typer.Option(help="Take (I, GL) from the planner for this profile and BPM (equation 3).")] = False,
    adaptive: Annotated[bool, typer.Option("--adaptive", help="Re-plan (I, GL) during each song from the client's own RTTs (equation 3), starting from --interval/--gen-len (or --auto's pair).")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run the sweep's configurations as Ray tasks (sim clock, offline).")] = False,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster for --ray (e.g. ray://head:10001); default: a local Ray instance.")] = None,
) -> None:
    """Replay the test set's melodies in real time and record what a listener would hear.

    Plays each melody against the model server (or, with --setting offline, the offline
    baseline) and writes one run folder per (I, GL): performance MIDI, request and tick
    logs. Ctrl-C keeps the finished songs and prints the --resume command that finishes."""
    if auto:
        interval, gen_len = _auto_pair(setting, profile, bpm, sweep)
    cfg = xc.ReplayConfig(
        testset=testset, setting=setting, bpm=bpm, interval=interval, gen_len=gen_len, server=server,
        profile=str(profile) if profile else None, clock=clock, concurrency=concurrency,
        songs=songs or None, max_bars=max_bars or None, seed=seed, out=out, resume=resume, server_time=server_time,
        front=front, servers=servers, adaptive=AdaptiveSettings() if adaptive else None,
    )
    pairs = _pairs(cfg, sweep)
    profile_obj = rp.resolve_profile(cfg)
    song_list = rp.load_songs(cfg)
    started: list[Path] = []  # run folders opened so far (for the Ctrl-C message)
    try:
        if ray or ray_address:
            results = _sweep_on_ray([cfg.with_pair(i, gl) for i, gl in pairs], len(song_list), model, random_weights,
                                    ray_address)
        else:
            results = _play(cfg, pairs, song_list, profile_obj, model, random_weights, started)
    except KeyboardInterrupt:
        typer.echo(interrupted_message(started, len(song_list), sys.argv[1:]), err=True)  # unwrapped: copyable
        raise typer.Exit(code=130) from None
    # Wide enough for every column when stdout is not a terminal (make, CI logs).
    Console(width=max(Console().width, 120)).print(summary_table(results))
    _warn_if_not_real_time(results, Console(stderr=True))


def _play(cfg, pairs, song_list, profile_obj, model, random_weights, started: list[Path]) -> list:
    """Every (I, GL) pair in turn under progress bars (ETA from the songs done so far)."""
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=False) as progress:
        total = progress.add_task("run", total=len(pairs) * len(song_list))
        with _backend(cfg, model, random_weights) as (engine, transport):
            for i, gl in pairs:
                pair_cfg = cfg.with_pair(i, gl)
                label = "offline" if cfg.setting == "offline" else f"{cfg.setting} I={i} GL={gl}"
                label += " adaptive" if cfg.adaptive is not None else ""
                task = progress.add_task(f"  {label}", total=len(song_list))

                def tick(name: str, task=task) -> None:
                    progress.advance(task)
                    progress.advance(total)

                results.append(_run_pair(pair_cfg, engine, transport, song_list, profile_obj, tick, progress, task,
                                         total, started))
    return results


def interrupted_message(started: list[Path], n_songs: int, argv: list[str]) -> str:
    """What a Ctrl-C kept (finished songs per run folder; songs still playing are dropped)
    and the command that finishes the run (the same one with ``--resume``)."""
    lines = ["interrupted."]
    for path in started:
        done = len(list((path / "done").iterdir())) if (path / "done").is_dir() else 0
        lines.append(f"  kept {done} of {n_songs} songs in {path} (songs still playing are not kept)")
    if not started:
        lines.append("  nothing was kept: no run folder had been started")
    args = argv if "--resume" in argv else [*argv, "--resume"]
    lines.append("finish it with:")
    lines.append("  " + shlex.join(["streammuse", *args]))
    return "\n".join(lines)


def _auto_pair(setting: str, profile: Path | None, bpm: float, sweep: str | None) -> tuple[int, int]:
    """The planner's recommended (I, GL) for the run's latency profile (``streammuse plan``)."""
    from streammuse.errors import StreamMuseError
    from streammuse.planner import recommend

    if sweep:
        raise StreamMuseError("--auto picks one (I, GL) pair; it cannot be combined with --sweep")
    if setting == "offline":
        raise StreamMuseError("--auto plans for a latency profile; the offline baseline has none")
    interval, gen_len = recommend(str(profile) if profile else setting, bpm)
    Console(stderr=True).print(f"--auto: the planner recommends I={interval}, GL={gen_len} at {bpm:g} BPM")
    return interval, gen_len


def _run_pair(cfg, engine, transport, song_list, profile, tick, progress, task, total, started):
    model_id = str(getattr(engine, "model_id", None) or getattr(transport, "model_id", None) or cfg.server or "embedded")
    writer = rp.open_run(cfg, profile, song_list, model_id)
    started.append(writer.path)
    already = len(writer.done_songs() & {s.name for s in song_list})
    progress.advance(task, already)
    progress.advance(total, already)
    path, lateness = rp.run_pair(cfg, song_list, profile, engine=engine, transport=transport, model_id=model_id,
                                 progress=tick, watch=_SongBars(progress), writer=writer)
    return cfg, path, lateness


def _pairs(cfg: xc.ReplayConfig, sweep: str | None) -> list[tuple[int, int]]:
    """The (I, GL) pairs to run, each checked (the offline baseline is (1, 1))."""
    pairs = [(1, 1)] if cfg.setting == "offline" else xc.parse_sweep(sweep) or [(cfg.interval, cfg.gen_len)]
    for i, gl in pairs:
        cfg.with_pair(i, gl).validate()
    return pairs


def _sweep_on_ray(configs, n_songs: int, model, random_weights: bool, ray_address) -> list:
    """Configurations as Ray tasks: a bar per configuration and one for all, with an ETA."""
    from streammuse.experiment.sweep import run_sweep_on_ray

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        total = progress.add_task("sweep on Ray", total=len(configs))
        bars = {id(c): progress.add_task(f"  {c.setting} I={c.interval} GL={c.gen_len}", total=1) for c in configs}

        def done(cfg, path) -> None:
            progress.advance(bars[id(cfg)])
            progress.advance(total)

        paths = run_sweep_on_ray(configs, n_songs, str(model) if model else None, random_weights, ray_address, done)
    return [(c, p, []) for c, p in zip(configs, paths)]


def _warn_if_not_real_time(results, console: Console) -> None:
    """Say plainly when a wall-clock run's machine could not keep time (its manifest)."""
    import json

    for _, path, _ in results:
        try:
            health = json.loads((path / "manifest.json").read_text()).get("realtime_health")
        except (OSError, ValueError):
            continue
        if not health:
            continue
        if not health["kept_real_time"]:
            console.print(f"[yellow]warning: {path.name}: this machine could not keep real time ({health['reason']}); "
                          "its ISR measures the machine as much as the model[/]")
        limit = _server_limit(path)
        if limit:
            console.print(f"[yellow]warning: {path.name}: {limit}[/]")


def _server_limit(path):
    """The server-side cause of a slow wall-clock run, from its requests (None if none)."""
    import json

    import pandas as pd

    from streammuse.contract import tau_ms
    from streammuse.experiment.health import server_limit

    try:
        reqs = pd.read_parquet(path / "requests.parquet", columns=["inference_ms", "queue_ms", "interval", "status"])
        bpm = json.loads((path / "manifest.json").read_text())["bpm"]
    except (OSError, ValueError, KeyError):
        return None
    answered = reqs[reqs.status.isin(["ok", "late"])]
    if answered.empty:
        return None
    return server_limit(answered.inference_ms, answered.queue_ms, int(answered.interval.median()), tau_ms(bpm))


class _SongBars:
    """One progress bar per song playing on the wall clock (ticks played / ticks)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, playing) -> None:
        names = {ws.client.name for ws in playing}
        for name in list(self.tasks):
            if name not in names:
                self.progress.remove_task(self.tasks.pop(name))
        for ws in playing:
            c = ws.client
            if c.name not in self.tasks:
                self.tasks[c.name] = self.progress.add_task(f"    {c.name}", total=c.n_ticks)
            self.progress.update(self.tasks[c.name], completed=c.player.buffer.next_tick)


class _backend:
    """The engine (sim clock, offline) or the transport (wall clock) for the whole command."""

    def __init__(self, cfg: xc.ReplayConfig, model: Path | None, random_weights: bool) -> None:
        self.cfg, self.model, self.random_weights, self._cm = cfg, model, random_weights, None

    def __enter__(self):
        if self.cfg.setting == "offline" or self.cfg.clock == "sim":
            from streammuse.model.threads import configure_threads

            if self.cfg.clock == "sim" and self.cfg.server_time == "measured" and self.cfg.setting != "offline":
                import torch

                from streammuse.serving.embedded import client_threads

                torch.set_num_threads(client_threads())  # time batches as the embedded server runs them
            else:
                configure_threads()  # before torch loads: no real-time need, so only the free cores
            from streammuse.model.engine import StreamingEngine

            if self.random_weights:
                return StreamingEngine.random("tiny", seed=self.cfg.seed), None
            return StreamingEngine.load(path=self.model), None
        self._cm = xs.open_transport(self.cfg, self.model, self.random_weights)
        transport = self._cm.__enter__()
        try:
            transport.model_id = xs.check_server(transport, self.cfg) or None
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise
        return None, transport

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc) if self._cm is not None else False


def summary_table(results) -> Table:
    """One row per run: ISR, Staleness, ISR_w (section V-D), request outcomes, jitter."""
    table = Table(title="streammuse replay")
    for col in ("setting", "I", "GL", "songs", "ISR", "Staleness", "ISR_w", "ok/late/sup/exp/fail", "tick p99 ms"):
        table.add_column(col, justify="left" if col == "setting" else "right", no_wrap=True, min_width=min(len(col), 6))
    for cfg, path, lateness in results:
        if not (path / "ticks.parquet").is_file():
            table.add_row(cfg.setting, str(cfg.interval), str(cfg.gen_len), "0", *["-"] * 5)
            continue
        ticks = pd.read_parquet(path / "ticks.parquet")
        reqs = pd.read_parquet(path / "requests.parquet")
        m = rp.realtime_summary(ticks)
        counts = reqs["status"].value_counts()
        outcome = "/".join(str(int(counts.get(k, 0))) for k in ("ok", "late", "superseded", "expired", "failed"))
        jitter = f"{np.percentile(lateness, 99):.2f}" if lateness else "-"
        setting = cfg.setting if cfg.adaptive is None else f"{cfg.setting} adaptive (from)"
        table.add_row(setting, str(cfg.interval), str(cfg.gen_len), str(ticks["song"].nunique()),
                      f"{m['isr']:.4f}", f"{m['staleness']:.3f}", f"{m['isr_w']:.4f}", outcome, jitter)
    table.caption = "runs: " + ", ".join(str(path) for _, path, _ in results)
    return table


def register(app: typer.Typer) -> None:
    """Add `replay` to the streammuse app."""
    app.command("replay")(replay)


__all__ = ["register", "replay", "summary_table"]
