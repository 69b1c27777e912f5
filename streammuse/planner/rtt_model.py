"""The round-trip-time model of paper section IV-C.

RTT(GL) = IL(GL) + NL with

* IL(GL) = f(GL) + eps, f(GL) = a GL^2 + b GL + c, eps ~ N(0, sigma^2)  (inference latency)
* NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha)                    (network latency)

The model classes live in ``streammuse.rtt``; this module fits f to measured RTTs (to the mean per GL and to the 95th percentile per GL,
the paper's Fig. 3) and fits (nu, x_min, alpha) to measured network delays. It knows
nothing of the CLI or the server.
"""

from __future__ import annotations

import numpy as np

from streammuse.errors import StreamMuseError
from streammuse.rtt import NetworkModel, QuadraticFit, RttFit

# A quadratic has three coefficients: fewer distinct GL values leave it undetermined.
MIN_GEN_LENS = 3
# The 95th percentile of fewer than 20 samples is just the maximum.
MIN_SAMPLES_PER_GEN_LEN = 20
# Below this many draws the Pareto tail index is noise.
MIN_NETWORK_SAMPLES = 20
# z for the one-sided 95% point of a normal: the eps term's share of RT95.
Z_95 = 1.6448536269514722
# Tail indices beyond this describe a delay with no tail worth modelling. On few or
# light-tailed samples the Lomax MLE runs off towards its exponential limit (alpha and
# x_min -> infinity, x_min / alpha fixed); alpha is then pinned here and x_min refitted.
MAX_ALPHA = 100.0


def fit_quadratic(gen_lens: np.ndarray, rtt_ms: np.ndarray) -> QuadraticFit:
    """Least-squares f(GL) = a GL^2 + b GL + c through the points (GL, RTT).

    Needs at least three distinct GL values; raises StreamMuseError otherwise.
    """
    gen_lens = np.asarray(gen_lens, dtype=float)
    rtt_ms = np.asarray(rtt_ms, dtype=float)
    if gen_lens.shape != rtt_ms.shape or gen_lens.ndim != 1:
        raise StreamMuseError("gen_lens and rtt_ms must be 1-D arrays of the same length")
    if not np.all(np.isfinite(rtt_ms)):
        raise StreamMuseError("RTT samples contain NaN or infinite values")
    n_distinct = len(np.unique(gen_lens))
    if n_distinct < MIN_GEN_LENS:
        raise StreamMuseError(
            f"a quadratic RTT fit needs samples at >= {MIN_GEN_LENS} distinct GL values, "
            f"got {n_distinct}"
        )
    a, b, c = np.polyfit(gen_lens, rtt_ms, deg=2)
    return QuadraticFit(float(a), float(b), float(c))


def per_gen_len(gen_lens: np.ndarray, rtt_ms: np.ndarray, q: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct GL, mean RTT or its q-quantile at each GL), GL ascending."""
    gen_lens = np.asarray(gen_lens)
    rtt_ms = np.asarray(rtt_ms, dtype=float)
    if len(gen_lens) == 0:
        raise StreamMuseError("no RTT samples to fit")
    levels = np.unique(gen_lens)
    values = []
    for gl in levels:
        chunk = rtt_ms[gen_lens == gl]
        if len(chunk) < MIN_SAMPLES_PER_GEN_LEN:
            raise StreamMuseError(
                f"GL={gl} has {len(chunk)} RTT samples; a fit needs >= {MIN_SAMPLES_PER_GEN_LEN} per GL"
            )
        values.append(chunk.mean() if q is None else np.quantile(chunk, q))
    return levels.astype(float), np.asarray(values, dtype=float)


def fit_rtt(gen_lens: np.ndarray, rtt_ms: np.ndarray) -> RttFit:
    """Fit f to the mean RTT per GL and f95 to the 95th-percentile RTT per GL (Fig. 3).

    Fitting the per-GL summaries (rather than every sample) weights each GL equally,
    whatever its sample count. Needs >= 3 distinct GL values and >= 20 samples per GL.
    """
    mean = fit_quadratic(*per_gen_len(gen_lens, rtt_ms, q=None))
    p95 = fit_quadratic(*per_gen_len(gen_lens, rtt_ms, q=0.95))
    return RttFit(mean=mean, p95=p95)


def fit_inference(gen_lens: np.ndarray, inference_ms: np.ndarray) -> tuple[QuadraticFit, float]:
    """The server model IL(GL) = f(GL) + N(0, sigma^2): f by least squares on every sample,
    sigma as the residuals' standard deviation. Returns (f, sigma_ms)."""
    gen_lens = np.asarray(gen_lens, dtype=float)
    inference_ms = np.asarray(inference_ms, dtype=float)
    fit = fit_quadratic(gen_lens, inference_ms)
    residuals = inference_ms - fit(gen_lens)
    return fit, float(np.std(residuals, ddof=3)) if len(residuals) > 3 else 0.0


def fit_pareto(network_ms: np.ndarray) -> NetworkModel:
    """Fit NL = nu + (xi - x_min), xi ~ Pareto(x_min, alpha) to network delays.

    Estimator: nu is the smallest sample (the MLE of a lower bound). The excess
    Y = NL - nu then satisfies P(Y > y) = (x_min / (x_min + y))^alpha, a Lomax (Pareto II)
    law with scale x_min and shape alpha, so both are identifiable from the excess and
    found by maximum likelihood (``scipy.stats.lomax.fit`` with location 0). When the MLE
    runs past alpha = 100 (an exponential-looking tail), alpha is fixed at 100 and x_min
    refitted. Needs >= 20 samples with some spread.
    """
    network_ms = np.asarray(network_ms, dtype=float)
    if len(network_ms) < MIN_NETWORK_SAMPLES:
        raise StreamMuseError(
            f"a Pareto network fit needs >= {MIN_NETWORK_SAMPLES} samples, got {len(network_ms)}"
        )
    if not np.all(np.isfinite(network_ms)) or np.any(network_ms < 0):
        raise StreamMuseError("network delays must be finite and >= 0 ms")
    nu_ms = float(network_ms.min())
    excess = network_ms - nu_ms
    if np.ptp(excess) <= 1e-9:
        raise StreamMuseError("network delays have no spread: there is no tail to fit")
    from scipy import stats  # imported here: scipy.stats is slow to load for every CLI call

    alpha, _, x_min_ms = stats.lomax.fit(excess, floc=0.0)
    if alpha > MAX_ALPHA:
        alpha, _, x_min_ms = stats.lomax.fit(excess, f0=MAX_ALPHA, floc=0.0)
    return NetworkModel(nu_ms=nu_ms, x_min_ms=float(x_min_ms), alpha=float(alpha))
