"""The committed baseline: the gate's configuration and the figures it produced."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

from streammuse.errors import StreamMuseError

DEFAULT_BASELINE = Path("gate/baseline.json")


def read_baseline(path: Path) -> dict:
    """``{"config": ..., "metrics": {...}, ...}``; a missing or broken file is a user error."""
    if not path.is_file():
        raise StreamMuseError(f"no gate baseline at {path}; create one with `streammuse gate --update-baseline`")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StreamMuseError(f"{path}: not a readable gate baseline ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise StreamMuseError(f"{path}: a gate baseline holds a 'metrics' object")
    # JSON has no NaN literal in strict mode: NaN is stored as null.
    data["metrics"] = {k: (math.nan if v is None else float(v)) for k, v in data["metrics"].items()}
    return data


def write_baseline(path: Path, config: dict, metrics: dict[str, float], git_rev: str = "") -> None:
    """Write the baseline (NaN as null), creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "config": config,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_rev": git_rev,
        "metrics": {k: (None if math.isnan(v) else v) for k, v in metrics.items()},
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def check_same_config(baseline: dict, config: dict, path: Path) -> None:
    """A baseline made with other songs, seeds or pairs cannot judge this run."""
    if baseline.get("config") != config:
        raise StreamMuseError(
            f"{path} was made with a different gate configuration; "
            "rerun with --update-baseline if the change is deliberate"
        )
