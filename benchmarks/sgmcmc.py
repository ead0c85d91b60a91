"""Stochastic-gradient MCMC: bayescore SGLD and SGHMC against BlackJAX and SGMCMCJax, with KSD.

What is measured
================

Bayesian logistic regression, ``w ~ Normal(0, I_d)``, ``y ~ Bernoulli(logits=X @ w)``, with
N = 10⁵ simulated points, X standard normal (features already standardised), d ∈ {10, 50, 100}
(data from ``benchmarks/core.py``'s ``logistic_problem``, fixed seed; float32, default JAX
device). Every runner uses minibatches of B = 1000 (1 %), 10⁴ gradient evaluations on one
chain, all starting from the posterior mean (the mean of the NUTS reference's draws, below),
with the same step size ``h = 1e-5`` (for SGLD ``θ ← θ + h ĝ + √(2h) ξ``; checked stable:
``h`` times the largest curvature of the log posterior, about N/4, is 0.25 at N = 10⁵).

Runners (each timed as one call that returns every draw):

* **bayescore SGLD / SGHMC**: ``bc.sample(bc.inference.sgld(h) | sghmc(h, friction=0.1),
  target, num_samples=10⁴, num_warmup=0, num_chains=1, progress=False)`` on
  ``bc.Target.from_numpyro`` of the model with ``numpyro.plate("data", N, subsample_size=B)``.
  Minibatches: bayescore's epoch-wise permutation streams (without replacement, on device).
  The call includes everything ``bc.sample`` records per draw (``sample_stats``: step size,
  exploration flag, the minibatch ``lp_estimate``, gradient passes, divergence) and its
  start-up (the full-data density and gradient at the initial point, checked finite).
* **blackjax.sgld / blackjax.sghmc**: one ``jax.jit`` of a ``lax.scan`` calling
  ``blackjax.sgld(grad_estimator).step`` / ``blackjax.sghmc(...).step`` with
  ``grad_estimator = blackjax.sgmcmc.gradients.grad_estimator(logprior, loglikelihood, N)``
  (log likelihood written with ``jnp``, summed over the minibatch), the minibatch indices
  drawn inside the scan with ``jax.random.randint`` (with replacement, as SGMCMCJax's
  ``random.choice`` default); data are arguments of the jitted function.
* **sgmcmcjax SGLD / SGHMC**: ``sgmcmcjax.samplers.build_sgld_sampler(h, loglik, logprior,
  (X, y), B, pbar=False)`` / ``build_sghmc_sampler(h, 10, ..., alpha=0.1, pbar=False)``;
  its sampler is ``jax.jit`` with the data closed over (its API). SGMCMCJax 0.2.13 imports
  ``jax.experimental.host_callback``, removed from JAX, at import time, for its progress bar
  only; with ``pbar=False`` it is never called, so the benchmark registers an empty stand-in
  module under that name before importing it (it is not a dependency of bayescore). If the
  import still fails the rows say why.

SGHMC is not one algorithm across libraries. bayescore keeps the momentum (Chen et al.'s
Eq. 15: ``v ← (1−a)v + η ĝ + N(0, 2aη)``, ``θ ← θ + v``, one gradient per step, ``η = h``,
``a = 0.1``); BlackJAX and SGMCMCJax resample the momentum every outer step and then take
``L`` inner steps on it. The peers run ``L = 10`` inner steps and 10³ outer steps, the same
10⁴ gradient evaluations, with their parameters mapped to the same dynamics (SGMCMCJax:
``dt = h``, ``alpha = a``, its update is bayescore's; BlackJAX's ``x ← x + εp``,
``p ← (1−αε)p + εĝ + N(0, 2αε)`` with ``ε = √h``, ``α = a/ε`` is the same in ``v = εp``).
BlackJAX reuses one minibatch for the 10 inner steps (its API); SGMCMCJax draws one per inner
step. The peers keep one draw per outer step (10³ draws), bayescore every step (10⁴).

Timing (``benchmarks/core.py``'s ``measure``): each runner's first call (which compiles) is
reported apart as *compile s*, then ``repeats`` interleaved rounds of identical calls (same
key, same data; bayescore's sampling programs are cached, so repeated calls do not compile);
*run s* is wall time minus JAX compile work inside the call, median / min. Ratios are
``bayescore ÷ peer`` of run time (targets: ≤ 0.8 of BlackJAX, ≤ 0.5 of SGMCMCJax).

Accuracy: the kernel Stein discrepancy (``bayescore.metrics.imq_ksd``, IMQ kernel, c = 1,
β = −½) of 1000 draws of each runner (every 10th of bayescore's, every draw of the peers'
SGHMC, every 10th of the peers' SGLD; no burn-in is dropped, the chains start at the posterior
mean) against the full-data score ``∇ log π`` (all N
points). Beside them: the KSD of 1000 draws of NUTS on the same Target (full-data gradients,
``bc.inference.nuts()``, 300 warmup steps, one chain), the reference an exact sampler reaches
with the same number of draws. SG-MCMC's bias from the minibatch noise and the discretisation
shows as a KSD above NUTS's; equal KSD across runners of one algorithm means equal accuracy.

Digits MLP: SGLD against S-SGMCMC (Alexos et al. 2022) on the Bayesian MLP of
``examples/sgmcmc_digits_mlp.py`` (``bayescore.demo.digits``): SGLD, structured SGLD with the
two layers as groups, and its dropout variant (p = 0.5, L = 2 copies), same step size and
steps. Reported: test accuracy, ECE and test log predictive density of the Bayesian model
average, and the bulk ESS of identifiable per-draw quantities (the weights themselves are
not: hidden units permute), per 1000 minibatch gradient passes.

Sizes: full, N = 10⁵, d ∈ {10, 50, 100}, 10⁴ gradient evaluations, 5 repeated rounds
(*median* and *min* over them: on a shared machine single calls vary by ±30 %); digits: 2
chains × 1000 draws thinned by 10. The whole run takes about 7 minutes on 2 CPU cores.
``--quick``: N = 10⁴, d = 10, 10³ gradient evaluations, 1 repeated round, 100 digits draws:
a smoke test, too short for ratios.

Run ``python benchmarks/sgmcmc.py [--quick]`` or ``bayescore bench sgmcmc [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
from typing import Any, NamedTuple

import blackjax
import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from arviz_stats.base import array_stats
from jaxtyping import Array

import bayescore as bc
from bayescore.metrics import imq_ksd

SEED = core.SEED
STEP_SIZE = 1e-5
FRICTION = 0.1
INNER = 10  # the peers' SGHMC inner steps per momentum refresh
KSD_DRAWS = 1000
REDUCTIONS = (2, 4)  # the peers' SGLD step size divided by these, for the equal-KSD ratio


class Sizes(NamedTuple):
    """Run lengths and problem sizes of one benchmark mode.

    Attributes:
        n: data points.
        dims: covariate counts d.
        batch: minibatch size.
        steps: gradient evaluations per call.
        repeats: timed rounds after the first call.
        nuts_warmup: warmup steps of the NUTS reference.
        digits_draws: draws per chain on the digits MLP (thinned by 10, as many burn-in
            steps as kept steps).
    """

    n: int
    dims: tuple[int, ...]
    batch: int
    steps: int
    repeats: int
    nuts_warmup: int
    digits_draws: int


FULL = Sizes(
    n=100_000,
    dims=(10, 50, 100),
    batch=1000,
    steps=10_000,
    repeats=5,
    nuts_warmup=300,
    digits_draws=1000,
)
QUICK = Sizes(
    n=10_000, dims=(10,), batch=100, steps=1000, repeats=1, nuts_warmup=200, digits_draws=100
)


def subsampled_model(X: Array, y: Array, batch: int) -> Any:
    """core.py's logistic model with its data plate subsampled to ``batch``."""

    def model(X: Array, y: Array) -> None:
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("data", X.shape[0], subsample_size=batch) as idx:
            numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ w), obs=y[idx])

    return model


