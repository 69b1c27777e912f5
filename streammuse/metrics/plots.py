"""PNG figures for `streammuse report --plots DIR` (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from streammuse.datasets.song import DURATION, ONSET, PITCH
from streammuse.errors import StreamMuseError

STATUS_COLOURS = {"fresh": "#2e7d32", "backup": "#f9a825", "miss": "#c62828"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_bars(rows, out: Path) -> Path:
    """ISR_w and CR per (I, GL) configuration, one bar per setting (offline CR as a line)."""
    plt = _pyplot()
    ours = [r for r in rows if r.source == "ours" and not r.adaptive]  # adaptive rows have no one pair
    configs = sorted({(r.interval, r.gen_len) for r in ours if not r.offline})
    settings = sorted({r.setting for r in ours if not r.offline})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    width = 0.8 / max(len(settings), 1)
    x = np.arange(len(configs))
    for ax, key, name in zip(axes, ("isr_w", "cr"), ("ISR_w", "CR")):
        for k, setting in enumerate(settings):
            by_config = {(r.interval, r.gen_len): r.metrics.get(key) for r in ours if r.setting == setting}
            vals = [by_config.get(c) for c in configs]
            ax.bar(x + k * width - 0.4 + width / 2, [np.nan if v is None else v for v in vals], width, label=setting)
        offline = [r.metrics.get(key) for r in ours if r.offline and r.metrics.get(key) is not None]
        if offline:
            ax.axhline(offline[0], color="black", linestyle="--", linewidth=1, label="offline")
        ax.set_xticks(x, [f"({i}, {gl})" for i, gl in configs])
        ax.set_xlabel("(I, GL)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{name} per configuration")
    axes[0].legend(loc="lower left", fontsize=8)
    path = out / "isr_w_cr.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def tick_status(ticks: pd.DataFrame) -> np.ndarray:
    """Per tick: ``fresh`` (newest response), ``backup`` (an older response), ``miss``."""
    available = ticks["available"].to_numpy() == 1
    fresh = ticks["fresh"].to_numpy().astype(bool)
    return np.where(~available, "miss", np.where(fresh, "fresh", "backup"))


def piano_roll(run: Path, song: str | None, out: Path) -> Path:
    """One song's performance: melody in grey, accompaniment coloured by the status of the
    tick it starts on (fresh / backup used), misses as red bands along the time axis."""
    from streammuse.metrics.evaluate import read_performance

    try:
        ticks = pd.read_parquet(run / "ticks.parquet")
    except (OSError, ValueError):
        raise StreamMuseError(f"{run}: no readable ticks.parquet for the piano roll") from None
    names = sorted(ticks["song"].unique())
    if not names:
        raise StreamMuseError(f"{run}: ticks.parquet is empty")
    song = song or names[0]
    if song not in names:
        raise StreamMuseError(f"{run}: no song {song!r} in ticks.parquet")
    perf = read_performance(run / "songs" / f"{song}.mid")
    t = ticks[ticks["song"] == song].sort_values("tick")
    status = dict(zip(t["tick"].to_numpy(), tick_status(t)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4.5), constrained_layout=True)
    for onset, dur, pitch in perf.melody.tolist():
        ax.broken_barh([(onset, dur)], (pitch - 0.4, 0.8), color="#9e9e9e")
    for kind in ("fresh", "backup"):
        notes = [n for n in perf.accompaniment.tolist() if status.get(n[ONSET]) == kind]
        for onset, dur, pitch in notes:
            ax.broken_barh([(onset, dur)], (pitch - 0.4, 0.8), color=STATUS_COLOURS[kind])
    low = min([n[PITCH] for n in perf.melody.tolist() + perf.accompaniment.tolist()] or [48]) - 3
    misses = [tick for tick, s in status.items() if s == "miss"]
    ax.broken_barh([(m, 1) for m in misses], (low - 2, 2), color=STATUS_COLOURS["miss"])
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#9e9e9e", *STATUS_COLOURS.values())]
    ax.legend(handles, ["melody (true)", "accompaniment, fresh frame", "accompaniment, backup used", "miss (I(t) = 0)"],
              loc="upper right", fontsize=8)
    ax.set_xlabel("tick (1/16 note)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(f"{run.name}: {song}")
    path = out / f"pianoroll-{run.name}-{song}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def adaptive_timeline(run: Path, song: str | None, out: Path) -> Path:
    """An adaptive run over one song: each request's RTT and the client's estimate
    f95_hat(GL) at send time (top), the pair (I, GL) in force (bottom)."""
    plt = _pyplot()
    reqs, ticks = pd.read_parquet(run / "requests.parquet"), pd.read_parquet(run / "ticks.parquet")
    song = song or sorted(ticks["song"].unique())[0]
    reqs, ticks = reqs[reqs["song"] == song], ticks[ticks["song"] == song]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, constrained_layout=True)
    top.scatter(reqs["send_tick"], reqs["rtt_ms"], s=6, color="#546e7a", label="RTT of each request")
    top.plot(reqs["send_tick"], reqs["rt95_est_ms"], color="#c62828", label="estimate f95(GL) at send time")
    top.set_ylabel("ms")
    top.legend(loc="upper left", fontsize=8)
    bottom.step(ticks["tick"], ticks["interval"], where="post", label="I")
    bottom.step(ticks["tick"], ticks["gen_len"], where="post", label="GL")
    bottom.set_xlabel("tick")
    bottom.set_ylabel("ticks")
    bottom.legend(loc="upper left", fontsize=8)
    top.set_title(f"{run.name}: {song} (adaptive)")
    path = out / f"adaptive-{run.name}-{song}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(rows, runs: list[Path], out: Path, song: str | None = None) -> list[Path]:
    """All figures into ``out``: the bar charts, one piano roll (first non-offline run) and
    each adaptive run's timeline."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StreamMuseError(f"{out}: cannot create plots folder ({exc.strerror})") from None
    paths = [metric_bars(rows, out)]
    live = [r for r in runs if (r / "ticks.parquet").is_file() and "-offline-" not in r.name]
    if live:
        paths.append(piano_roll(live[0], song, out))
    paths += [adaptive_timeline(r, song, out) for r in live if (r / "switches.parquet").is_file()]
    return paths

