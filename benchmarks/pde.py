"""GP-HM: the paper's PDE cases by bayescore's GP solver and baselines vs the reference's logs.

What is measured
================

Cases: the GP-HM paper's manufactured-solution PDEs (``bayescore.models.pde.cases``; notes
Part 2.2), on the reference's collocation grids, test errors on the shared 300-point (1-D) or
300×300 (2-D) test grids loaded from ``../shared/data/gphm`` (relative L2, the reference's
metric).

Runners, each in its own process (float64):

* **GM / StM**: ``solve(problem, case.kernel(kind))``: Gaussian or Matérn-5/2 spectral
  mixture, Q = 30, the reference's initial frequencies (``freq_scale``) and boundary weight;
  L-BFGS on the kernels with the grid values profiled out (1-D: ``LBFGS_STEPS``
  iterations at the noise levels ``NOISE_LEVELS``, a continuation in the precisions, with
  the iterate (scored every ``CHECK_EVERY``) and the level chosen by the PDE residual on a
  staggered validation grid of N - 1 points, which needs no solution data; between the
  levels the kernel keeps its k largest components, k chosen by the profiled objective
  (``prune_components``), and the level before such a pruning is not a candidate;
  2-D: ``LBFGS_STEPS_CG`` iterations at the same noise levels, chosen the same way; for the
  linear cases (Poisson, advection) the grid values of GM and StM are the exact collocation
  solution at each kernel, a direct Sylvester solve (``method="collocation"``, jitter
  ``COLLOCATION_JITTER``: its derivative matrices K'(K + εI)⁻¹ are the
  more accurate the smaller ε); for 2-D Allen-Cahn, nonlinear in u alone, the same
  collocation equations are solved by Newton's method (GMRES preconditioned by the
  Kronecker sum; GM at jitter ``COLLOCATION_JITTER_GM_NONLINEAR``, where its validation
  residual was smaller). SE and Matérn on 2-D Allen-Cahn take conjugate gradients
  (``method="profile_cg"``, at most ``CG_ITERATIONS`` per solve) inside ``NEWTON_STEPS``
  Gauss-Newton steps per grid solve, with one L-BFGS iteration at each of the longer
  continuation ``NOISE_LEVELS_NONLINEAR``.
* **SE / Matern**: the same solver with the baselines' kernels (no spectral mixture, Q = 30
  as the reference's ``SE_1d``/``Matern52_1d``); in 2-D always ``method="profile_cg"`` (with
  collocation, SE on ``poisson_2d-sin_add_cos`` ran over 10 minutes: L-BFGS's line search
  took many evaluations).
* **PINN**: ``solve_pinn`` (tanh MLP 4×64, ``PINN_ADAM`` Adam steps then ``PINN_LBFGS``
  L-BFGS) on the same ``Problem``: in 1-D on the whole grid; in 2-D each Adam step on
  ``PINN_BATCH_2D`` grid points drawn at random and L-BFGS on one fixed draw of that many
  (``batch_size``; a full-batch second derivative of the network on 160,000 points per step
  would take hours on this CPU), every boundary point in both.

The reported error is the validation-selected iterate's; the test grid never chooses
anything (the reference logs the minimum over 20 test-set checkpoints, which is optimistic).
*val.*: the relative root-mean-square PDE residual on the validation grid.
*ref*: the reference's logged error for that kernel;
*ref time*: its GP-HM-StM wall time (1e5-1e6 Adam steps, unknown hardware, probably GPU).
*time*: wall seconds of ``solve`` (and the test-grid prediction) here, compilation included;
*steady*: the same repeated in the same process, compiled programs cached (GP runners).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "gphm"
CASES_1D = (
    "poisson_1d-single_sin",
    "poisson_1d-sin_cos",
    "poisson_1d-x_time_sinx",
    "poisson_1d-mix_sin",
    "poisson_1d-x2_add_sinx",
    "allencahn_1d-single_sin",
    "allencahn_1d-sin_cos",
)
CASES_2D = (
    "poisson_2d-sin_sin",
    "poisson_2d-sin_add_cos",
    "allencahn_2d-mix-sincos",
    "advection-sin",
)
RUNNERS = ("GM", "StM", "SE", "Matern", "PINN")
LBFGS_STEPS = (30, 10)  # per noise level: the second starts near its optimum
CHECK_EVERY = 2
NOISE_LEVELS = (1e-6, 1e-8)
LBFGS_STEPS_CG = (3, 2)  # per noise level, as LBFGS_STEPS
NEWTON_STEPS = 3  # Gauss-Newton steps per grid solve (2-D Allen-Cahn)
NOISE_LEVELS_NONLINEAR = (1e-2, 1e-4, 1e-6, 1e-8)  # one L-BFGS iteration each
CG_ITERATIONS = int(os.environ.get("PDE_CG_ITERATIONS", 500))
COLLOCATION_JITTER = 1e-8
# GM on 2-D Allen-Cahn: at 1e-8 the collocation values of the Gaussian-envelope kernel stray
# from its interpolant (validation residual 0.28 against 4.3e-4 at 1e-6)
COLLOCATION_JITTER_GM_NONLINEAR = 1e-6
PINN_ADAM = 5000
PINN_LBFGS = 500
PINN_BATCH_2D = 4096  # residual points per PINN step in 2-D (Adam: a fresh draw per step)


def child(name: str, runner: str, quick: bool, steady: bool = True) -> dict[str, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from bayescore.models.pde.cases import CASES, case_problem, load_case

    case = CASES[name]
    data = load_case(name, DATA)
    problem = case_problem(name)
    # the same PDE one point fewer per axis: its points fall between the collocation points
    validation = case_problem(name, grid_size=problem.shape[0] - 1)
    # Twice in this process: the first call's time includes compilation, the second's is the
    # steady state (every compiled program cached); the error is the first call's.
    (row, settings), steady_seconds = timed(case, data, problem, validation, runner, quick), None
    if runner != "PINN" and steady:
        steady_seconds = timed(case, data, problem, validation, runner, quick)[0]["seconds"]
    return {**row, "steady_seconds": steady_seconds, "settings": settings}


def timed(
    case: Any, data: Any, problem: Any, validation: Any, runner: str, quick: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One solve and its test error: ``(row, settings)``."""
    import jax

    from bayescore.models.pde import solve, solve_pinn
    from bayescore.models.pde.cases import relative_l2

    start = time.perf_counter()
    settings: dict[str, Any]
    if runner == "PINN":
        settings = {"num_adam_steps": 500 if quick else PINN_ADAM,
                    "num_lbfgs_steps": 50 if quick else PINN_LBFGS}  # fmt: skip
        if case.dim > 1:
            settings["batch_size"] = PINN_BATCH_2D
        solution = solve_pinn(problem, key=jax.random.key(0), progress=False, **settings)
    elif case.dim == 1:
        settings = {"num_lbfgs_steps": (10, 3) if quick else LBFGS_STEPS,
                    "relative_noise": NOISE_LEVELS, "check_every": CHECK_EVERY}  # fmt: skip
        solution = solve(problem, case.kernel(runner), boundary_weight=case.boundary_weight,
                         validation=validation, progress=False, **settings)  # fmt: skip
    else:
        settings = {"num_lbfgs_steps": (2, 1) if quick else LBFGS_STEPS_CG,
                    "relative_noise": NOISE_LEVELS, "check_every": 1,
                    "max_cg_iterations": CG_ITERATIONS, "method": "profile_cg"}  # fmt: skip
        if runner in ("GM", "StM"):  # a Kronecker sum: the direct solve (Newton: Allen-Cahn)
            del settings["max_cg_iterations"]
            settings.update(method="collocation", jitter=COLLOCATION_JITTER)
            if case.equation == "allen-cahn" and runner == "GM":
                settings.update(jitter=COLLOCATION_JITTER_GM_NONLINEAR)
        elif case.equation == "allen-cahn":
            settings.update(num_newton_steps=NEWTON_STEPS, relative_noise=NOISE_LEVELS_NONLINEAR,
                            num_lbfgs_steps=(1,) * len(NOISE_LEVELS_NONLINEAR))  # fmt: skip
        solution = solve(problem, case.kernel(runner), boundary_weight=case.boundary_weight,
                         validation=validation, progress=False, **settings)  # fmt: skip
    prediction = solution.predict_grid(data.test_axes)
    seconds = time.perf_counter() - start
    row = {"rel_l2": relative_l2(prediction, data.arrays["u_test"]), "seconds": seconds}
    if runner != "PINN":
        row["validation_residual"] = solution.validation_residual(validation)
        row["stages"] = [list(stage) for stage in solution.info.stages]
        components = solution.components()
        row["active_components"] = [len(c) for c in components]
        row["dominant_frequency"] = [c[0].frequency if c else None for c in components]
    return row, settings