def logprior(w: Array) -> Array:
    return -0.5 * jnp.sum(w * w)


def loglik_one(w: Array, x: Array, y: Array) -> Array:
    """Log likelihood of one observation (SGMCMCJax's convention)."""
    logits = x @ w
    return y * logits - jnp.logaddexp(0.0, logits)


def loglik_batch(w: Array, batch: tuple[Array, Array]) -> Array:
    """Summed log likelihood of a minibatch (BlackJAX's convention)."""
    x, y = batch
    logits = x @ w
    return jnp.sum(y * logits - jnp.logaddexp(0.0, logits))


def make_blackjax(kind: str, n: int, batch: int, steps: int, sgld_step: float = STEP_SIZE) -> Any:
    """Hand-written loop: ``jax.jit`` of a ``lax.scan`` of ``blackjax.sgld``/``sghmc`` steps."""
    grad_estimator = blackjax.sgmcmc.gradients.grad_estimator(logprior, loglik_batch, n)
    if kind == "sgld":
        algorithm, outer, step_size = blackjax.sgld(grad_estimator), steps, sgld_step
    else:
        epsilon = float(np.sqrt(STEP_SIZE))
        algorithm = blackjax.sghmc(
            grad_estimator, num_integration_steps=INNER, alpha=FRICTION / epsilon
        )
        outer, step_size = steps // INNER, epsilon

    @jax.jit
    def run(key: Array, w0: Array, X: Array, y: Array) -> Array:
        def body(w: Array, key: Array) -> tuple[Array, Array]:
            batch_key, step_key = jax.random.split(key)
            idx = jax.random.randint(batch_key, (batch,), 0, n)
            w = algorithm.step(step_key, w, (X[idx], y[idx]), step_size)
            return w, w

        _, draws = jax.lax.scan(body, w0, jax.random.split(key, outer))
        return draws

    return run


