"""Injected latency: the RTT model of section IV-C and the profile files that hold it.

RTT(GL) = IL(GL) + NL, with

* network latency NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha): a fixed delay nu
  plus a heavy-tailed term whose minimum is 0 (alpha > 1 keeps its mean finite);
* inference latency IL(GL) = a GL^2 + b GL + c + eps, eps ~ N(0, sigma^2): the
  ``server_model`` the sim clock uses in place of a measured server time.

A profile (``profiles/*.json``, schema in ``docs/design.md`` section 4) names one
deployment: ``local`` (no network), ``local-server``, ``remote``; users pass their own
with ``--profile FILE``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from streammuse.errors import StreamMuseError

SHIPPED_PROFILES = ("local", "local-server", "remote")


@dataclass(frozen=True)
class NetworkModel:
    """NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha) (section IV-C)."""

    nu_ms: float
    x_min_ms: float
    alpha: float

    def sample_ms(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray | float:
        """Draw NL in ms (one value, or ``size`` values)."""
        return self.nu_ms + (pareto(rng, self.x_min_ms, self.alpha, size) - self.x_min_ms)

    @property
    def mean_ms(self) -> float:
        """E[NL] = nu + x_min / (alpha - 1)."""
        return self.nu_ms + self.x_min_ms / (self.alpha - 1.0)


@dataclass(frozen=True)
class ServerModel:
    """IL(GL) = a GL^2 + b GL + c + N(0, sigma^2) in ms (section IV-C)."""

    a: float
    b: float
    c: float
    sigma_ms: float = 0.0

    def mean_ms(self, gen_len: int) -> float:
        """f(GL) = a GL^2 + b GL + c."""
        return self.a * gen_len**2 + self.b * gen_len + self.c

    def sample_ms(self, rng: np.random.Generator, gen_len: int) -> float:
        """One draw of IL(GL), clipped at 0 (a server never answers before it is asked)."""
        noise = rng.normal(0.0, self.sigma_ms) if self.sigma_ms > 0 else 0.0
        return max(0.0, self.mean_ms(gen_len) + noise)


@dataclass(frozen=True)
class LatencyProfile:
    """One deployment's latency: network model (None = no network), server jitter,
    modelled server time and the RTT fit ``streammuse profile`` measured."""

    name: str
    description: str = ""
    network: NetworkModel | None = None
    server_jitter_ms: float = 0.0
    server_model: ServerModel | None = None
    rtt_fit: dict | None = None

    def to_dict(self) -> dict:
        """The profile as its JSON form (inlined in run manifests)."""
        return asdict(self)


@dataclass(frozen=True)
class DelayDraw:
    """The injected delays of one request: half of NL on the way out, half on the way
    back, plus the Gaussian server-time jitter (clipped at 0)."""

    network_ms: float
    request_ms: float
    response_ms: float
    server_jitter_ms: float


def pareto(rng: np.random.Generator, x_min: float, alpha: float, size: int | None = None):
    """Draw xi ~ Pareto(x_min, alpha): density alpha x_min^alpha / x^(alpha+1), x >= x_min.

    numpy's ``pareto`` is the Lomax (Pareto II) law, whose support starts at 0;
    ``x_min * (1 + lomax)`` is the classical Pareto the paper uses.
    """
    return x_min * (1.0 + rng.pareto(alpha, size))


class LatencyInjector:
    """Draws each request's delays from a profile with its own seeded Generator."""

    def __init__(self, profile: LatencyProfile, seed: int | tuple[int, ...]) -> None:
        self.profile = profile
        self.rng = np.random.default_rng(seed)

    def draw(self) -> DelayDraw:
        """Delays for one request (all zero for a profile without network or jitter)."""
        net = self.profile.network
        nl = float(net.sample_ms(self.rng)) if net is not None else 0.0
        sj = self.profile.server_jitter_ms
        jitter = max(0.0, float(self.rng.normal(0.0, sj))) if sj > 0 else 0.0
        return DelayDraw(nl, nl / 2.0, nl / 2.0, jitter)

    def server_ms(self, gen_len: int) -> float:
        """Modelled server time IL(GL) for the sim clock."""
        model = self.profile.server_model
        if model is None:
            raise StreamMuseError(f"profile {self.profile.name!r} has no server_model; the sim clock needs one")
        return model.sample_ms(self.rng, gen_len)


def load_profile(name_or_path: str | Path) -> LatencyProfile:
    """Load a shipped profile by name (``local``, ``local-server``, ``remote``) or a file.

    Raises:
        StreamMuseError: the file is missing, not JSON, or breaks the schema.
    """
    name = str(name_or_path)
    if name in SHIPPED_PROFILES:
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
    """Validate a profile's JSON form and build it (schema: docs/design.md section 4)."""
    if not isinstance(data, dict):
        raise StreamMuseError(f"{source}: a profile is a JSON object")
    unknown = set(data) - {"name", "description", "network", "server_jitter_ms", "server_model", "rtt_fit"}
    if unknown:
        raise StreamMuseError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise StreamMuseError(f"{source}: 'name' must be a non-empty string")
    network = None
    if data.get("network") is not None:
        net = _numbers(data["network"], ("nu_ms", "x_min_ms", "alpha"), source, "network")
        if net["nu_ms"] < 0 or net["x_min_ms"] <= 0 or net["alpha"] <= 1:
            raise StreamMuseError(f"{source}: network needs nu_ms >= 0, x_min_ms > 0 and alpha > 1")
        network = NetworkModel(**net)
    server_model = None
    if data.get("server_model") is not None:
        sm = _numbers(data["server_model"], ("a", "b", "c"), source, "server_model", optional=("sigma_ms",))
        if sm.get("sigma_ms", 0.0) < 0:
            raise StreamMuseError(f"{source}: server_model.sigma_ms must be >= 0")
        server_model = ServerModel(**sm)
    jitter = data.get("server_jitter_ms", 0.0)
    if not _is_number(jitter) or jitter < 0:
        raise StreamMuseError(f"{source}: server_jitter_ms must be a number >= 0")
    rtt_fit = data.get("rtt_fit")
    if rtt_fit is not None and not isinstance(rtt_fit, dict):
        raise StreamMuseError(f"{source}: rtt_fit must be an object or null")
    return LatencyProfile(name, str(data.get("description", "")), network, float(jitter), server_model, rtt_fit)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _numbers(obj: object, required: tuple[str, ...], source: str, where: str, optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(obj, dict):
        raise StreamMuseError(f"{source}: {where} must be an object or null")
    extra = set(obj) - set(required) - set(optional)
    if extra:
        raise StreamMuseError(f"{source}: {where} has unknown field(s) {', '.join(sorted(extra))}")
    out = {}
    for key in required + optional:
        if key not in obj:
            if key in optional:
                continue
            raise StreamMuseError(f"{source}: {where}.{key} is missing")
        if not _is_number(obj[key]):
            raise StreamMuseError(f"{source}: {where}.{key} must be a number")
        out[key] = float(obj[key])
    return out