def run_row(name: str, runner: str, quick: bool, steady: bool = True) -> dict[str, Any]:
    from bayescore.models.pde.cases import CASES

    case = CASES[name]
    command = [sys.executable, __file__, "--child", name, runner] + (["--quick"] if quick else [])
    command += [] if steady else ["--no-steady"]
    completed = subprocess.run(command, capture_output=True, text=True)
    base = {"case": name, "runner": runner, "reference": case.reference.get(runner),
            "reference_time": case.reference_time}  # fmt: skip
    if completed.returncode != 0:
        return {**base, "failed": completed.stderr[-500:]}
    return {**base, **json.loads(completed.stdout.strip().splitlines()[-1])}


def markdown(rows: list[dict[str, Any]], load: tuple[float, float]) -> str:
    lines = [
        f"GP-HM benchmark; cpu, {os.cpu_count()} CPU cores, load average {load[0]:.1f} before / "
        f"{load[1]:.1f} after. Relative L2 error on the 300-point test grid(s) of the iterate "
        "solve returns (chosen by the PDE residual on a staggered validation grid); *ref*: "
        "the reference's logged error for the same kernel (best of 20 test-set checkpoints); "
        "*ratio*: error ÷ ref; *time*: seconds of the first solve in a fresh process, "
        "compilation included; *steady*: the same solve repeated in that process (compiled "
        "programs cached); *ref time*: the reference's GP-HM-StM run; *val.*: the relative RMS "
        "PDE residual on the staggered validation grid.",
        "",
        "| case | runner | rel. L2 | ref | ratio | time (s) | steady (s) | ref time (s) "
        "| time ÷ ref time | steady ÷ ref time | val. | active Q |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "failed" in row:
            lines.append(f"| {row['case']} | {row['runner']} | failed | | | | | | | | | |")
            continue
        ref = row.get("reference")
        ratio = f"{row['rel_l2'] / ref:.2g}" if ref else ""
        ref_time = row.get("reference_time")
        steady = row.get("steady_seconds")
        share, steady_share = (
            f"{100 * seconds / ref_time:.1f} %" if ref_time and seconds is not None else ""
            for seconds in (row["seconds"], steady)
        )
        val = row.get("validation_residual")
        lines.append(
            f"| {row['case']} | {row['runner']} | {row['rel_l2']:.3g} | "
            f"{ref if ref is not None else ''} | {ratio} | {row['seconds']:.0f} | "
            f"{'' if steady is None else f'{steady:.0f}'} | {ref_time or ''} | {share} | "
            f"{steady_share} | {'' if val is None else f'{val:.2g}'} | "
            f"{row.get('active_components', '')} |"
        )
    return "\n".join(lines)


def run(
    quick: bool = False,
    cases: list[str] | None = None,
    runners: list[str] | None = None,
    steady: bool = True,
) -> dict[str, Any]:
    """Every case × every runner; quick: one 1-D case with GM.

    ``cases`` and ``runners`` restrict the plan (``python benchmarks/pde.py --cases
    poisson_1d-sin_cos --runners GM SE``); ``steady=False`` (``--no-steady``) skips the
    repeated solve that measures the steady-state time.
    """
    if not DATA.is_dir():
        return {"area": "pde", "rows": [], "markdown": f"skipped: no data at {DATA.name}"}
    load_before = os.getloadavg()[0]
    if quick:
        plan = [("poisson_1d-single_sin", "GM")]
    else:
        plan = [(name, runner) for name in CASES_1D + CASES_2D for runner in RUNNERS]
    plan = [
        (name, runner)
        for name, runner in plan
        if (cases is None or name in cases) and (runners is None or runner in runners)
    ]
    rows = []
    for name, runner in plan:
        rows.append(run_row(name, runner, quick, steady))
        print(markdown(rows[-1:], (load_before, os.getloadavg()[0])).splitlines()[-1], flush=True)
    return {
        "area": "pde",
        "rows": rows,
        "markdown": markdown(rows, (load_before, os.getloadavg()[0])),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("CASE", "RUNNER"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="+", choices=CASES_1D + CASES_2D)
    parser.add_argument("--runners", nargs="+", choices=RUNNERS)
    parser.add_argument("--no-steady", action="store_true", help="skip the repeated solve")
    parser.add_argument("--out", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.quick, not args.no_steady)))
    else:
        result = run(args.quick, args.cases, args.runners, not args.no_steady)
        print(result["markdown"])
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
