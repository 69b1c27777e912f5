"""What an adaptive run did (``replay --adaptive``, ``client.adaptive``): the share of
ticks played under each (I, GL) pair and how often the pair changed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def pair_share(ticks: pd.DataFrame) -> dict[str, float]:
    """Share of ticks under each pair in force at their onset, ``{"(I, GL)": share}``,
    most used first (empty for a log without the pair columns)."""
    if not {"interval", "gen_len"} <= set(ticks.columns) or not len(ticks):
        return {}
    counts = ticks.groupby(["interval", "gen_len"]).size().sort_values(ascending=False)
    return {f"({int(i)}, {int(g)})": float(n / len(ticks)) for (i, g), n in counts.items()}


def switches_per_song(run: str | Path, n_songs: int) -> float | None:
    """Changes of pair per song (``switches.parquet``); None for a run without the table."""
    path = Path(run) / "switches.parquet"
    if not path.is_file() or n_songs == 0:
        return None
    return len(pd.read_parquet(path)) / n_songs


def describe(share: dict[str, float], switches: float | None) -> str:
    """One line for the report: ``(1, 2) 48.3 %, (2, 4) 51.7 %; 1.0 switches per song``."""
    text = ", ".join(f"{pair} {100 * s:.1f} %" for pair, s in share.items())
    return text + (f"; {switches:.1f} switches per song" if switches is not None else "")
