"""Figures of the planner: the solution-space heatmap (Fig. 4) and the RTT fit (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streammuse.feasibility import Plan, Verdict
from streammuse.rtt import RttFit

# Fig. 4's colours: green valid, yellow C1, red C2, dark red both.
VERDICT_COLOURS = {
    Verdict.VALID: "#2ca02c",
    Verdict.C1: "#f2c744",
    Verdict.C2: "#d62728",
    Verdict.BOTH: "#7a0c0c",
}
_ORDER = [Verdict.VALID, Verdict.C1, Verdict.C2, Verdict.BOTH]


def _pyplot():
    # Agg: the CLI runs headless; importing here keeps `import streammuse` light.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_solution_space(plans: Sequence[Plan], path: str | Path, title: str = "") -> Path:
    """One heatmap per BPM: x = GL, y = I, coloured by verdict, with the C1 bound I = ceil(RT95)
    (solid) and the C2 bound I = GL - ceil(RT95) (dashed)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(plans), figsize=(3.6 * len(plans), 3.8), squeeze=False)
    cmap = ListedColormap([VERDICT_COLOURS[v] for v in _ORDER])
    for ax, plan in zip(axes[0], plans):
        codes = np.array([[_ORDER.index(v) for v in row] for row in plan.verdicts])
        ax.imshow(codes, cmap=cmap, vmin=0, vmax=3, origin="lower", aspect="auto",
                  extent=(0.5, plan.max_gl + 0.5, 0.5, plan.max_i + 0.5))
        gls = np.arange(1, plan.max_gl + 1)
        k = np.ceil(np.asarray(plan.rt95))
        # Lines run along the cell edges: I >= k starts at k - 0.5, I <= GL - k ends at GL - k + 0.5.
        ax.step(gls, k - 0.5, where="mid", color="black", lw=1.5, label="C1: I = ceil(RT95)")
        ax.step(gls, gls - k + 0.5, where="mid", color="black", lw=1.5, ls="--", label="C2: I = GL - ceil(RT95)")
        ax.set_xlim(0.5, plan.max_gl + 0.5)
        ax.set_ylim(0.5, plan.max_i + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("GL (ticks)")
        ax.set_ylabel("I (ticks)")
        ax.set_title(f"{plan.bpm:g} BPM: {plan.feasible_share:.0%} feasible")
    handles = [Patch(color=VERDICT_COLOURS[v], label=v.value) for v in _ORDER]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rtt_fit(gen_lens: np.ndarray, rtt_ms: np.ndarray, fit: RttFit, path: str | Path, title: str = "") -> Path:
    """Fig. 3: every RTT sample against GL, the fit on all data (solid) and on p95 (dashed)."""
    plt = _pyplot()
    gen_lens = np.asarray(gen_lens, dtype=float)
    rng = np.random.default_rng(0)  # jitter only spreads the dots; fixed so the figure is stable
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(gen_lens + rng.uniform(-0.15, 0.15, len(gen_lens)), rtt_ms, s=3, alpha=0.25, label="samples")
    grid = np.linspace(gen_lens.min(), gen_lens.max(), 200)
    ax.plot(grid, fit.mean(grid), color="C1", lw=2, label="fit on all data")
    ax.plot(grid, fit.p95(grid), color="C3", lw=2, ls="--", label="fit on p95")
    ax.set_xlabel("GL (ticks)")
    ax.set_ylabel("RTT (ms)")
    ax.set_title(title or "RTT vs GL")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
