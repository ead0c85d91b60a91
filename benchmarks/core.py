"""Driver overhead of ``bc.sample``: NUTS through bayescore, hand-written BlackJAX and NumPyro.

What is measured
================

Two targets (float32, default JAX device, data and matrices from fixed seeds):

* ``gaussian``: a 100-dimensional N(0, Σ) with Σ = Q diag(λ) Qᵀ, Q a random rotation and λ
  log-spaced in [1, 100] (condition number 100); log density ``-½ xᵀ Σ⁻¹ x`` written with
  ``jnp``, the precision matrix a constant of the program for every runner.
* ``logistic``: Bayesian logistic regression, N = 10⁴ observations, d = 20 (NumPyro model with
  a Normal(0, 1) prior on ``w`` and ``Bernoulli(logits=X @ w)``); bayescore samples
  ``bc.Target.from_numpyro(model, X, y)``, the hand-written loop uses the same log density
  (NumPyro's ``potential_energy`` of the same model, negated), NumPyro runs the model.

Three runners, each NUTS with 4 chains, ``num_warmup`` warmup steps and ``num_samples`` kept
draws per chain (500 / 500; ``--quick``: 100 / 100), maximal tree depth 10, target acceptance
0.8, diagonal mass matrix, every chain adapting on its own:

1. **bayescore**: ``bc.sample(bc.inference.nuts(), target, ..., progress=False)``.
2. **hand-written**: one ``jax.jit`` function: ``blackjax.window_adaptation(blackjax.nuts,
   logdensity).run`` vmapped over the 4 chains, then a ``lax.scan`` over ``num_samples`` steps
   of ``blackjax.nuts.build_kernel()`` vmapped over chains with each chain's tuned step size
   and inverse mass matrix, keys pre-split. It keeps what bayescore keeps per draw (position,
   log density, acceptance rate, divergence, leapfrog steps, tree depth, energy), not BlackJAX's
   full ``NUTSInfo`` (whose momenta and trajectory end points would cost it three more
   position-sized outputs per step). Data (X, y) are arguments of the jitted function, as they
   are for bayescore, whose Target carries them as pytree leaves.
3. **numpyro**: ``MCMC(NUTS(model), chain_method="vectorized", progress_bar=False).run`` with
   ``extra_fields=("num_steps",)`` (for the Gaussian, ``NUTS(potential_fn=...)`` with the
   hand-written runner's starting points).

Two comparisons
---------------

**full run** (warmup + sampling, the numbers a user sees). This is not quite apples to apples:
the three warmups are different implementations of Stan's windowed adaptation (bayescore's
step-by-step state machine in ``bayescore.inference.adaptation``, BlackJAX's
``staged_adaptation``, NumPyro's own), start from different points with different random
numbers, and tune slightly different step sizes and mass matrices, so their NUTS trajectories
have different lengths. Time is therefore also reported per gradient evaluation (leapfrog
steps summed over chains and over warmup and sampling): **µs/grad is the honest overhead
measure**, the raw time ratio is shown beside it. Caveat: vmapped chains run NUTS's while loops
in lock step, so a step costs what its longest chain costs; µs/grad (a sum over chains)
therefore also moves with how unequal the chains' trajectory lengths are.

**sampling** (the tuned kernel only, the exact comparison). bayescore's compiled sampling
program (``bayescore.core.driver._draw``, the second of the two programs ``bc.sample`` runs)
against the hand-written ``lax.scan``, both from the same post-warmup states (bayescore's
``_warmup``), with the same tuned parameters and the same per-step keys
(``fold_in(chain_key, step)``, as the driver derives them; the hand-written loop derives them
inside its jitted function before the scan). Both compute the same trajectories (checked:
same gradient count), so the time ratio is the driver's overhead alone. This reaches into
private driver functions; if they change, the rows say so instead of failing.

Counting gradient evaluations
-----------------------------

``bc.sample`` returns ``n_steps`` for the draws only. The benchmark replays bayescore's warmup
(the method's own warmup kernel, the driver's starting points and keys) outside the timing and
checks the replay is exact by comparing the step sizes and inverse mass matrices it tunes with
``result.parameters``. BlackJAX reports ``num_integration_steps`` for warmup (kept through
``get_filter_adapt_info_fn``) and sampling. NumPyro reports ``num_steps`` for the draws; its
warmup steps come from an untimed ``MCMC.warmup(collect_warmup=True)`` with the same key,
checked by comparing the adapted step sizes with the timed run's.

Timing
------

``steady s`` is the median wall time of ``repeats`` (≥ 3) calls after the first, each with the
same key and data (so every call does identical work), up to ``jax.block_until_ready`` of its
draws and statistics. ``compile s`` is the first call's wall time minus ``steady s`` (tracing,
lowering, compiling and first-call caching: the same definition for the three runners).
Ratios are ``bayescore ÷ runner``: above 1 means bayescore is slower. The goal is
bayescore ≤ 1.05 × hand-written. ``min ESS`` is the smallest bulk ESS over coordinates of the
unconstrained draws; ``ESS/s`` divides it by the full run's steady time.

Run ``python benchmarks/core.py [--quick]`` or ``bayescore bench core [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from arviz_stats.base import array_stats
from blackjax.adaptation.base import get_filter_adapt_info_fn
from jaxtyping import Array, PRNGKeyArray
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import potential_energy

import bayescore as bc

NUM_CHAINS = 4
SEED = 20240601


class Sizes(NamedTuple):
    """Run lengths and problem sizes of one benchmark mode."""

    num_warmup: int
    num_samples: int
    repeats: int
    gaussian_dim: int
    logistic_n: int
    logistic_d: int


FULL = Sizes(num_warmup=500, num_samples=500, repeats=3, gaussian_dim=100, logistic_n=10_000,
             logistic_d=20)
QUICK = Sizes(num_warmup=100, num_samples=100, repeats=3, gaussian_dim=100, logistic_n=10_000,
              logistic_d=20)


class Problem(NamedTuple):
    """One target, expressed for the three runners.

    Attributes:
        name: row label.
        target: what bayescore samples.
        make_logdensity: ``make_logdensity(*data)`` is the log density of a parameter dict;
            called inside the hand-written jitted functions with ``data`` as traced arguments.
        data: arrays passed to the hand-written jitted functions.
        numpyro_kernel: builds a fresh NumPyro NUTS kernel.
        numpyro_args: positional arguments of ``MCMC.run`` after the key.
        numpyro_init: ``init_params`` for ``MCMC.run`` (``None``: NumPyro's own
            ``init_to_uniform``).
        init_positions: the hand-written runner's starting points, one per chain.
    """

    name: str
    target: bc.Target
    make_logdensity: Callable[..., Callable[[dict[str, Array]], Array]]
    data: tuple[Array, ...]
    numpyro_kernel: Callable[[], NUTS]
    numpyro_args: tuple[Any, ...]
    numpyro_init: dict[str, Array] | None
    init_positions: dict[str, Array]


class Timing(NamedTuple):
    """Wall times of one runner: the first call and the repeated (steady-state) calls."""

    first: float
    steady: list[float]

    @property
    def steady_median(self) -> float:
        return statistics.median(self.steady)

    @property
    def compile(self) -> float:
        return max(0.0, self.first - self.steady_median)


class DrawStats(NamedTuple):
    """What every runner keeps per draw (bayescore's ``sample_stats`` fields)."""

    logdensity: Array
    acceptance_rate: Array
    diverging: Array
    n_steps: Array
    tree_depth: Array
    energy: Array


# ---------------------------------------------------------------------------------- targets


def uniform_positions(key: PRNGKeyArray, name: str, dim: int) -> dict[str, Array]:
    """Starting points uniform in [-2, 2] (bayescore's and NumPyro's default scheme)."""
    return {name: jax.random.uniform(key, (NUM_CHAINS, dim), minval=-2.0, maxval=2.0)}


def gaussian_problem(dim: int) -> Problem:
    """The correlated Gaussian: covariance with eigenvalues log-spaced in [1, 100]."""
    rng = np.random.default_rng(SEED)
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    eigenvalues = np.logspace(0.0, 2.0, dim)
    precision = jnp.asarray((rotation / eigenvalues) @ rotation.T, dtype=jnp.float32)

    def logdensity(params: dict[str, Array]) -> Array:
        x = params["x"]
        return -0.5 * x @ precision @ x

    positions = uniform_positions(jax.random.key(SEED + 1), "x", dim)
    return Problem(
        name=f"gaussian (d={dim})",
        target=bc.Target.from_logdensity(logdensity, {"x": jnp.zeros(dim)}),
        make_logdensity=lambda: logdensity,
        data=(),
        numpyro_kernel=lambda: NUTS(potential_fn=lambda params: -logdensity(params)),
        numpyro_args=(),
        numpyro_init=positions,
        init_positions=positions,
    )


def logistic_model(X: Array, y: Array | None = None) -> None:
    """Bayesian logistic regression: ``w ~ Normal(0, 1)``, ``y ~ Bernoulli(logits=X @ w)``."""
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)


