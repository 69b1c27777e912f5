"""What one replay is: its settings (saved in every run's manifest) and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from streammuse.client.adaptive import AdaptiveSettings
from streammuse.contract import MAX_BPM, MAX_GEN_LEN, MIN_BPM, CreateSessionRequest, SamplingSettings
from streammuse.errors import StreamMuseError

SETTINGS = ("local", "local-server", "remote", "offline")
PAPER_SWEEP = ((1, 3), (2, 5), (2, 9), (4, 5), (4, 9), (4, 15), (7, 9), (7, 15))  # Table III
SERVER_TIMES = ("modelled", "measured")
FRONTS = ("core", "http")
SERVERS = ("shared", "per-song")


@dataclass
class ReplayConfig:
    """Everything one `streammuse replay` needs (saved in each run's manifest).

    ``server_time`` (sim clock): ``modelled`` draws each batch's time from the profile's
    server model (``source`` says where it was measured or which paper passage it
    follows); ``measured`` takes the batch's engine compute time on this machine.
    ``front`` (sim clock): ``core`` calls the session core directly; ``http`` sends
    every request through the real FastAPI app in process (httpx's ASGI transport).
    ``adaptive``: each song's client re-plans (I, GL) from its own RTTs
    (``client.adaptive``), starting from ``(interval, gen_len)``.
    """

    testset: Path
    setting: str = "local"
    bpm: float = 120.0
    interval: int = 2
    gen_len: int = 5
    server: str | None = None
    profile: str | None = None  # a file; None: the shipped profile named after the setting
    clock: str = "wall"
    concurrency: int = 4  # songs playing at once, on one server (wall) or one virtual replica (sim)
    songs: int | None = 8
    max_bars: int | None = 16
    seed: int = 0
    out: Path = Path("runs")
    resume: bool = False
    server_time: str = "modelled"
    front: str = "core"
    servers: str = "shared"  # sim: one replica for the songs playing at once, or one per song
    adaptive: AdaptiveSettings | None = None  # re-plan (I, GL) during each song; (interval, gen_len) is the start
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def validate(self) -> None:
        """Check the flags a user can get wrong (StreamMuseError with one line)."""
        if self.setting not in SETTINGS:
            raise StreamMuseError(f"--setting must be one of {', '.join(SETTINGS)}, not {self.setting!r}")
        if self.clock not in ("wall", "sim"):
            raise StreamMuseError(f"--clock must be wall or sim, not {self.clock!r}")
        if not MIN_BPM <= self.bpm <= MAX_BPM:
            raise StreamMuseError(f"--bpm must be in [{MIN_BPM:g}, {MAX_BPM:g}]")
        if self.interval < 1 or not 1 <= self.gen_len <= MAX_GEN_LEN:
            raise StreamMuseError(f"need --interval >= 1 and 1 <= --gen-len <= {MAX_GEN_LEN}")
        if self.concurrency < 1:
            raise StreamMuseError("--concurrency must be >= 1")
        if self.server_time not in SERVER_TIMES:
            raise StreamMuseError(f"--server-time must be one of {', '.join(SERVER_TIMES)}")
        if self.front not in FRONTS:
            raise StreamMuseError(f"--front must be one of {', '.join(FRONTS)}")
        if self.servers not in SERVERS:
            raise StreamMuseError(f"--servers must be one of {', '.join(SERVERS)}")
        if self.adaptive is not None and self.setting == "offline":
            raise StreamMuseError("--adaptive re-plans against latency; the offline baseline has none")

    def session_request(self, index: int) -> CreateSessionRequest:
        """Song ``index``'s session settings (its seed is fixed by the run's seed and index)."""
        return CreateSessionRequest(bpm=self.bpm, sampling=self.sampling, seed=(self.seed * 1000 + index) % 2**31)

    def with_pair(self, interval: int, gen_len: int) -> ReplayConfig:
        """The same config for another (I, GL) pair."""
        return replace(self, interval=interval, gen_len=gen_len)


def parse_sweep(text: str | None) -> list[tuple[int, int]]:
    """``"1,3 2,5"`` -> ``[(1, 3), (2, 5)]``; ``"paper"`` -> the paper's 8 pairs."""
    if text is None:
        return []
    if text.strip() in ("", "paper"):
        return list(PAPER_SWEEP)
    pairs = []
    for item in text.split():
        try:
            i, gl = (int(x) for x in item.split(","))
        except ValueError:
            raise StreamMuseError(f"--sweep: {item!r} is not a pair I,GL (e.g. \"1,3 2,5\")") from None
        pairs.append((i, gl))
    return pairs