def import_sgmcmcjax() -> tuple[Any, str]:
    """``sgmcmcjax.samplers`` (with the progress-bar stand-in, see the docstring), or an error."""
    name = "jax.experimental.host_callback"
    try:
        importlib.import_module(name)
    except ImportError:
        stand_in = types.ModuleType(name)

        def id_tap(*_: Any, **__: Any) -> Any:
            raise RuntimeError("progress bar unavailable (pbar=False only)")

        stand_in.id_tap = id_tap
        sys.modules[name] = stand_in
        jax.experimental.host_callback = stand_in  # what `from jax.experimental import` reads
    try:
        import sgmcmcjax.samplers as samplers

        return samplers, ""
    except Exception as error:  # noqa: BLE001 - any import failure is reported, not raised
        return None, f"unavailable: {type(error).__name__}: {error}"


def full_scores(target: bc.Target, draws: Array) -> Array:
    """``∇ log π`` on all the data at each row of ``draws`` (n, d)."""
    grad = jax.jit(
        lambda ws: jax.lax.map(
            lambda w: jax.grad(target.logdensity)({"w": w})["w"], ws, batch_size=25
        )
    )
    return grad(draws)


def ksd_of(target: bc.Target, draws: Any) -> float:
    draws = jnp.asarray(np.asarray(draws, dtype=np.float32))
    return float(imq_ksd(draws, full_scores(target, draws)))