def logistic_problem(n: int, d: int) -> Problem:
    """Logistic regression on ``n`` simulated points with ``d`` standard-normal covariates."""
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w_true = rng.normal(scale=0.5, size=d)
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ w_true))).astype(np.float32)
    X, y = jnp.asarray(X), jnp.asarray(y)

    def make_logdensity(X: Array, y: Array) -> Callable[[dict[str, Array]], Array]:
        return lambda params: -potential_energy(logistic_model, (X, y), {}, params)

    return Problem(
        name=f"logistic (N={n}, d={d})",
        target=bc.Target.from_numpyro(logistic_model, X, y),
        make_logdensity=make_logdensity,
        data=(X, y),
        numpyro_kernel=lambda: NUTS(logistic_model),
        numpyro_args=(X, y),
        numpyro_init=None,
        init_positions=uniform_positions(jax.random.key(SEED + 1), "w", d),
    )


# ---------------------------------------------------------------------------------- timing


def log(message: str) -> None:
    """Progress on stderr (the markdown table goes to stdout)."""
    print(f"[core {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def time_calls(call: Callable[[], Any], repeats: int, label: str) -> tuple[Timing, Any]:
    """Time ``call()`` once, then ``repeats`` more times; returns the timing and first output."""
    start = time.perf_counter()
    output = jax.block_until_ready(call())
    first = time.perf_counter() - start
    steady = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        steady.append(time.perf_counter() - start)
    log(f"{label}: first {first:.2f} s, steady {', '.join(f'{t:.2f}' for t in steady)} s")
    return Timing(first, steady), output


def min_bulk_ess(draws: dict[str, Array]) -> float:
    """Smallest bulk ESS over all coordinates of ``(chain, draw, ...)`` draws."""
    smallest = math.inf
    for leaf in jax.tree.leaves(draws):
        values = np.asarray(leaf, dtype=np.float64)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        ess = array_stats.ess(np.moveaxis(values, -1, 0), chain_axis=-2, draw_axis=-1,
                              method="bulk")
        smallest = min(smallest, float(np.min(ess)))
    return smallest


# ---------------------------------------------------------------------------------- runners


def nuts_scan(logdensity: Callable, keys: Array, states: Any, step_size: Array,
              inverse_mass_matrix: Array) -> tuple[Any, DrawStats]:
    """``lax.scan`` over ``keys`` (step, chain) of the chain-vmapped BlackJAX NUTS kernel.

    Returns draws and :class:`DrawStats`, each with leading axes (chain, draw).
    """
    kernel = blackjax.nuts.build_kernel()

    def one_chain(key: Array, state: Any, step_size: Array, imm: Array) -> tuple[Any, Any]:
        return kernel(key, state, logdensity, step_size, imm)

    def body(states: Any, step_keys: Array) -> tuple[Any, tuple[Any, DrawStats]]:
        states, info = jax.vmap(one_chain)(step_keys, states, step_size, inverse_mass_matrix)
        stats = DrawStats(states.logdensity, info.acceptance_rate, info.is_divergent,
                          info.num_integration_steps, info.num_trajectory_expansions,
                          info.energy)
        return states, (states.position, stats)

    _, outputs = jax.lax.scan(body, states, keys)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outputs)


