"""The gate's fixed evaluation: a few test songs, cropped, seeded, on the sim clock.

Configurations (``GateConfig.configurations``): the offline baseline (I = 1, GL = 1, no
latency) and sim-clock replays under shipped latency profiles with a modelled server time
(``server_model`` of the profile), so the event log depends on the seeds alone, not on
this machine's speed. Every configuration's run folder is written as ``streammuse
replay`` writes it, then scored: real-time metrics (ISR, Staleness, ISR_w; paper V-D)
from ``ticks.parquet`` and music metrics of the performance against the test set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from streammuse.errors import StreamMuseError

# (setting, I, GL, front). The remote pair is the planner's recommendation at 120 BPM
# (`streammuse plan --profile remote --bpm 120`). The local one goes through the real
# HTTP app in process (front "http"), so CI runs the code `serve` ships, on the virtual
# clock with the server time measured on the dev machine (the shipped local profile).
DEFAULT_CONFIGURATIONS: tuple[tuple[str, int, int, str], ...] = (
    ("offline", 1, 1, "core"),
    ("local", 1, 2, "http"),
    ("remote", 2, 4, "core"),
)


@dataclass(frozen=True)
class GateConfig:
    """Everything that fixes the gate's evaluation (stored in the baseline)."""

    testset: Path = Path("testset")
    # Small on purpose: the whole gate must stay well under 2 minutes on 2 CPU cores.
    songs: int = 8
    max_bars: int = 8
    bpm: float = 120.0
    seed: int = 0
    concurrency: int = 4  # songs sharing the virtual replica, as the main job's replay
    configurations: tuple[tuple[str, int, int, str], ...] = DEFAULT_CONFIGURATIONS
    sampling: dict = field(default_factory=lambda: {"temperature": 1.0, "top_k": 0, "top_p": 0.95})

    def to_dict(self) -> dict:
        """JSON form (paths as strings, pairs as lists)."""
        data = asdict(self)
        data["testset"] = str(self.testset)
        data["configurations"] = [list(c) for c in self.configurations]
        return data


def configuration_name(setting: str, interval: int, gen_len: int) -> str:
    """``offline`` or ``<setting>-I<I>-GL<GL>``: the prefix of its metric names."""
    return "offline" if setting == "offline" else f"{setting}-I{interval}-GL{gen_len}"


def _replay_config(cfg: GateConfig, setting: str, interval: int, gen_len: int, front: str, out: Path):
    from streammuse.contract import SamplingSettings
    from streammuse.experiment.config import ReplayConfig

    return ReplayConfig(
        testset=cfg.testset, setting=setting, bpm=cfg.bpm, interval=interval, gen_len=gen_len, clock="sim",
        songs=cfg.songs, max_bars=cfg.max_bars, seed=cfg.seed, out=out, server_time="modelled", front=front,
        concurrency=cfg.concurrency, sampling=SamplingSettings(**cfg.sampling),
    )


def replay_configuration(rcfg, engine, songs, client_factory=None) -> Path:
    """One configuration's run folder (offline or sim clock), by ``experiment.run_pair``:
    the same code as `streammuse replay --clock sim`, so a gate figure reproduces there.

    ``client_factory(name, melody_frames, I, GL, tau_ms)`` builds each song's client
    (default ``SongClient``); the gate's own tests pass one that drops every response.
    """
    from streammuse.experiment.replay import resolve_profile, run_pair

    path, _ = run_pair(rcfg, songs, resolve_profile(rcfg), engine=engine,
                       model_id=str(getattr(engine, "model_id", "unknown")), client_factory=client_factory)
    return path


def density_metric(run_dir: Path) -> dict[str, float]:
    """Accompaniment notes per played tick: a model that has gone silent (or a client
    that plays nothing) shows here before any harmony metric can."""
    from streammuse.metrics.evaluate import read_performance

    import pandas as pd

    ticks = len(pd.read_parquet(run_dir / "ticks.parquet", columns=["tick"]))
    notes = sum(len(read_performance(p).accompaniment) for p in sorted((run_dir / "songs").glob("*.mid")))
    return {"notes_per_tick": notes / ticks if ticks else float("nan")}


def score_run(run_dir: Path, engine) -> dict[str, float]:
    """Every metric of ``streammuse evaluate`` but FMD, plus notes per tick. Offline runs
    have no system metrics."""
    from streammuse.metrics.evaluate import SYSTEM_KEYS, evaluate_run

    # FMD needs a covariance over many segments; the gate's few bars give NaN, so it is
    # left to `streammuse evaluate` on full runs.
    summary = evaluate_run(run_dir, engine=engine, with_nll=True, with_fmd=False)
    if summary["problems"]:
        raise StreamMuseError(f"gate run {run_dir.name} could not be scored: {'; '.join(summary['problems'])}")
    metrics = {k: (math.nan if v is None else float(v)) for k, v in summary["metrics"].items() if k != "fmd"}
    if summary["setting"] == "offline":
        metrics = {k: v for k, v in metrics.items() if k not in SYSTEM_KEYS}
    metrics.update(density_metric(run_dir))
    return metrics


def run_gate(cfg: GateConfig, engine, out: Path, client_factory=None) -> dict[str, float]:
    """Run every configuration into ``out`` and return ``{"<configuration>/<metric>": value}``."""
    from streammuse.experiment.replay import load_songs

    songs = None
    results: dict[str, float] = {}
    for setting, interval, gen_len, front in cfg.configurations:
        rcfg = _replay_config(cfg, setting, interval, gen_len, front, out)
        rcfg.validate()
        songs = songs or load_songs(rcfg)
        run_dir = replay_configuration(rcfg, engine, songs, client_factory)
        name = configuration_name(setting, interval, gen_len)
        results.update({f"{name}/{k}": v for k, v in score_run(run_dir, engine).items()})
    if not results:
        raise StreamMuseError("the gate has no configurations to run")
    if hasattr(engine, "runner"):  # the shipped engine: its efficiency, counted
        from streammuse.datasets.frames import song_to_frames
        from streammuse.model.opcount import engine_metrics

        melody = np.concatenate([song_to_frames(s)[0] for s in songs])
        results.update({f"engine/{k}": v for k, v in engine_metrics(engine, melody).items()})
    return {k: (round(v, 6) if np.isfinite(v) else v) for k, v in results.items()}
