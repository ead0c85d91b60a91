r"""Demo section: high-frequency and multi-scale PDEs by GP-HM (spectral-mixture GPs).

Four of the GP-HM paper's cases (:mod:`bayescore.models.pde.cases`): 1-D Poisson
:math:`u = \sin 100x`, 2-D Poisson :math:`u = \sin 100x \sin 100y`, 2-D Allen-Cahn with a
multi-scale solution, and advection with :math:`\beta = 200`. Each is solved by
:func:`~bayescore.models.pde.solve` with a Gaussian spectral mixture (Q = 30, the reference's
initial frequencies; Allen-Cahn with the Matérn-5/2 one); unless quick, the 1-D case also
with the squared-exponential baseline. Errors are relative L2 against the exact solution on
a 300-point (per dimension) test grid, computed here (no data files needed). The figure
shows each solution field and its pointwise error on the first tenth of the box, where the
frequencies are visible; the 1-D case adds the posterior 2 sd (GP conditional + Laplace).
The 2-D grid values are the exact collocation solution per kernel
(``method="collocation"``): one Sylvester equation for Poisson and advection, Newton's
method on the same equations for Allen-Cahn (nonlinear in :math:`u` alone). Allen-Cahn
takes the Matérn-5/2 mixture (StM), whose collocation values track its interpolant where the
Gaussian envelope's stray (``benchmarks/pde.py``: 1.2e-5 against GM's 1.2e-2). Quick mode
solves only the 1-D case and advection, the latter on a coarser grid. Also used by
``examples/pde_gphm.py``.

Example:
    >>> from bayescore.demo.pde import TITLE
    >>> TITLE.split(":")[0]
    'High-frequency PDEs by spectral-mixture GPs (GP-HM)'
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TITLE = "High-frequency PDEs by spectral-mixture GPs (GP-HM): four cases of the paper"

CASE_NAMES = (
    "poisson_1d-single_sin",
    "poisson_2d-sin_sin",
    "allencahn_2d-mix-sincos",
    "advection-sin",
)
QUICK_CASES = ("poisson_1d-single_sin", "advection-sin")
"""Quick mode's cases: one 1-D and the cheapest 2-D one (the smoke test of both methods)."""
QUICK_GRIDS = {"poisson_2d-sin_sin": 240, "allencahn_2d-mix-sincos": 64, "advection-sin": 96}
"""Quick mode's points per dimension: above twice the highest frequency's periods."""
KERNELS = {"allencahn_2d-mix-sincos": "StM"}
"""The spectral mixture per case where it is not the Gaussian one (GM)."""
TEST_POINTS = 300
"""Test points per dimension (the reference's test grid)."""
WINDOW = 0.1
"""The plotted window: the first tenth of the domain in each dimension, finely resolved."""


def _settings(name: str, dim: int, quick: bool) -> tuple[int | None, dict[str, Any]]:
    """``(grid_size, solve keyword arguments)``: the case's own grid unless quick."""
    if dim == 1:
        return None, {"num_lbfgs_steps": 60 if quick else 300}
    # the coarsest grids that still resolve each solution's highest frequency when quick
    grid_size = QUICK_GRIDS[name] if quick else None
    # the collocation grid solve: direct (linear), Newton's method (Allen-Cahn)
    return grid_size, {
        "num_lbfgs_steps": (2, 1) if quick else (3, 2),
        "relative_noise": (1e-6, 1e-8),
        "method": "collocation",
        "jitter": 1e-8,
    }


def solve_case(name: str, kind: str, quick: bool) -> dict[str, Any]:
    """Solve one case with one kernel kind; the row of the results table and the fields.

    Example:
        >>> import jax
        >>> from bayescore.demo.pde import solve_case
        >>> with jax.enable_x64(True):  # doctest: +SKIP
        ...     row = solve_case("poisson_1d-single_sin", "GM", quick=True)
        >>> row["rel_l2"] < 1e-4  # doctest: +SKIP
        True
    """
    from bayescore.models.pde import solve
    from bayescore.models.pde.cases import CASES, case_problem, exact_fields, relative_l2

    case = CASES[name]
    grid_size, settings = _settings(name, case.dim, quick)
    problem = case_problem(name, grid_size=grid_size)
    start = time.perf_counter()
    solution = solve(
        problem,
        case.kernel(kind),
        boundary_weight=case.boundary_weight,
        progress=False,
        **settings,
    )
    axes = tuple(np.linspace(lo, hi, TEST_POINTS) for lo, hi in case.domain)
    prediction = np.asarray(solution.predict_grid(axes))
    seconds = time.perf_counter() - start
    exact = exact_fields(name, axes)["u"]
    row = {
        "case": name,
        "kernel": kind,
        "grid": "×".join(map(str, problem.shape)),
        "rel_l2": relative_l2(prediction, exact),
        "reference": case.reference.get(kind),
        "seconds": seconds,
        "active": [len(c) for c in solution.components()],
        "axes": axes,
        "prediction": prediction,
        "exact": exact,
    }
    window = tuple(
        np.linspace(lo, lo + WINDOW * (hi - lo), 1000 if case.dim == 1 else 150)
        for lo, hi in case.domain
    )
    row["window"] = (window, np.asarray(solution.predict_grid(window)))
    row["window_exact"] = exact_fields(name, window)["u"]
    if case.dim == 1:
        points = window[0][::10, None]
        row["std"] = (points[:, 0], np.asarray(solution.std(points)))
    return row