def make_hand_full(problem: Problem, num_warmup: int, num_samples: int) -> Callable:
    """The hand-written full run: vmapped BlackJAX window adaptation, then :func:`nuts_scan`."""

    @jax.jit
    def run(key: PRNGKeyArray, positions: dict[str, Array], data: tuple[Array, ...]) -> Any:
        logdensity = problem.make_logdensity(*data)
        adaptation = blackjax.window_adaptation(
            blackjax.nuts, logdensity,
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
        )
        warmup_key, sample_key = jax.random.split(key)
        (states, parameters), warmup_info = jax.vmap(
            lambda k, x: adaptation.run(k, x, num_warmup)
        )(jax.random.split(warmup_key, NUM_CHAINS), positions)
        keys = jax.random.split(sample_key, (num_samples, NUM_CHAINS))
        draws, stats = nuts_scan(logdensity, keys, states, parameters["step_size"],
                                 parameters["inverse_mass_matrix"])
        return draws, stats, warmup_info.info.num_integration_steps

    return run


@functools.partial(jax.jit, static_argnums=(0,))
def driver_keys(num_steps: int, chain_keys: Array) -> Array:
    """The driver's per-step keys ``fold_in(chain_key, step)``, shaped (step, chain)."""
    fold = jax.vmap(jax.random.fold_in, (0, None))
    return jax.vmap(lambda step: fold(chain_keys, step))(jnp.arange(num_steps))


