"""RTT model and configuration planner (paper sections IV-C, IV-D, V-B, V-C)."""

from streammuse.planner.recommend import recommend

__all__ = ["recommend"]
