"""The run folder's layout (docs/design.md section 5), shared by its writer
(``experiment.runs.RunWriter``) and its readers (``metrics``): table names and columns,
and the done-markers that say which songs finished (``--resume`` skips them, reports
count only them)."""

from __future__ import annotations

from pathlib import Path

REQUEST_COLUMNS = ["song", "request_id", "send_tick", "request_tick", "gen_len", "send_ms", "recv_ms",
                   "rtt_ms", "inference_ms", "queue_ms", "network_ms", "status", "interval", "rt95_est_ms"]
TICK_COLUMNS = ["song", "tick", "available", "staleness", "request_id", "fresh", "interval", "gen_len"]
# The adaptive client's changes of (I, GL) (client.adaptive.Switch); empty for a fixed pair.
SWITCH_COLUMNS = ["song", "tick", "old_interval", "old_gen_len", "new_interval", "new_gen_len", "rt95_ms", "reason"]
DONE_DIR = "done"


def done_songs(run: str | Path) -> set[str]:
    """Names of the songs finished in ``run`` (their done-marker exists)."""
    done = Path(run) / DONE_DIR
    return {p.name for p in done.iterdir()} if done.is_dir() else set()


def mark_done(run: str | Path, name: str) -> None:
    """Write song ``name``'s done-marker: the last file a finished song gets."""
    done = Path(run) / DONE_DIR
    done.mkdir(parents=True, exist_ok=True)
    (done / name).write_text("")