def make_hand_sampling(problem: Problem, num_samples: int) -> Callable:
    """The hand-written sampling phase from given states and parameters, driver's keys."""

    @jax.jit
    def run(chain_keys: Array, states: Any, step_size: Array, inverse_mass_matrix: Array,
            data: tuple[Array, ...]) -> Any:
        keys = driver_keys(num_samples, chain_keys)
        return nuts_scan(problem.make_logdensity(*data), keys, states, step_size,
                         inverse_mass_matrix)

    return run


@eqx.filter_jit
def replay_bayescore_warmup(method: Any, target: bc.Target, positions: Any, chain_keys: Array,
                            num_warmup: int) -> tuple[Any, Array]:
    """bayescore's warmup re-run with its leapfrog counts kept: (tuned parameters, n_steps)."""
    kernel = method.warmup(target, num_warmup)
    states = jax.vmap(kernel.init)(positions, chain_keys)

    def body(states: Any, step: Array) -> tuple[Any, Array]:
        keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, step)
        states, info = jax.vmap(kernel.step)(keys, states)
        return states, info.n_steps

    states, n_steps = jax.lax.scan(body, states, jnp.arange(num_warmup))
    parameters, _ = jax.vmap(lambda state: method.tune(target, state))(states)
    return parameters, n_steps


def bayescore_warmup_gradients(method: Any, problem: Problem, key: PRNGKeyArray,
                               num_warmup: int, parameters: Any) -> tuple[int, bool]:
    """bayescore's warmup leapfrog steps (from the replay) and whether the replay is exact."""
    init_key, warmup_key, _ = jax.random.split(key, 3)
    positions = problem.target.init(init_key, NUM_CHAINS)
    chain_keys = jax.random.split(warmup_key, NUM_CHAINS)
    replayed, n_steps = replay_bayescore_warmup(method, problem.target, positions, chain_keys,
                                                num_warmup)
    exact = all(np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(jax.tree.leaves(replayed), jax.tree.leaves(parameters),
                                strict=True))
    return int(np.sum(n_steps)), exact


def numpyro_mcmc(problem: Problem, sizes: Sizes) -> MCMC:
    return MCMC(problem.numpyro_kernel(), num_warmup=sizes.num_warmup,
                num_samples=sizes.num_samples, num_chains=NUM_CHAINS,
                chain_method="vectorized", progress_bar=False)


