"""Latency profiles and the injector that draws each request's delays from one.

A profile (``profiles/*.json``, schema in ``docs/design.md`` section 4, validated by
:class:`ProfileFile`) names one deployment by the RTT model of section IV-C
(``streammuse.rtt``): its network model (None: no network, the Local setting), the
server-time jitter, the server model the sim clock's virtual replica times its batches
with, and the RTT fit ``streammuse profile`` measured. Each says where its numbers come
from (``source``): a passage of the paper, or the command, machine and date of a
measurement. Shipped: ``local`` (measured on the dev machine), ``local-server`` and
``remote`` (the paper's GPU settings); users pass their own with ``--profile FILE``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streammuse.client.drift import DriftEvent, drift_at
from streammuse.errors import StreamMuseError
from streammuse.rtt import NetworkModel, ServerModel

SHIPPED_PROFILES = ("local", "local-server", "remote")  # the paper's three settings
DRIFT_PROFILES = ("drift-step", "drift-ramp", "drift-bursts", "drift-contention")  # latency that moves


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileSource(_Strict):
    """Where a profile's numbers come from."""

    kind: Literal["paper", "measured", "scenario"]
    detail: str = Field(..., min_length=1, description="the paper passage followed, the command run, or the scenario")
    machine: str | None = None  # measured: what it ran on
    date: str | None = None  # measured: when


class _Network(_Strict):
    nu_ms: float = Field(..., ge=0)
    x_min_ms: float = Field(..., gt=0)
    alpha: float = Field(..., gt=1)


class _Server(_Strict):
    a: float
    b: float
    c: float
    sigma_ms: float = Field(0.0, ge=0)
    batch_slope: float = Field(0.0, ge=0)


class _Drift(_Strict):
    start_s: float = Field(..., ge=0)
    duration_s: float | None = Field(None, gt=0)
    every_s: float | None = Field(None, gt=0)
    ramp_s: float = Field(0.0, ge=0)
    network_add_ms: float = Field(0.0, ge=0)
    server_scale: float = Field(1.0, ge=1)


class ProfileFile(_Strict):
    """The JSON form of a latency profile."""

    name: str = Field(..., min_length=1)
    description: str = ""
    # Every shipped profile has one (tested); a user's own file may leave it out, and
    # runs made with it then say "source not stated".
    source: ProfileSource | None = None
    network: _Network | None = None
    server_jitter_ms: float = Field(0.0, ge=0)
    server_model: _Server | None = None
    rtt_fit: dict | None = None
    drift: list[_Drift] = Field(default_factory=list, description="latency changes over the song (client.drift)")


@dataclass(frozen=True)
class LatencyProfile:
    """One deployment's latency (see the module docstring)."""

    name: str
    description: str = ""
    source: dict | None = None
    network: NetworkModel | None = None
    server_jitter_ms: float = 0.0
    server_model: ServerModel | None = None
    rtt_fit: dict | None = None
    drift: tuple[DriftEvent, ...] = ()

    def to_dict(self) -> dict:
        """The profile as its JSON form (inlined in run manifests)."""
        return asdict(self)


@dataclass(frozen=True)
class DelayDraw:
    """The injected delays of one request: half of NL on the way out, half on the way
    back, plus the Gaussian server-time jitter (clipped at 0); ``server_scale`` k of a
    profile's drift holds the answer back by (k - 1) x the server's reported time."""

    network_ms: float
    request_ms: float
    response_ms: float
    server_jitter_ms: float
    server_scale: float = 1.0

    def response_delay_ms(self, inference_ms: float = 0.0) -> float:
        """How long the answer travels back: NL/2 + jitter + (k - 1) x inference_ms."""
        return self.response_ms + self.server_jitter_ms + (self.server_scale - 1.0) * max(0.0, inference_ms)


class LatencyInjector:
    """Draws each request's delays from a profile with its own seeded Generator."""

    def __init__(self, profile: LatencyProfile, seed: int | tuple[int, ...]) -> None:
        self.profile = profile
        self.rng = np.random.default_rng(seed)

    def draw(self, send_ms: float = 0.0) -> DelayDraw:
        """Delays for one request sent at ``send_ms`` (song time: ms from tick 0's onset,
        where the profile's drift is read); all zero for a profile without network,
        jitter or drift."""
        net = self.profile.network
        nl = float(net.sample_ms(self.rng)) if net is not None else 0.0
        sj = self.profile.server_jitter_ms
        jitter = max(0.0, float(self.rng.normal(0.0, sj))) if sj > 0 else 0.0
        drift = drift_at(self.profile.drift, send_ms / 1000.0)
        nl += drift.network_add_ms
        return DelayDraw(nl, nl / 2.0, nl / 2.0, jitter, drift.server_scale)


def load_profile(name_or_path: str | Path) -> LatencyProfile:
    """Load a shipped profile by name (``local``, ``local-server``, ``remote``, or a
    drifting one: ``drift-step``, ``drift-ramp``, ``drift-bursts``, ``drift-contention``)
    or a file.

    Raises:
        StreamMuseError: the file is missing, not JSON, or breaks the schema.
    """
    name = str(name_or_path)
    if name in SHIPPED_PROFILES + DRIFT_PROFILES:
        text = resources.files("streammuse.client").joinpath("profiles", f"{name}.json").read_text()
        source = f"profile {name}"
    else:
        path = Path(name)
        try:
            text = path.read_text()
        except OSError as exc:
            raise StreamMuseError(f"cannot read profile {path}: {exc.strerror or exc}") from None
        source = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamMuseError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return profile_from_dict(data, source)


def profile_from_dict(data: object, source: str = "profile") -> LatencyProfile:
    """Validate a profile's JSON form (:class:`ProfileFile`) and build it."""
    try:
        p = ProfileFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "profile"
        raise StreamMuseError(f"{source}: {where}: {first['msg']}") from None
    network = NetworkModel(**p.network.model_dump()) if p.network is not None else None
    server = ServerModel(**p.server_model.model_dump()) if p.server_model is not None else None
    source_dict = p.source.model_dump() if p.source is not None else None
    drift = tuple(DriftEvent(**d.model_dump()) for d in p.drift)
    return LatencyProfile(p.name, p.description, source_dict, network, p.server_jitter_ms, server, p.rtt_fit, drift)
