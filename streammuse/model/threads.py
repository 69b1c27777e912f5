"""How many CPU threads torch may use for work with no real-time need (offline generation,
the gate, NLL evaluation).

torch starts one OpenMP thread per core and, by default, lets a thread that reaches a
barrier spin before it sleeps. On a machine where other work holds the cores, every
parallel region then waits for the thread the scheduler preempted, and the spinning
threads steal the time that thread needs: on 2 cores with other jobs running, the offline
baseline of 2 songs x 8 bars took 122 s on 2 threads against 7.7 s on one
(docs/benchmarks.md, "Threads under load"). :func:`configure_threads` counts the cores
this process may run on, subtracts the ones other work keeps busy right now, gives torch
that many threads (at least one), one inter-op thread, and asks OpenMP to sleep at
barriers instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, unless the user set it).

``STREAMMUSE_THREADS=N`` overrides the choice.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

ENV_OVERRIDE = "STREAMMUSE_THREADS"


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`configure_threads` chose and why."""

    threads: int
    cores: int
    busy: float  # cores other processes kept busy while we sampled
    reason: str


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(sample_s: float = 0.25) -> float:
    """Cores kept busy by other processes, measured over ``sample_s`` seconds (this
    process is idle meanwhile); the 1-minute load average where /proc/stat is missing."""
    before = _cpu_times()
    own_before = time.process_time()
    time.sleep(sample_s)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    n_cpus = os.cpu_count() or 1
    busy_frac = (after[0] - before[0]) / (after[1] - before[1])
    own = (time.process_time() - own_before) / sample_s
    return max(0.0, busy_frac * n_cpus - own)


def choose_threads(cores: int, busy: float) -> int:
    """Threads for ``cores`` usable cores of which ``busy`` are taken: the free ones, at
    least one. A core counts as taken once a third of it is busy."""
    return max(1, min(cores, cores - math.floor(busy + 2 / 3)))


def configure_threads(sample_s: float = 0.25) -> ThreadChoice:
    """Pick torch's thread count for offline work and apply it (see the module docstring).

    Call it before the first ``import torch`` so that ``OMP_WAIT_POLICY`` takes effect."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cores = usable_cores()
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        try:
            threads, busy, reason = max(1, int(override)), 0.0, f"{ENV_OVERRIDE}={override}"
        except ValueError:
            from streammuse.errors import StreamMuseError

            raise StreamMuseError(f"{ENV_OVERRIDE} must be a whole number of threads, not {override!r}") from None
    else:
        busy = busy_cores(sample_s)
        threads = choose_threads(cores, busy)
        reason = f"{cores} usable cores, {busy:.1f} busy with other work"
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # inter-op pool already started (e.g. a second call): keep it
        pass
    return ThreadChoice(threads, cores, busy, reason)
