"""The p95 RTT curve f95(GL) of a latency profile (docs/design.md section 4).

A measured profile (written by ``streammuse profile``) carries ``rtt_fit.p95`` and that
is used as is. A shipped profile has only the models the sim clock draws from, so f95 is
built from them by adding the 95th percentiles of the parts (paper eq. 2 folds them into
one constant c; the sum of quantiles bounds the quantile of the sum from above):

f95(GL) = a GL^2 + b GL + c + 1.645 sigma + Q95(NL) + 1.645 server_jitter_ms
Q95(NL) = nu + x_min (0.05^(-1/alpha) - 1)
"""

from __future__ import annotations

from pathlib import Path

from streammuse.errors import StreamMuseError
from streammuse.planner.rtt_model import Z_95
from streammuse.rtt import NetworkModel, QuadraticFit


def load_profile_dict(name_or_path: str | Path) -> dict:
    """A shipped profile by name (``local``, ``local-server``, ``remote``) or a JSON file,
    as the planner reads it (a dict): loaded and validated by the client's
    :func:`~streammuse.client.latency.load_profile` (the rules ``replay --profile`` applies)."""
    from streammuse.client.latency import load_profile

    return load_profile(name_or_path).to_dict()


def network_model(profile: dict) -> NetworkModel | None:
    """The profile's Pareto network model, or None for ``network: null`` (Local)."""
    net = profile.get("network")
    if net is None:
        return None
    try:
        model = NetworkModel(float(net["nu_ms"]), float(net["x_min_ms"]), float(net["alpha"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise StreamMuseError(f"profile network needs nu_ms, x_min_ms, alpha; got {net!r}") from exc
    if model.alpha <= 0 or model.x_min_ms <= 0:
        raise StreamMuseError(f"profile network needs x_min_ms > 0 and alpha > 0; got {net!r}")
    return model


def f95_from_profile(profile: dict) -> QuadraticFit:
    """f95(GL) in ms: the measured ``rtt_fit.p95`` if present, else derived from the models."""
    fit = profile.get("rtt_fit")
    if fit and fit.get("p95") is not None:
        return QuadraticFit.from_dict(fit["p95"])
    server = profile.get("server_model")
    if server is None:
        raise StreamMuseError(
            f"profile {profile.get('name', '?')!r} has neither rtt_fit.p95 nor server_model; "
            "measure one with `streammuse profile`"
        )
    base = QuadraticFit.from_dict(server)
    sigma = float(server.get("sigma_ms", 0.0))
    net = network_model(profile)
    network_95 = 0.0 if net is None else net.quantile_ms(0.95)
    # server_jitter_ms is the std of the client-injected Gaussian server-time jitter.
    jitter = float(profile.get("server_jitter_ms", 0.0) or 0.0)
    return base.shifted(Z_95 * (sigma + jitter) + network_95)
