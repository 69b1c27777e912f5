"""The planner's one-call answer for other commands (``replay --auto``)."""

from __future__ import annotations

from pathlib import Path

from streammuse.feasibility import recommend_pair
from streammuse.planner.profile_fit import f95_from_profile, load_profile_dict


def recommend(profile: dict | str | Path, bpm: float, max_i: int = 16, max_gl: int = 16) -> tuple[int, int]:
    """The recommended (I, GL) for a latency profile (dict or JSON path) at ``bpm``:
    the feasible pair of equation 3 with the smallest I, then the smallest GL.

    Raises StreamMuseError (saying what would make it feasible) when no pair is.
    """
    if not isinstance(profile, dict):
        profile = load_profile_dict(profile)
    return recommend_pair(f95_from_profile(profile), bpm, max_i=max_i, max_gl=max_gl)
