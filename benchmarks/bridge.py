"""Schrödinger bridges: LightSB on the rebuilt EOT benchmark; Schrödinger–Föllmer vs BlackJAX.

What is measured
================

**LightSB on the continuous EOT benchmark** (Gushchin et al., NeurIPS 2023 D&B), rebuilt
offline from its construction (``bayescore.metrics.eot.eot_mixture_benchmark``: the recipe of
the benchmark's draft notebook with a fixed seed, so the scores are not comparable number for
number with the published tables). For D ∈ {2, 16, 64, 128} × ε ∈ {0.1, 1, 10}, on 2²⁰
draws of P0 and of P1 (the reference draws fresh minibatches, 1.28 M rows over its 10 000
steps of 128), two fits with K = 50, diagonal S, S init 1.0 (the reference's EOT notebook):

* *reference*: the reference's protocol: Adam with a constant learning rate 1e-3 / 3e-3 /
  6e-2 for ε = 0.1 / 1 / 10, 10 000 steps of 128 + 128 rows, the last iterate
  (``fit_lightsb(..., decay=False, average=0, final_batch_size=None)``);
* *bayescore*: ``fit_lightsb``'s default schedule: Adam, 10 000 steps, learning rate 1e-2
  annealed to 0 by a cosine, minibatches of 128 rows for the first 5000 steps and 512 for
  the last 5000, the average of the iterates of the last 2500 steps returned.

Reported per cell and fit:

* *fit s*: wall time of the fit minus its JAX compile work (*compile s*),
  ``block_until_ready``;
* *cBW*: cBW₂²-UVP (%) of LightSB's sampler by the protocol (1000 draws per test input, the
  instance's 1000 test inputs); *floor*: the same protocol applied to the benchmark's own
  exact sampler (the protocol's estimation floor); *cBW ÷ floor* (target ≤ 1.5 at D ≤ 16);
* *analytic*: cBW₂²-UVP from LightSB's exact conditional moments (no sampling floor: 0 for
  the exact plan) — the model's own error;
* *Gaussian*: the closed-form Gaussian bridge between the moments of the two sample sets
  (``GaussianBridge.from_samples``), analytic cBW — the baseline a solver must beat;
* *BW-UVP*: BW₂²-UVP (%) of 10⁵ draws x ~ P0 → y ~ π̂(·|x) against P1's exact moments
  (bayescore fit).

One out-of-family instance (``eot_gaussian_benchmark``: full-covariance Gaussians, whose plan
is a K = 1 *full* LightSB but not a diagonal one) at D = 16, ε = 1: the diagonal and full
LightSB beside the exact Gaussian plan.

No JAX library ships LightSB (ott-jax has no SB solver); the reference implementation is
PyTorch. The peer here is the protocol's floor, as the issue sets it.

**Schrödinger–Föllmer** on a Bayesian logistic regression (N = 200, d = 5, w ~ N(0, I)):
``bc.inference.bridge.schrodinger_follmer`` (score and Stein drift estimators; and the score
form with the reference N(loc, scale²) set from a 500-step mean-field ``bc.fit``, whose time
is included) vs ``blackjax.schrodinger_follmer`` (Stein form), all with 100 Euler steps and
100 inner draws, 1000 draws. *W2*: exact optimal-transport W2 (assignment) between the 1000
draws and 1000 NUTS draws (4 chains × 2000, thinned); *floor*: W2 between two independent
sets of 1000 NUTS draws. *mean err*: largest |mean − NUTS mean| in NUTS posterior sds; *sd
err*: largest |sd / NUTS sd − 1|. Compile and steady-state (second call) times separately.

``--quick``: D ∈ {2, 16}, 2000 steps, 200 test inputs, fewer SF draws. ``--dims 2 16``
restricts the full run's grid. Run
``python benchmarks/bridge.py [--quick]`` or ``bayescore bench bridge [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import blackjax
import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import paramax
from scipy.optimize import linear_sum_assignment

import bayescore as bc
from bayescore.inference import vi
from bayescore.inference.bridge import GaussianBridge, fit_lightsb, schrodinger_follmer
from bayescore.metrics.bures import bw_uvp
from bayescore.metrics.eot import (
    cbw_uvp,
    cbw_uvp_from_moments,
    eot_gaussian_benchmark,
    eot_mixture_benchmark,
    ground_truth_floor,
)

SEED = core.SEED
DIMS = (2, 16, 64, 128)
EPSILONS = (0.1, 1.0, 10.0)
LEARNING_RATES = {0.1: 1e-3, 1.0: 3e-3, 10.0: 6e-2}  # the reference's EOT notebook
NUM_COMPONENTS = 50
BATCH = 128
TRAIN_ROWS = 2**20  # per side; the reference draws 10 000 fresh minibatches of 128
DRAW_CHUNK = 2**16  # rows per sampler call when drawing them (bounded memory at D = 128)
S_INIT = 1.0


# ------------------------------------------------------------------------------- LightSB


def draw(sampler: Any, key: Any, num_rows: int) -> jax.Array:
    """``num_rows`` draws of ``sampler(key, n)``, ``DRAW_CHUNK`` rows per call."""
    chunks = [
        sampler(jax.random.fold_in(key, i), min(DRAW_CHUNK, num_rows - start))
        for i, start in enumerate(range(0, num_rows, DRAW_CHUNK))
    ]
    return jnp.concatenate(chunks)


def lightsb_cell(benchmark: Any, steps: int, test_inputs: int, diagonal: bool = True) -> dict:
    """Fit LightSB on draws of ``benchmark`` with the reference's protocol and with
    bayescore's default schedule; score both beside the protocol's floor."""
    epsilon = round(float(benchmark.epsilon), 6)  # float32 0.1 is not the key 0.1
    key_x, key_y, key_fit, key_score, key_floor, key_bw = jax.random.split(jax.random.key(SEED), 6)
    x0 = draw(benchmark.sample_x, key_x, TRAIN_ROWS)
    x1 = draw(benchmark.sample_y, key_y, TRAIN_ROWS)
    settings = dict(
        epsilon=epsilon,
        num_components=NUM_COMPONENTS,
        key=key_fit,
        num_steps=steps,
        batch_size=BATCH,
        diagonal=diagonal,
        s_init=S_INIT,
        progress=False,
    )
    protocols = {
        "reference": dict(
            learning_rate=LEARNING_RATES[epsilon],
            decay=False,
            average=0.0,
            final_batch_size=None,
        ),
        "bayescore": {},  # fit_lightsb's defaults
    }

    def score(model: Any) -> tuple[float, float]:
        sampled = cbw_uvp(
            eqx.filter_jit(model.sample), benchmark, key_score, num_test_inputs=test_inputs
        )
        exact = cbw_uvp_from_moments(
            model.conditional_moments, benchmark, num_test_inputs=test_inputs
        )
        return sampled, exact

    floor = ground_truth_floor(benchmark, key_floor, num_test_inputs=test_inputs)
    gaussian = GaussianBridge.from_samples(x0, x1, epsilon)
    gaussian_score = cbw_uvp_from_moments(
        gaussian.conditional, benchmark, num_test_inputs=test_inputs
    )
    row = {
        "dim": benchmark.dim,
        "epsilon": epsilon,
        "family": "diagonal" if diagonal else "full",
        "steps": steps,
        "floor": floor,
        "gaussian_cbw_uvp": gaussian_score,
        "test_inputs": test_inputs,
        "train_rows": TRAIN_ROWS,
    }
    for name, protocol in protocols.items():
        wall, compile_s, (model, losses) = core.timed_call(
            lambda protocol=protocol: fit_lightsb(x0, x1, **settings, **protocol)
        )
        sampled, analytic = score(model)
        row[name] = {
            "settings": dict(protocol) or "fit_lightsb defaults",
            "compile_s": compile_s,
            "fit_s": wall - compile_s,
            "final_loss": float(np.mean(losses[-100:])),
            "cbw_uvp": sampled,
            "ratio_to_floor": sampled / floor,
            "analytic_cbw_uvp": analytic,
        }
    draws = eqx.filter_jit(model.sample)(
        key_bw, benchmark.sample_x(jax.random.fold_in(key_bw, 1), 100_000)
    )
    row["bw_uvp"] = bw_uvp(draws, (benchmark.y_mean, benchmark.y_covariance))
    reference, ours = row["reference"], row["bayescore"]
    core.log(
        f"LightSB D={benchmark.dim} eps={epsilon:g} ({row['family']}): floor {floor:.4f}; "
        f"reference fit {reference['fit_s']:.1f} s, cBW {reference['cbw_uvp']:.4f} "
        f"(× {reference['ratio_to_floor']:.2f}); bayescore fit {ours['fit_s']:.1f} s, cBW "
        f"{ours['cbw_uvp']:.4f} (× {ours['ratio_to_floor']:.2f}), analytic "
        f"{ours['analytic_cbw_uvp']:.4f}; Gaussian {gaussian_score:.2f}"
    )
    return row


def lightsb_rows(quick: bool, dims: tuple[int, ...] | None = None) -> tuple[list[dict], list[dict]]:
    dims = dims or (DIMS[:2] if quick else DIMS)
    steps = 2000 if quick else 10_000
    test_inputs = 200 if quick else 1000
    grid = [
        lightsb_cell(eot_mixture_benchmark(dim, epsilon, seed=SEED), steps, test_inputs)
        for dim in dims
        for epsilon in EPSILONS
    ]
    gaussian = eot_gaussian_benchmark(16, 1.0, seed=SEED)
    exact = cbw_uvp(
        eqx.filter_jit(gaussian.sample_conditional),
        gaussian,
        jax.random.key(SEED + 3),
        num_test_inputs=test_inputs,
    )
    out_of_family = [
        lightsb_cell(gaussian, steps, test_inputs, diagonal=True),
        lightsb_cell(gaussian, steps, test_inputs, diagonal=False),
    ]
    for row in out_of_family:
        row["exact_plan_cbw_uvp"] = exact
    return grid, out_of_family


# --------------------------------------------------------------------- Schrödinger–Föllmer


def logistic(x: Any, y: Any = None) -> None:
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_data(num: int = 200, dim: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(num, dim)).astype(np.float32)
    logits = x @ rng.normal(size=dim)
    return x, (rng.uniform(size=num) < 1 / (1 + np.exp(-logits))).astype(np.float32)


def w2(first: np.ndarray, second: np.ndarray) -> float:
    """Exact W2 between two equal-size point sets (optimal assignment)."""
    cost = np.sum((first[:, None, :] - second[None, :, :]) ** 2, axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def follmer_rows(quick: bool) -> tuple[list[dict], float]:
    x, y = logistic_data()
    target = bc.Target.from_numpyro(logistic, x, y=y)
    num_draws = 400 if quick else 1000
    num_steps, num_inner = 100, 100
    nuts = bc.sample(
        bc.inference.nuts(),
        target,
        num_samples=2000,
        num_warmup=1000,
        num_chains=4,
        key=jax.random.key(SEED),
        progress=False,
    )
    reference = np.asarray(nuts.positions["w"]).reshape(-1, x.shape[1])
    rng = np.random.default_rng(SEED)
    picks = rng.permutation(len(reference))
    nuts_a, nuts_b = reference[picks[:num_draws]], reference[picks[num_draws : 2 * num_draws]]
    floor = w2(nuts_a, nuts_b)
    mean, sd = reference.mean(0), reference.std(0)

    def ours(estimator: str, pilot: bool = False) -> Any:
        def call() -> Any:
            loc, scale = 0.0, 1.0
            if pilot:
                approx = bc.fit(target, vi.mean_field(target), num_steps=500, key=1, progress=False)
                family = paramax.unwrap(approx.family)
                loc, scale = family.loc, family.scale
            result = schrodinger_follmer(
                target,
                num_samples=num_draws // 4,
                num_chains=4,
                num_steps=num_steps,
                num_inner=num_inner,
                estimator=estimator,
                loc=loc,
                scale=scale,
                key=jax.random.key(SEED + 5),
                progress=False,
            )
            return result.positions["w"].reshape(-1, x.shape[1])

        return call

    flat_logdensity = lambda flat: target.logdensity(target.unravel()(flat))  # noqa: E731
    sampler = blackjax.schrodinger_follmer(flat_logdensity, num_steps, num_inner)
    state = sampler.init(jnp.zeros(target.dim))
    blackjax_sample = jax.jit(lambda key: sampler.sample(key, state, num_draws).position)

    runners = {
        "bayescore, score": ours("score"),
        "bayescore, stein": ours("stein"),
        "bayescore, score, loc/scale from mean-field VI": ours("score", pilot=True),
        "blackjax schrodinger_follmer (stein)": lambda: blackjax_sample(jax.random.key(SEED + 5)),
    }
    rows = []
    for name, call in runners.items():
        first_wall, first_compile, draws = core.timed_call(call)
        steady_wall, steady_compile, _ = core.timed_call(call)
        draws = np.asarray(draws)
        rows.append(
            {
                "runner": name,
                "draws": num_draws,
                "compile_s": first_compile,
                "run_s": steady_wall - steady_compile,
                "w2": w2(draws, nuts_a),
                "mean_error_sd": float(np.max(np.abs(draws.mean(0) - mean) / sd)),
                "sd_error": float(np.max(np.abs(draws.std(0) / sd - 1))),
            }
        )
        core.log(f"SF {name}: W2 {rows[-1]['w2']:.3f} (floor {floor:.3f})")
    reference_time = next(r["run_s"] for r in rows if r["runner"].startswith("blackjax"))
    for row in rows:
        row["ratio"] = row["run_s"] / reference_time
    return rows, floor


# ---------------------------------------------------------------------------------- report


def markdown(
    grid: list[dict],
    out_of_family: list[dict],
    sf: list[dict],
    floor: float,
    load: tuple[float, float],
) -> str:
    fmt = core.fmt
    lines = [
        f"LightSB (K = {NUM_COMPONENTS}, diagonal S unless stated, S init {S_INIT:g}, "
        f"{grid[0]['steps']} Adam steps, {grid[0]['train_rows']:,d} training draws per side) on "
        "the rebuilt EOT mixture benchmark; "
        f"{jax.default_backend()}, {os.cpu_count()} CPU cores, load average {load[0]:.1f} "
        f"before / {load[1]:.1f} after. Two fits per cell: *reference* is the reference's "
        f"protocol (constant learning rate {LEARNING_RATES[0.1]:g} / {LEARNING_RATES[1.0]:g} / "
        f"{LEARNING_RATES[10.0]:g} for ε = 0.1 / 1 / 10, minibatches of {BATCH} + {BATCH} rows, "
        "the last iterate); *bayescore* is `fit_lightsb`'s default schedule (learning rate "
        "1e-2 with a cosine decay to 0, minibatches of 128 rows then 512 in the second half, "
        "the average of the last quarter's iterates). cBW₂²-UVP in % over "
        f"{grid[0]['test_inputs']} test inputs × 1000 draws; *floor*: the exact sampler under "
        "the same protocol (target: cBW ÷ floor ≤ 1.5 at D ≤ 16, fit ≤ 10 s); *analytic*: "
        "from LightSB's exact conditional moments; *Gaussian*: the closed-form bridge between "
        "the sample moments; *BW-UVP*: of the bayescore fit. *fit s*: wall time minus JAX "
        "compile work of the fit.",
        "",
        "| D | ε | floor | reference: fit s | cBW | cBW ÷ floor | analytic "
        "| bayescore: fit s | cBW | cBW ÷ floor | analytic | Gaussian | BW-UVP |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in grid:
        ref, ours = r["reference"], r["bayescore"]
        lines.append(
            f"| {r['dim']} | {r['epsilon']:g} | {r['floor']:.4f} | {ref['fit_s']:.1f} "
            f"| {ref['cbw_uvp']:.4f} | {ref['ratio_to_floor']:.2f} "
            f"| {ref['analytic_cbw_uvp']:.4f} | {ours['fit_s']:.1f} | {ours['cbw_uvp']:.4f} "
            f"| {ours['ratio_to_floor']:.2f} | {ours['analytic_cbw_uvp']:.4f} "
            f"| {r['gaussian_cbw_uvp']:.2f} | {r['bw_uvp']:.3f} |"
        )
    lines += [
        "",
        "",
        f"Out of family: full-covariance Gaussians, D = 16, ε = 1 (the exact plan's own "
        f"sampler scores {out_of_family[0]['exact_plan_cbw_uvp']:.3f}).",
        "",
        "| LightSB family | floor | reference: fit s | cBW | analytic | bayescore: fit s | cBW "
        "| analytic | Gaussian | BW-UVP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out_of_family:
        ref, ours = r["reference"], r["bayescore"]
        lines.append(
            f"| {r['family']} | {r['floor']:.3f} | {ref['fit_s']:.1f} | {ref['cbw_uvp']:.3f} "
            f"| {ref['analytic_cbw_uvp']:.3f} | {ours['fit_s']:.1f} | {ours['cbw_uvp']:.3f} "
            f"| {ours['analytic_cbw_uvp']:.3f} | {r['gaussian_cbw_uvp']:.3f} "
            f"| {r['bw_uvp']:.3f} |"
        )
    lines += [
        "",
        "",
        f"Schrödinger–Föllmer on a logistic regression (N = 200, d = 5), 100 Euler steps, 100 "
        f"inner draws, {sf[0]['draws']} draws; W2 to NUTS draws (floor between two NUTS sets: "
        f"{floor:.3f}); *ratio*: run time ÷ BlackJAX's.",
        "",
        "| runner | compile s | run s | ratio | W2 | mean err (sd) | sd err |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sf:
        lines.append(
            f"| {r['runner']} | {r['compile_s']:.1f} | {r['run_s']:.2f} | {fmt(r['ratio'], '.2f')} "
            f"| {r['w2']:.3f} | {r['mean_error_sd']:.2f} | {r['sd_error']:.2f} |"
        )
    return "\n".join(lines)


def run(quick: bool = False, dims: tuple[int, ...] | None = None) -> dict[str, Any]:
    """LightSB grid (``dims``: its dimensions, default all, D ≤ 16 with ``quick``),
    out-of-family instance, Schrödinger–Föllmer; returns rows and markdown."""
    load_before = os.getloadavg()[0]
    grid, out_of_family = lightsb_rows(quick, dims)
    sf, floor = follmer_rows(quick)
    load = (load_before, os.getloadavg()[0])
    return {
        "area": "bridge",
        "rows": grid,
        "out_of_family": out_of_family,
        "schrodinger_follmer": sf,
        "nuts_w2_floor": floor,
        "markdown": markdown(grid, out_of_family, sf, floor, load),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, fewer steps")
    parser.add_argument("--dims", type=int, nargs="+", choices=DIMS, help="LightSB grid's D")
    args = parser.parse_args()
    print(run(quick=args.quick, dims=tuple(args.dims) if args.dims else None)["markdown"])


if __name__ == "__main__":
    main()