def _plot(rows: list[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fields = [row for row in rows if row["kernel"] != "SE"]
    figure, grid = plt.subplots(2, len(fields), figsize=(4.2 * len(fields), 7.0))
    for column, row in enumerate(fields):
        top, bottom = grid[0, column], grid[1, column]
        axes, prediction = row["window"]
        error = np.abs(prediction - row["window_exact"])
        if prediction.ndim == 1:
            top.plot(axes[0], row["window_exact"], color="0.6", lw=3, label="exact")
            top.plot(axes[0], prediction, color="C0", lw=0.8, label="GP-HM")
            top.legend(loc="lower left", fontsize=8)
            bottom.semilogy(axes[0], error + 1e-16, color="C3", lw=0.8, label="|error|")
            points, std = row["std"]
            bottom.semilogy(points, 2 * std + 1e-16, color="C0", lw=0.8, label="2 sd")
            bottom.legend(loc="upper right", fontsize=8)
        else:
            extent = [*axes[1][[0, -1]], *axes[0][[0, -1]]]
            image = top.imshow(prediction, origin="lower", extent=extent, cmap="RdBu")
            figure.colorbar(image, ax=top, shrink=0.8)
            image = bottom.imshow(error, origin="lower", extent=extent, cmap="magma")
            figure.colorbar(image, ax=bottom, shrink=0.8)
            for panel in (top, bottom):
                panel.set_xlabel("y", fontsize=8)
                panel.set_ylabel("x", fontsize=8)
        top.set_title(f"{row['case']}, {row['grid']} grid\n(first tenth of the box)", fontsize=9)
        bottom.set_title(f"|error|, rel. L2 {row['rel_l2']:.2g}", fontsize=9)
    figure.tight_layout()
    return figure


def compare(quick: bool) -> tuple[list[dict[str, Any]], Any]:
    """Solve the four cases (quick: two of them; unless quick, the 1-D one also with the SE
    baseline); ``(rows, figure)``.

    Each row has ``case``, ``kernel``, ``grid``, ``rel_l2``, ``reference`` (the reference's
    logged error for that kernel, on its own grid), ``seconds`` and ``active`` (kernel
    components left after pruning, per dimension). Runs in float64. A few minutes on two CPU
    cores (quick: about one).

    Example:
        >>> from bayescore.demo.pde import compare
        >>> rows, figure = compare(quick=True)  # doctest: +SKIP
        >>> rows[0]["rel_l2"] < 1e-4  # doctest: +SKIP
        True
    """
    import jax

    with jax.enable_x64(True):
        names = QUICK_CASES if quick else CASE_NAMES
        rows = [solve_case(name, KERNELS.get(name, "GM"), quick) for name in names]
        if not quick:
            rows.insert(1, solve_case(CASE_NAMES[0], "SE", quick))
    return rows, _plot(rows)


def table(rows: list[dict[str, Any]]) -> Any:
    """The rows as a DataFrame (no fields)."""
    import pandas as pd

    columns = ["case", "kernel", "grid", "rel_l2", "reference", "seconds", "active"]
    return pd.DataFrame([{key: row[key] for key in columns} for row in rows])


def run(section: Any, quick: bool) -> None:
    """Write the section: the error table and the solution/error fields."""
    rows, figure = compare(quick)
    section.text(
        "GP-HM puts a GP prior with a spectral-mixture kernel on the solution, collocates the "
        "PDE on a tensor grid (so the covariance is a Kronecker product and no dense M×M matrix "
        "is formed) and finds the joint MAP of the grid values, the kernel and two noise "
        "precisions. The reference runs 1e5-1e6 Adam steps; bayescore runs L-BFGS on the kernel "
        "with the grid values solved exactly per kernel (1-D: a dense solve; 2-D Poisson and "
        "advection: the collocation equations as one Sylvester equation; 2-D Allen-Cahn: "
        "Newton's method on them, with the Matérn-5/2 mixture). Errors are the chosen "
        "iterate's (by the objective, never the test grid), against "
        "the exact solution on a "
        "300-point test grid per dimension; 'reference' is the error the reference logged "
        "(best of 20 test-set checkpoints, on its own grid)."
        + (" Quick mode: the 1-D case and advection on a coarser grid only." if quick else "")
    )
    section.table(table(rows), caption="Relative L2 error and wall time (compilation included).")
    section.figure(
        figure,
        "pde_fields",
        caption="Top: the GP-HM solution on the first tenth of the box in each dimension (1-D: "
        "beside the exact one). Bottom: the pointwise error there (1-D: with the posterior "
        "2 sd).",
    )
