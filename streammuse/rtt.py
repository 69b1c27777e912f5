"""The round-trip-time model of paper section IV-C, one class per part.

RTT(GL) = IL(GL) + NL with

* IL(GL) = f(GL) + eps, f(GL) = a GL^2 + b GL + c, eps ~ N(0, sigma^2)  (inference latency,
  :class:`ServerModel`; ``batch_slope`` extends it to a batch of B sessions, below)
* NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha)                    (network latency,
  :class:`NetworkModel`)

The client's latency injector draws from these classes, the sim clock's virtual replica
times its batches with them, and the planner fits them (``planner.rtt_model``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammuse.errors import StreamMuseError


@dataclass(frozen=True)
class QuadraticFit:
    """f(GL) = a GL^2 + b GL + c, in milliseconds."""

    a: float
    b: float
    c: float

    def __call__(self, gen_len: float | np.ndarray) -> float | np.ndarray:
        """f(GL) in ms."""
        gen_len = np.asarray(gen_len, dtype=float)
        value = self.a * gen_len**2 + self.b * gen_len + self.c
        return float(value) if value.ndim == 0 else value

    def shifted(self, offset_ms: float) -> QuadraticFit:
        """The same curve moved up by ``offset_ms`` (the constant terms folded into c)."""
        return QuadraticFit(self.a, self.b, self.c + offset_ms)

    def to_dict(self) -> dict[str, float]:
        """The profile-JSON form ``{"a":..,"b":..,"c":..}``."""
        return {"a": self.a, "b": self.b, "c": self.c}

    @classmethod
    def from_dict(cls, data: dict) -> QuadraticFit:
        """Read ``{"a":..,"b":..,"c":..}``; missing or non-numeric keys are a user error."""
        try:
            return cls(float(data["a"]), float(data["b"]), float(data["c"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StreamMuseError(f"a quadratic fit needs numbers a, b, c; got {data!r}") from exc


@dataclass(frozen=True)
class RttFit:
    """The two fits of Fig. 3: f to the mean RTT per GL and f95 to the 95th percentile."""

    mean: QuadraticFit
    p95: QuadraticFit

    def to_dict(self) -> dict[str, dict[str, float]]:
        """The profile-JSON ``rtt_fit`` form."""
        return {"mean": self.mean.to_dict(), "p95": self.p95.to_dict()}


def pareto(rng: np.random.Generator, x_min: float, alpha: float, size: int | None = None):
    """Draw xi ~ Pareto(x_min, alpha): density alpha x_min^alpha / x^(alpha+1), x >= x_min.

    numpy's ``pareto`` is the Lomax (Pareto II) law, whose support starts at 0;
    ``x_min * (1 + lomax)`` is the classical Pareto the paper uses.
    """
    return x_min * (1.0 + rng.pareto(alpha, size))


@dataclass(frozen=True)
class NetworkModel:
    """NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha), all in ms (section IV-C)."""

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

    def quantile_ms(self, q: float) -> float:
        """Q_q(NL) = nu + x_min ((1 - q)^(-1/alpha) - 1)."""
        return self.nu_ms + self.x_min_ms * ((1.0 - q) ** (-1.0 / self.alpha) - 1.0)

    def to_dict(self) -> dict[str, float]:
        """The profile-JSON ``network`` form."""
        return {"nu_ms": self.nu_ms, "x_min_ms": self.x_min_ms, "alpha": self.alpha}


@dataclass(frozen=True)
class ServerModel:
    """IL(GL) = a GL^2 + b GL + c + N(0, sigma^2) in ms (section IV-C), for one session.

    A batch of B sessions whose longest request asks for GL ticks takes
    ``f(GL) (1 + batch_slope (B - 1))``: each extra session adds ``batch_slope`` of a
    lone request's time (0: batching is free, as the paper's single-user model assumes).
    """

    a: float
    b: float
    c: float
    sigma_ms: float = 0.0
    batch_slope: float = 0.0

    def mean_ms(self, gen_len: int, batch_size: int = 1) -> float:
        """f(GL) (1 + batch_slope (B - 1))."""
        return (self.a * gen_len**2 + self.b * gen_len + self.c) * (1.0 + self.batch_slope * (batch_size - 1))

    def sample_ms(self, rng: np.random.Generator, gen_len: int, batch_size: int = 1) -> float:
        """One draw of IL, clipped at 0 (a server never answers before it is asked)."""
        noise = rng.normal(0.0, self.sigma_ms) if self.sigma_ms > 0 else 0.0
        return max(0.0, self.mean_ms(gen_len, batch_size) + noise)