def row(problem: Problem, phase: str, runner: str, timing: Timing | None,
        gradients: int | None, **extra: Any) -> dict[str, Any]:
    """One result row; ratios are filled in by :func:`add_ratios`."""
    steady = None if timing is None else timing.steady_median
    return {
        "target": problem.name,
        "phase": phase,
        "runner": runner,
        "compile_s": None if timing is None else timing.compile,
        "first_s": None if timing is None else timing.first,
        "steady_s": steady,
        "steady_all_s": None if timing is None else timing.steady,
        "gradients": gradients,
        "us_per_gradient": None if steady is None or not gradients else 1e6 * steady / gradients,
        **extra,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``bayescore ÷ runner`` of steady time and of µs per gradient, per target and phase."""
    for item in rows:
        reference = next((r for r in rows if r["target"] == item["target"]
                          and r["phase"] == item["phase"] and r["runner"] == "bayescore"), None)
        for key, field in (("ratio_time", "steady_s"), ("ratio_per_gradient", "us_per_gradient")):
            ours = None if reference is None else reference[field]
            theirs = item[field]
            item[key] = ours / theirs if ours and theirs else None


def run_full(problem: Problem, sizes: Sizes) -> list[dict[str, Any]]:
    """The three runners end to end (warmup + sampling)."""
    method = bc.inference.nuts()
    key = jax.random.key(SEED)
    draws_total = NUM_CHAINS * sizes.num_samples

    # 1. bayescore
    results: list[bc.Result] = []

    def bayescore_call() -> Any:
        result = bc.sample(method, problem.target, num_samples=sizes.num_samples,
                           num_warmup=sizes.num_warmup, num_chains=NUM_CHAINS, key=key,
                           progress=False)
        results.append(result)
        return result.positions, result.stats

    timing, (draws, stats) = time_calls(bayescore_call, sizes.repeats,
                                      f"{problem.name} full bayescore")
    warmup_gradients, exact = bayescore_warmup_gradients(method, problem, key, sizes.num_warmup,
                                                         results[0].parameters)
    gradients = warmup_gradients + int(np.sum(stats["n_steps"]))
    rows = [row(problem, "full", "bayescore", timing, gradients, min_ess=min_bulk_ess(draws),
                check=f"warmup replay {'exact' if exact else 'NOT exact'}",
                parameters=results[0].parameters)]
    results.clear()

    # 2. hand-written BlackJAX
    hand = make_hand_full(problem, sizes.num_warmup, sizes.num_samples)
    timing, (draws, stats, warmup_steps) = time_calls(
        lambda: hand(key, problem.init_positions, problem.data), sizes.repeats,
        f"{problem.name} full hand-written")
    gradients = int(np.sum(warmup_steps)) + int(np.sum(stats.n_steps))
    rows.append(row(problem, "full", "hand-written", timing, gradients,
                    min_ess=min_bulk_ess(draws), check=""))

    # 3. NumPyro
    mcmc = numpyro_mcmc(problem, sizes)

    def numpyro_call() -> Any:
        mcmc.run(key, *problem.numpyro_args, init_params=problem.numpyro_init,
                 extra_fields=("num_steps",))
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    timing, (draws, fields) = time_calls(numpyro_call, sizes.repeats,
                                        f"{problem.name} full numpyro")
    counter = numpyro_mcmc(problem, sizes)
    counter.warmup(key, *problem.numpyro_args, init_params=problem.numpyro_init,
                   extra_fields=("num_steps",), collect_warmup=True)
    warmup_steps = counter.get_extra_fields(group_by_chain=True)["num_steps"]
    exact = np.array_equal(np.asarray(counter.post_warmup_state.adapt_state.step_size),
                           np.asarray(mcmc.last_state.adapt_state.step_size))
    gradients = int(np.sum(warmup_steps)) + int(np.sum(fields["num_steps"]))
    rows.append(row(problem, "full", "numpyro", timing, gradients, min_ess=min_bulk_ess(draws),
                    check=f"warmup count {'exact' if exact else 'NOT exact'}"))
    for item in rows:
        item["ess_per_s"] = item["min_ess"] / item["steady_s"]
        item["draws"] = draws_total
    return rows


def run_sampling(problem: Problem, sizes: Sizes, parameters: Any) -> list[dict[str, Any]]:
    """bayescore's compiled sampling program against the hand-written scan, same trajectories."""
    try:
        from bayescore.core.driver import _draw, _Phase, _warmup

        method = bc.inference.nuts()
        key = jax.random.key(SEED)
        init_key, warmup_key, sample_key = jax.random.split(key, 3)
        positions = problem.target.init(init_key, NUM_CHAINS)
        warmup_keys = jax.random.split(warmup_key, NUM_CHAINS)
        sample_keys = jax.random.split(sample_key, NUM_CHAINS)
        states = _warmup(_Phase(method, sizes.num_warmup, sizes.num_warmup, 1, 0, None),
                         problem.target, warmup_keys, positions, warmup_keys)
        phase = _Phase(method, sizes.num_warmup, sizes.num_samples, 1, 0, None)
        timing, (tuned, draws, stats) = time_calls(
            lambda: _draw(phase, problem.target, sample_keys, states), sizes.repeats,
            f"{problem.name} sampling bayescore")
    except (ImportError, AttributeError, TypeError) as error:  # private API changed
        note = f"unavailable: {type(error).__name__}: {error}"
        return [row(problem, "sampling", "bayescore", None, None, check=note)]
    same_parameters = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                          zip(jax.tree.leaves(tuned), jax.tree.leaves(parameters), strict=True))
    ours = int(np.sum(stats["n_steps"]))
    rows = [row(problem, "sampling", "bayescore", timing, ours,
                check="as in bc.sample" if same_parameters else "parameters differ from "
                "bc.sample's")]

    hand = make_hand_sampling(problem, sizes.num_samples)
    timing, (hand_draws, hand_stats) = time_calls(
        lambda: hand(sample_keys, states.chain, tuned.step_size, tuned.inverse_mass_matrix,
                     problem.data), sizes.repeats, f"{problem.name} sampling hand-written")
    theirs = int(np.sum(hand_stats.n_steps))
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
              zip(jax.tree.leaves(draws), jax.tree.leaves(hand_draws), strict=True))
    check = ("same trajectories" if theirs == ours else "trajectories differ") + (
        f" (max |Δdraw| {gap:.1e})")
    rows.append(row(problem, "sampling", "hand-written", timing, theirs, check=check))
    return rows