def run_dim(sizes: Sizes, d: int, sgmcmcjax: Any, note: str) -> list[dict[str, Any]]:
    """Every runner on one dimension: timings, ratios and KSD."""
    problem = core.logistic_problem(sizes.n, d)
    X, y = problem.data
    target = bc.Target.from_numpyro(subsampled_model(X, y, sizes.batch), X, y)
    key = jax.random.key(SEED)
    steps = sizes.steps
    nuts = bc.sample(
        bc.inference.nuts(),
        target,
        num_samples=KSD_DRAWS,
        num_warmup=sizes.nuts_warmup,
        num_chains=1,
        key=key,
        progress=False,
    )
    nuts_ksd = ksd_of(target, nuts.positions["w"][0])
    core.log(f"d={d} NUTS KSD {nuts_ksd:.4g}")
    w0 = jnp.mean(nuts.positions["w"][0], axis=0)  # every runner starts at the posterior mean

    def bayescore_call(method: Any) -> Any:
        result = bc.sample(
            method,
            target,
            num_samples=steps,
            num_warmup=0,
            num_chains=1,
            key=key,
            init_params={"w": w0},
            progress=False,
        )
        return result.positions["w"][0]

    calls: dict[str, Any] = {
        "bayescore SGLD": lambda: bayescore_call(bc.inference.sgld(STEP_SIZE)),
        "bayescore SGHMC": lambda: bayescore_call(bc.inference.sghmc(STEP_SIZE, friction=FRICTION)),
    }
    for kind in ("sgld", "sghmc"):
        run = make_blackjax(kind, sizes.n, sizes.batch, steps)
        calls[f"blackjax.{kind}"] = lambda run=run: run(key, w0, X, y)
    if sgmcmcjax is not None:
        data = (X, y)
        sgld = sgmcmcjax.build_sgld_sampler(
            STEP_SIZE, loglik_one, logprior, data, sizes.batch, pbar=False
        )
        sghmc = sgmcmcjax.build_sghmc_sampler(
            STEP_SIZE, INNER, loglik_one, logprior, data, sizes.batch, alpha=FRICTION, pbar=False
        )
        calls["sgmcmcjax SGLD"] = lambda: sgld(key, steps, w0)
        calls["sgmcmcjax SGHMC"] = lambda: sghmc(key, steps // INNER, w0)

    timings = core.measure(calls, sizes.repeats, f"d={d}")

    rows = []
    for name, (timing, draws) in timings.items():
        draws = np.asarray(draws)
        stride = max(1, len(draws) // KSD_DRAWS)
        kept = draws[stride - 1 :: stride]
        finite = bool(np.isfinite(draws).all())
        rows.append(
            {
                "d": d,
                "runner": name,
                "algorithm": "SGHMC" if "hmc" in name.lower() else "SGLD",
                "gradient_evaluations": steps,
                "draws": len(draws),
                "compile_s": timing.first_compile,
                "first_s": timing.first,
                "recompile_s": timing.recompile_median,
                "run_s": timing.run_median,
                "run_min_s": timing.run_min,
                "us_per_gradient": 1e6 * timing.run_median / steps,
                "ksd": ksd_of(target, kept) if finite else None,
                "ksd_draws": len(kept),
                "nuts_ksd": nuts_ksd,
                "check": "" if finite else "NON-FINITE draws",
            }
        )
    for row in rows:
        ours = next(
            r for r in rows if r["runner"] == f"bayescore {row['algorithm']}" and r["d"] == d
        )
        row["ratio_run"] = ours["run_s"] / row["run_s"]
        row["ratio_run_min"] = ours["run_min_s"] / row["run_min_s"]

    # Equal KSD (SGLD, the one algorithm all three share): the peers again at h/2 and h/4
    # with 2x and 4x the steps (the same diffusion time h * steps), to find the step size
    # at which their KSD falls to bayescore's at h; their time there is run s x h / h'.
    peers: dict[str, Any] = {
        "blackjax.sgld": lambda h, n_steps: (
            lambda run=make_blackjax("sgld", sizes.n, sizes.batch, n_steps, h): run(key, w0, X, y)
        )
    }
    if sgmcmcjax is not None:

        def sgmcmcjax_sgld(h: float, n_steps: int) -> Any:
            sampler = sgmcmcjax.build_sgld_sampler(
                h, loglik_one, logprior, (X, y), sizes.batch, pbar=False
            )
            return lambda: sampler(key, n_steps, w0)

        peers["sgmcmcjax SGLD"] = sgmcmcjax_sgld
    ours = next(r for r in rows if r["runner"] == "bayescore SGLD")
    for name, build in peers.items():
        row = next(r for r in rows if r["runner"] == name)
        ksds = {1: row["ksd"]}
        for factor in REDUCTIONS:
            draws = np.asarray(build(STEP_SIZE / factor, steps * factor)())
            stride = max(1, len(draws) // KSD_DRAWS)
            finite = bool(np.isfinite(draws).all())
            ksds[factor] = ksd_of(target, draws[stride - 1 :: stride]) if finite else None
        factor, reached = equal_ksd_factor(ksds, ours["ksd"])
        row.update(
            ksd_by_reduction={str(k): v for k, v in ksds.items()},
            equal_ksd_factor=factor,
            equal_ksd_reached=reached,
            ratio_equal_ksd=ours["run_s"] / (row["run_s"] * factor),
            ratio_equal_ksd_min=ours["run_min_s"] / (row["run_min_s"] * factor),
        )
        core.log(f"d={d} {name}: KSD by step-size reduction {ksds}; factor {factor:.2f}")
    if sgmcmcjax is None:
        rows.append({"d": d, "runner": "sgmcmcjax", "algorithm": "–", "check": note})
    return rows


def equal_ksd_factor(ksds: dict[int, Any], target_ksd: float) -> tuple[float, bool]:
    """The step-size reduction ``f`` at which a peer's KSD meets ``target_ksd``, and whether
    it was reached within the runs.

    ``ksds`` maps a reduction factor (1, 2, 4, ...) to the KSD at step size ``h / f`` with
    ``f`` times the steps. Linear interpolation of ``log KSD`` in ``log f`` between the first
    pair that brackets the target; 1 when the peer is already as accurate; the largest
    factor (a lower bound, ``reached`` False) when no run gets there.

    Example:
        >>> equal_ksd_factor({1: 40.0, 2: 20.0, 4: 10.0}, 20.0)
        (2.0, True)
    """
    factors = sorted(f for f, v in ksds.items() if v is not None)
    if not factors or ksds[factors[0]] <= target_ksd:
        return 1.0, True
    for low, high in zip(factors, factors[1:], strict=False):
        if ksds[high] <= target_ksd:
            position = np.log(ksds[low] / target_ksd) / np.log(ksds[low] / ksds[high])
            return float(np.exp(np.log(low) + position * np.log(high / low))), True
    return float(factors[-1]), False


DIGITS_STEP = 1e-4
DIGITS_THIN = 10
DIGITS_CHAINS = 2


def digits_rows(sizes: Sizes) -> list[dict[str, Any]]:
    """SGLD against S-SGMCMC on the digits MLP: accuracy, calibration, ESS per gradient."""
    from bayescore.demo.digits import digits_data, mlp, per_draw_probabilities
    from bayescore.metrics import expected_calibration_error

    x_train, x_test, y_train, y_test = digits_data()
    target = bc.Target.from_numpyro(mlp, x_train, y=y_train, batch_size=100)
    layers = [["w1", "b1"], ["w2", "b2"]]
    methods = {
        "SGLD": bc.inference.sgld(DIGITS_STEP),
        "S-SGLD, 2 layer groups": bc.inference.sgld(
            DIGITS_STEP,
            estimator=bc.inference.sgmcmc.Structured(groups=layers, buffer_size=200, thinning=10),
        ),
        "S-SGLD dropout p=0.5, L=2": bc.inference.sgld(
            DIGITS_STEP,
            estimator=bc.inference.sgmcmc.Structured(
                groups=layers, buffer_size=200, thinning=10, dropout=0.5, num_copies=2
            ),
        ),
    }
    rows = []
    for name, method in methods.items():
        start = time.perf_counter()
        result = bc.sample(
            method,
            target,
            num_samples=sizes.digits_draws,
            num_warmup=sizes.digits_draws * DIGITS_THIN,
            num_chains=DIGITS_CHAINS,
            thin=DIGITS_THIN,
            key=SEED,
            progress=False,
        )
        jax.block_until_ready(result.positions)
        seconds = time.perf_counter() - start
        per_draw = per_draw_probabilities(result.positions, x_test)  # (chain, draw, n, 10)
        average = per_draw.mean(axis=(0, 1))
        true_class = np.take_along_axis(per_draw, y_test[None, None, :, None], axis=-1)[..., 0]
        log_predictive = np.log(true_class + 1e-12).mean(axis=-1)  # (chain, draw)
        point_ess = array_stats.ess(
            np.moveaxis(true_class.astype(np.float64), -1, 0),
            chain_axis=-2,
            draw_axis=-1,
            method="bulk",
        )
        lpd_ess = float(
            array_stats.ess(log_predictive.astype(np.float64), chain_axis=0, draw_axis=1)
        )
        passes_per_step = float(np.mean(result.stats["n_steps"]))
        total_passes = (
            passes_per_step * DIGITS_CHAINS * sizes.digits_draws * DIGITS_THIN * 2
        )  # burn-in and kept steps
        kept_passes = passes_per_step * DIGITS_CHAINS * sizes.digits_draws * DIGITS_THIN
        rows.append(
            {
                "runner": name,
                "accuracy": float(np.mean(average.argmax(axis=1) == y_test)),
                "ece": expected_calibration_error(average, y_test),
                "test_lpd": float(np.log(np.take_along_axis(average, y_test[:, None], 1)).mean()),
                "passes_per_step": passes_per_step,
                "gradient_passes": total_passes,
                "lpd_ess": lpd_ess,
                "median_point_ess": float(np.median(point_ess)),
                "lpd_ess_per_1k_passes": 1000 * lpd_ess / kept_passes,
                "point_ess_per_1k_passes": 1000 * float(np.median(point_ess)) / kept_passes,
                "seconds": seconds,
            }
        )
        core.log(f"digits {name}: {rows[-1]}")
    return rows


def digits_markdown(rows: list[dict[str, Any]], sizes: Sizes) -> str:
    fmt = core.fmt
    lines = [
        f"Bayesian MLP 64-50-10 (3760 parameters) on scikit-learn's digits (1437 training, "
        f"360 test images), minibatch 100, step size {DIGITS_STEP:g}, {DIGITS_CHAINS} chains "
        f"x {sizes.digits_draws} draws every {DIGITS_THIN} steps after as many burn-in steps. "
        "*accuracy*, *ECE* (10 bins), *test lpd*: of the Bayesian model average. ESS (bulk, "
        "ArviZ) of two identifiable per-draw quantities: the mean test log predictive "
        "density (*lpd ESS*) and the probability of each test image's true class (*point "
        "ESS*, median over the 360 images); *per 1k passes*: ESS per 1000 minibatch gradient "
        "passes of the kept steps (S-SGLD takes 2 per step). *seconds*: the whole bc.sample "
        "call, compilation included.",
        "",
        "| runner | accuracy | ECE | test lpd | passes/step | lpd ESS | point ESS (median) "
        "| lpd ESS per 1k passes | point ESS per 1k passes | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runner']} | {fmt(r['accuracy'], '.4f')} | {fmt(r['ece'], '.4f')} "
            f"| {fmt(r['test_lpd'], '.4f')} | {fmt(r['passes_per_step'], '.0f')} "
            f"| {fmt(r['lpd_ess'], '.0f')} | {fmt(r['median_point_ess'], '.0f')} "
            f"| {fmt(r['lpd_ess_per_1k_passes'], '.2f')} "
            f"| {fmt(r['point_ess_per_1k_passes'], '.2f')} | {fmt(r['seconds'], '.1f')} |"
        )
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], sizes: Sizes, load: tuple[float, float]) -> str:
    """One table: time, ratio and KSD per runner and dimension."""
    fmt, pair = core.fmt, core.pair
    lines = [
        f"Logistic regression, N = {sizes.n:,d}, minibatch {sizes.batch}, "
        f"{sizes.steps:,d} gradient evaluations, 1 chain, step size {STEP_SIZE:g}, SGHMC "
        f"friction {FRICTION} (peers: {INNER} inner steps per momentum refresh); "
        f"{jax.default_backend()}, {os.cpu_count()} CPU cores, load average {load[0]:.1f} "
        f"before / {load[1]:.1f} after. *run*: wall time minus JAX compile work, median / min "
        f"over {sizes.repeats} repeated calls. *ratio*: bayescore ÷ runner (same algorithm); "
        "targets ≤ 0.8 (BlackJAX), ≤ 0.5 (SGMCMCJax). *KSD*: IMQ (c = 1, β = −½) of "
        f"{KSD_DRAWS} thinned draws against the full-data score; *NUTS KSD*: {KSD_DRAWS} NUTS "
        "draws of the same Target.",
        "",
        "| d | runner | compile s | run s (median / min) | µs per grad | ratio (median / min) "
        "| KSD | NUTS KSD | check |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['runner']} | {fmt(r.get('compile_s'), '.1f')} "
            f"| {pair(r.get('run_s'), r.get('run_min_s'), '.3f')} "
            f"| {fmt(r.get('us_per_gradient'), '.1f')} "
            f"| {pair(r.get('ratio_run'), r.get('ratio_run_min'), '.2f')} "
            f"| {fmt(r.get('ksd'), '.3g')} | {fmt(r.get('nuts_ksd'), '.3g')} "
            f"| {r.get('check', '')} |"
        )
    lines += [
        "",
        "**SGLD at equal KSD.** The peers' SGLD again with step size h/2 and h/4 and 2x and 4x "
        "the steps (the same diffusion time); *factor*: the reduction f at which their KSD "
        "meets bayescore's at h (log-log interpolation; '≥' when h/4 does not get there, so "
        "the ratio is an upper bound); their time at equal KSD is *run s* x f; *ratio*: "
        "bayescore's run s ÷ that (median / min).",
        "",
        "| d | runner | KSD at h, h/2, h/4 | bayescore KSD at h | factor | ratio at equal KSD |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if "equal_ksd_factor" not in r:
            continue
        ours = next(o for o in rows if o["d"] == r["d"] and o["runner"] == "bayescore SGLD")
        ksds = ", ".join(fmt(v, ".3g") for v in r["ksd_by_reduction"].values())
        bound = "" if r["equal_ksd_reached"] else "≥ "
        upper = "" if r["equal_ksd_reached"] else "≤ "
        lines.append(
            f"| {r['d']} | {r['runner']} | {ksds} | {fmt(ours['ksd'], '.3g')} "
            f"| {bound}{r['equal_ksd_factor']:.2f} "
            f"| {upper}{pair(r['ratio_equal_ksd'], r['ratio_equal_ksd_min'], '.2f')} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """All dimensions; returns ``{"area": "sgmcmc", "rows": [...], "markdown": "..."}``."""
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    sgmcmcjax, note = import_sgmcmcjax()
    rows: list[dict[str, Any]] = []
    for d in sizes.dims:
        rows += run_dim(sizes, d, sgmcmcjax, note)
    for item in rows:
        item.update(backend=jax.default_backend(), sizes=sizes._asdict())
    load = (load_before, os.getloadavg()[0])
    digits = digits_rows(sizes)
    return {
        "area": "sgmcmc",
        "rows": rows,
        "digits": digits,
        "markdown": markdown(rows, sizes, load) + "\n\n" + digits_markdown(digits, sizes),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, smaller data")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