# ---------------------------------------------------------------------------------- report


def fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[dict[str, Any]], sizes: Sizes) -> str:
    """The rows as a markdown table, with the configuration above it."""
    lines = [
        f"NUTS, {NUM_CHAINS} chains vmapped, {sizes.num_warmup} warmup + {sizes.num_samples} "
        f"draws per chain; steady = median of {sizes.repeats} calls after the first; "
        f"{jax.default_backend()} ({jax.device_count()} device(s)). Ratios: bayescore ÷ "
        "runner (> 1: bayescore slower).",
        "",
        "| target | phase | runner | compile s | steady s | grad evals | µs/grad "
        "| ratio time | ratio µs/grad | min ESS | ESS/s | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['phase']} | {r['runner']} | {fmt(r['compile_s'], '.1f')} "
            f"| {fmt(r['steady_s'], '.3f')} | {fmt(r['gradients'], ',d')} "
            f"| {fmt(r['us_per_gradient'], '.2f')} | {fmt(r['ratio_time'], '.3f')} "
            f"| {fmt(r['ratio_per_gradient'], '.3f')} | {fmt(r.get('min_ess'), '.0f')} "
            f"| {fmt(r.get('ess_per_s'), '.0f')} | {r.get('check', '')} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Run every comparison; returns ``{"area": "core", "rows": [...], "markdown": "..."}``."""
    sizes = QUICK if quick else FULL
    problems = [gaussian_problem(sizes.gaussian_dim),
                logistic_problem(sizes.logistic_n, sizes.logistic_d)]
    rows: list[dict[str, Any]] = []
    for problem in problems:
        full = run_full(problem, sizes)
        parameters = full[0].pop("parameters")
        rows += full + run_sampling(problem, sizes, parameters)
    add_ratios(rows)
    for item in rows:
        item.update(num_warmup=sizes.num_warmup, num_samples=sizes.num_samples,
                    num_chains=NUM_CHAINS, backend=jax.default_backend())
    return {"area": "core", "rows": rows, "markdown": markdown(rows, sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 warmup + 100 draws")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
