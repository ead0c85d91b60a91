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
draws per chain (500 / 500), maximal tree depth 10, target acceptance
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

Three comparisons
-----------------

**full** (warmup + sampling, the numbers a user sees). Not quite apples to apples: the three
warmups are different implementations of Stan's windowed adaptation (bayescore's step-by-step
state machine in ``bayescore.inference.adaptation``, BlackJAX's ``staged_adaptation``,
NumPyro's own), start from different points with different random numbers, and tune slightly
different step sizes and mass matrices, so their NUTS trajectories have different lengths.
Time is therefore also reported per gradient evaluation (leapfrog steps summed over chains,
warmup and sampling); µs per gradient is the fairer measure, the raw time ratio is shown
beside it.
Vmapped chains, though, run NUTS's while loops in lock step: a transition costs about what its
longest chain costs, so chains tuned to unequal step sizes cost more than their summed
gradient count says. The table therefore also counts *lock-step* gradients (summed over
transitions of the longest chain's leapfrog steps) and divides the time by those; with few
warmup steps the chains' step sizes scatter and this is the count that explains the time.
The full rows compare *what bayescore does* (driver + adaptation + kernel) with the usual
alternatives; the next two isolate *the driver*.

**warmup** and **sampling** (exact comparisons of the driver, same trajectories).
``bc.sample`` runs two compiled programs, ``bayescore.core.driver._warmup`` and ``_draw``.
Each is timed on its own against a hand-written ``jax.jit`` + ``lax.scan`` that runs the same
kernel on the same chains with the same per-step keys (``fold_in(chain_key, step)``, as the
driver derives them), so both compute identical trajectories and the time ratio is the
driver's overhead alone, free of trajectory-length noise:

* warmup: the hand-written loop scans bayescore's own warmup kernel
  (``method.warmup(target, num_warmup)``: BlackJAX NUTS + bayescore's adaptation) and then
  tunes (``method.tune``); it also returns the leapfrog counts used below. Checked: it tunes
  bit-identical step sizes and inverse mass matrices to ``bc.sample``.
* sampling: the hand-written loop is the BlackJAX scan of the full runner, started from
  ``_warmup``'s final states with ``_draw``'s tuned parameters. Checked: same gradient count
  and the largest difference between the two runs' draws.

These rows reach into private driver functions; if those change, the rows say so instead of
failing. Both programs were compiled by the ``bc.sample`` calls of the full comparison (and
the warmup replay by the gradient count), so their compile column reads 0.

Counting gradient evaluations
-----------------------------

``bc.sample`` returns ``n_steps`` for the draws only. The benchmark replays bayescore's warmup
(the method's own warmup kernel, the driver's starting points and keys; the hand-written
warmup loop above) and checks the replay is exact by comparing the step sizes and inverse mass
matrices it tunes with ``result.parameters``. BlackJAX reports ``num_integration_steps`` for
warmup (kept through ``get_filter_adapt_info_fn``) and sampling. NumPyro reports
``num_steps`` for the draws; its warmup steps come from an untimed
``MCMC.warmup(collect_warmup=True)`` with the same key, checked by comparing the adapted step
sizes with the timed run's.

Timing
------

Every call uses the same key and data, so repeated calls do identical work, and is timed up to
``jax.block_until_ready`` of its draws and statistics. Each runner is called once (the first
call, which compiles), then ``repeats`` rounds call every runner of a comparison once in turn
(A, B, C, A, B, C, ...), so all runners see the same drift of the machine. On a small shared
CPU single calls scatter by ±15% (identical programs included), hence the median *and* the
minimum are reported; the minimum is the better estimate of pure overhead, since noise only
adds time.

JAX's own compile events (``jax.monitoring`` time spans of tracing, lowering and XLA
compilation, their union) are recorded inside every call:

* ``compile s``: compile work inside the first call, measured, not inferred.
* ``recompile s``: median compile work inside the repeated calls. 0 for bayescore and the
  hand-written loop; NumPyro 0.22 re-traces and recompiles its sampling loop
  (``fori_collect``'s ``_fori_collect_loop``) and its initialisation on every ``MCMC.run``,
  so a repeated ``run`` pays seconds of compilation.
* ``run s``: wall time minus compile work per repeated call (median and min); this is the
  steady-state time the ratios and µs/grad use, so NumPyro is compared on execution, not on
  its recompilation.

Ratios are ``bayescore ÷ runner``: above 1 means bayescore is slower; the goal is
bayescore ≤ 1.05 × hand-written. ``min ESS`` is the smallest bulk ESS over the coordinates of
the unconstrained draws; ``ESS/s`` divides it by the full run's median run time.

``--quick`` runs 100 / 100 steps, logistic regression with N = 2000, and fewer repeats: a smoke
test of the benchmark, too short for ratios to a few per cent.

Run ``python benchmarks/core.py [--quick]`` or ``bayescore bench core [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import os
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
from bayescore.core.driver import run_keys

NUM_CHAINS = 4
SEED = 20240601


class Sizes(NamedTuple):
    """Run lengths and problem sizes of one benchmark mode.

    Attributes:
        num_warmup: warmup steps per chain.
        num_samples: kept draws per chain.
        repeats: timed calls after the first in the full-run comparison.
        phase_repeats: timed calls after the first in the warmup and sampling comparisons.
        gaussian_dim: dimension of the Gaussian target.
        logistic_n: data points of the logistic regression.
        logistic_d: covariates of the logistic regression.
    """

    num_warmup: int
    num_samples: int
    repeats: int
    phase_repeats: int
    gaussian_dim: int
    logistic_n: int
    logistic_d: int


FULL = Sizes(
    num_warmup=500,
    num_samples=500,
    repeats=5,
    phase_repeats=9,
    gaussian_dim=100,
    logistic_n=10_000,
    logistic_d=20,
)
QUICK = Sizes(
    num_warmup=100,
    num_samples=100,
    repeats=3,
    phase_repeats=7,
    gaussian_dim=100,
    logistic_n=2_000,
    logistic_d=20,
)


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
    """Wall times of one runner's calls, and the JAX compile work inside each call.

    Attributes:
        first: wall time of the first call.
        first_compile: JAX tracing + lowering + XLA compilation inside the first call.
        steady: wall times of the repeated calls.
        steady_compile: compile work inside each repeated call (0 unless the runner
            recompiles on every call).
    """

    first: float
    first_compile: float
    steady: list[float]
    steady_compile: list[float]

    @property
    def steady_median(self) -> float:
        return statistics.median(self.steady)

    @property
    def recompile_median(self) -> float:
        return statistics.median(self.steady_compile)

    @property
    def runs(self) -> list[float]:
        """Wall time minus compile work of each repeated call."""
        return [w - c for w, c in zip(self.steady, self.steady_compile, strict=True)]

    @property
    def run_median(self) -> float:
        return statistics.median(self.runs)

    @property
    def run_min(self) -> float:
        return min(self.runs)


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


COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling while the ``with`` block runs.

    Listens to JAX's own compile events (``jax.monitoring`` time spans) and returns the length
    of their union, so a jit traced inside another one is not counted twice.
    """

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def _record(self, event: str, start: float, end: float, **_: Any) -> None:
        if event in COMPILE_EVENTS:
            self.spans.append((start, end))

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_time_span_listener(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._record)

    @property
    def seconds(self) -> float:
        total, reached = 0.0, -math.inf
        for start, end in sorted(self.spans):
            if end > reached:
                total += end - max(start, reached)
                reached = end
        return total


def log(message: str) -> None:
    """Progress on stderr (the markdown table goes to stdout)."""
    print(f"[core {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_call(call: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall seconds, compile seconds, output)`` of ``call()`` up to ``block_until_ready``.

    As in ``timeit``, Python's garbage collector is off during the call, so that no runner
    pays for a collection of the garbage another one left (tracing leaves plenty).
    """
    gc.disable()
    try:
        with CompileClock() as clock:
            start = time.perf_counter()
            output = jax.block_until_ready(call())
            wall = time.perf_counter() - start
    finally:
        gc.enable()
    return wall, clock.seconds, output


def measure(
    calls: dict[str, Callable[[], Any]], repeats: int, label: str
) -> dict[str, tuple[Timing, Any]]:
    """Time each runner's first call, then ``repeats`` rounds calling every runner once.

    Interleaving the repeated calls exposes all runners to the same drift of the machine
    (other processes, clock speed); the order rotates from round to round (A B C, B C A,
    C A B, ...) so that no runner always follows the same one (e.g. NumPyro's recompilation).
    Returns, per runner, its :class:`Timing` and its first call's output.
    """
    first: dict[str, tuple[float, float, Any]] = {}
    for name, call in calls.items():
        first[name] = timed_call(call)
        log(f"{label} {name}: first call {first[name][0]:.2f} s, compile {first[name][1]:.2f} s")
    walls: dict[str, list[float]] = {name: [] for name in calls}
    compiles: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, compile_seconds, _ = timed_call(calls[name])
            walls[name].append(wall)
            compiles[name].append(compile_seconds)
    timings = {}
    for name in calls:
        timing = Timing(first[name][0], first[name][1], walls[name], compiles[name])
        timings[name] = (timing, first[name][2])
        log(
            f"{label} {name}: repeated calls "
            + ", ".join(f"{w:.3f}" for w in walls[name])
            + f" s; compile inside them {timing.recompile_median:.2f} s (median)"
        )
    return timings


def min_bulk_ess(draws: dict[str, Array]) -> float:
    """Smallest bulk ESS over all coordinates of ``(chain, draw, ...)`` draws."""
    smallest = math.inf
    for leaf in jax.tree.leaves(draws):
        values = np.asarray(leaf, dtype=np.float64)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        ess = array_stats.ess(
            np.moveaxis(values, -1, 0), chain_axis=-2, draw_axis=-1, method="bulk"
        )
        smallest = min(smallest, float(np.min(ess)))
    return smallest


# ---------------------------------------------------------------------------------- runners


def nuts_scan(
    logdensity: Callable, keys: Array, states: Any, step_size: Array, inverse_mass_matrix: Array
) -> tuple[Any, DrawStats]:
    """``lax.scan`` over ``keys`` (step, chain) of the chain-vmapped BlackJAX NUTS kernel.

    Returns draws and :class:`DrawStats`, each with leading axes (chain, draw).
    """
    kernel = blackjax.nuts.build_kernel()

    def one_chain(key: Array, state: Any, step_size: Array, imm: Array) -> tuple[Any, Any]:
        return kernel(key, state, logdensity, step_size, imm)

    def body(states: Any, step_keys: Array) -> tuple[Any, tuple[Any, DrawStats]]:
        states, info = jax.vmap(one_chain)(step_keys, states, step_size, inverse_mass_matrix)
        stats = DrawStats(
            states.logdensity,
            info.acceptance_rate,
            info.is_divergent,
            info.num_integration_steps,
            info.num_trajectory_expansions,
            info.energy,
        )
        return states, (states.position, stats)

    _, outputs = jax.lax.scan(body, states, keys)
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outputs)


def make_hand_full(problem: Problem, num_warmup: int, num_samples: int) -> Callable:
    """The hand-written full run: vmapped BlackJAX window adaptation, then :func:`nuts_scan`."""

    @jax.jit
    def run(key: PRNGKeyArray, positions: dict[str, Array], data: tuple[Array, ...]) -> Any:
        logdensity = problem.make_logdensity(*data)
        adaptation = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity,
            adaptation_info_fn=get_filter_adapt_info_fn(info_keys={"num_integration_steps"}),
        )
        warmup_key, sample_key = jax.random.split(key)
        (states, parameters), warmup_info = jax.vmap(lambda k, x: adaptation.run(k, x, num_warmup))(
            jax.random.split(warmup_key, NUM_CHAINS), positions
        )
        keys = jax.random.split(sample_key, (num_samples, NUM_CHAINS))
        draws, stats = nuts_scan(
            logdensity, keys, states, parameters["step_size"], parameters["inverse_mass_matrix"]
        )
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
    def run(
        chain_keys: Array,
        states: Any,
        step_size: Array,
        inverse_mass_matrix: Array,
        data: tuple[Array, ...],
    ) -> Any:
        keys = driver_keys(num_samples, chain_keys)
        return nuts_scan(
            problem.make_logdensity(*data), keys, states, step_size, inverse_mass_matrix
        )

    return run


@eqx.filter_jit
def replay_bayescore_warmup(
    method: Any, target: bc.Target, positions: Any, chain_keys: Array, num_warmup: int
) -> tuple[Any, Array]:
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


class Gradients(NamedTuple):
    """Leapfrog steps (one gradient evaluation each) of a run.

    Attributes:
        total: summed over chains and transitions.
        lockstep: summed over transitions of the longest chain's steps: roughly the leapfrog
            iterations a chain-vmapped NUTS loop runs (all chains wait for the longest one).
    """

    total: int
    lockstep: int


def count_gradients(*n_steps: Any) -> Gradients:
    """:class:`Gradients` of per-transition leapfrog counts, each array (chain, transition)."""
    counts = np.concatenate([np.asarray(steps).reshape(NUM_CHAINS, -1) for steps in n_steps], 1)
    return Gradients(int(counts.sum()), int(counts.max(axis=0).sum()))


def same_leaves(first: Any, second: Any) -> bool:
    """Whether two pytrees hold bit-identical arrays."""
    return all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True)
    )


def bayescore_warmup_steps(
    method: Any, problem: Problem, key: PRNGKeyArray, num_warmup: int, parameters: Any
) -> tuple[Array, bool]:
    """bayescore's warmup leapfrog counts (chain, step) from the replay; is the replay exact?"""
    init_key, _, chain_keys, _ = run_keys(key, NUM_CHAINS)
    positions = problem.target.init(init_key, NUM_CHAINS)
    replayed, n_steps = replay_bayescore_warmup(
        method, problem.target, positions, chain_keys, num_warmup
    )
    return jnp.swapaxes(n_steps, 0, 1), same_leaves(replayed, parameters)


def numpyro_mcmc(problem: Problem, sizes: Sizes) -> MCMC:
    """NumPyro's MCMC with 4 vectorized chains and no progress bar."""
    return MCMC(
        problem.numpyro_kernel(),
        num_warmup=sizes.num_warmup,
        num_samples=sizes.num_samples,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )


def row(
    problem: Problem,
    phase: str,
    runner: str,
    timing: Timing | None,
    gradients: Gradients | None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row (times in seconds); ratios are filled in by :func:`add_ratios`."""
    run = None if timing is None else timing.run_median

    def per(count: int | None) -> float | None:
        return None if run is None or not count else 1e6 * run / count

    total = None if gradients is None else gradients.total
    lockstep = None if gradients is None else gradients.lockstep
    return {
        "target": problem.name,
        "phase": phase,
        "runner": runner,
        "compile_s": None if timing is None else timing.first_compile,
        "first_s": None if timing is None else timing.first,
        "steady_s": None if timing is None else timing.steady_median,
        "recompile_s": None if timing is None else timing.recompile_median,
        "run_s": run,
        "run_min_s": None if timing is None else timing.run_min,
        "steady_all_s": None if timing is None else timing.steady,
        "steady_compile_all_s": None if timing is None else timing.steady_compile,
        "gradients": total,
        "lockstep_gradients": lockstep,
        "us_per_gradient": per(total),
        "us_per_lockstep": per(lockstep),
        **extra,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``bayescore ÷ runner`` of run time (median, min) and of µs per gradient, per comparison."""
    for item in rows:
        reference = next(
            (
                r
                for r in rows
                if r["target"] == item["target"]
                and r["phase"] == item["phase"]
                and r["runner"] == "bayescore"
            ),
            None,
        )
        for key, field in (
            ("ratio_run", "run_s"),
            ("ratio_run_min", "run_min_s"),
            ("ratio_per_gradient", "us_per_gradient"),
            ("ratio_per_lockstep", "us_per_lockstep"),
        ):
            ours = None if reference is None else reference[field]
            theirs = item[field]
            item[key] = ours / theirs if ours and theirs else None


def run_full(problem: Problem, sizes: Sizes) -> tuple[list[dict[str, Any]], Any]:
    """The three runners end to end (warmup + sampling), then their gradient counts.

    Returns the rows and ``bc.sample``'s tuned parameters.
    """
    method = bc.inference.nuts()
    key = jax.random.key(SEED)

    def bayescore_call() -> Any:
        result = bc.sample(
            method,
            problem.target,
            num_samples=sizes.num_samples,
            num_warmup=sizes.num_warmup,
            num_chains=NUM_CHAINS,
            key=key,
            progress=False,
        )
        return result.positions, result.stats, result.parameters

    hand = make_hand_full(problem, sizes.num_warmup, sizes.num_samples)
    mcmc = numpyro_mcmc(problem, sizes)

    def numpyro_call() -> Any:
        mcmc.run(
            key,
            *problem.numpyro_args,
            init_params=problem.numpyro_init,
            extra_fields=("num_steps",),
        )
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    timings = measure(
        {
            "bayescore": bayescore_call,
            "hand-written": lambda: hand(key, problem.init_positions, problem.data),
            "numpyro": numpyro_call,
        },
        sizes.repeats,
        f"{problem.name} full",
    )

    # Gradient counts, outside the timing.
    timing, (draws, stats, parameters) = timings["bayescore"]
    warmup_steps, exact = bayescore_warmup_steps(method, problem, key, sizes.num_warmup, parameters)
    rows = [
        row(
            problem,
            "full",
            "bayescore",
            timing,
            count_gradients(warmup_steps, stats["n_steps"]),
            min_ess=min_bulk_ess(draws),
            check=f"warmup replay {'exact' if exact else 'NOT exact'}",
        )
    ]

    timing, (draws, stats, warmup_steps) = timings["hand-written"]
    rows.append(
        row(
            problem,
            "full",
            "hand-written",
            timing,
            count_gradients(warmup_steps, stats.n_steps),
            min_ess=min_bulk_ess(draws),
            check="",
        )
    )

    timing, (draws, fields) = timings["numpyro"]
    counter = numpyro_mcmc(problem, sizes)
    counter.warmup(
        key,
        *problem.numpyro_args,
        init_params=problem.numpyro_init,
        extra_fields=("num_steps",),
        collect_warmup=True,
    )
    warmup_steps = counter.get_extra_fields(group_by_chain=True)["num_steps"]
    exact = np.array_equal(
        np.asarray(counter.post_warmup_state.adapt_state.step_size),
        np.asarray(mcmc.last_state.adapt_state.step_size),
    )
    rows.append(
        row(
            problem,
            "full",
            "numpyro",
            timing,
            count_gradients(warmup_steps, fields["num_steps"]),
            min_ess=min_bulk_ess(draws),
            check=f"warmup count {'exact' if exact else 'NOT exact'}",
        )
    )
    for item in rows:
        item["ess_per_s"] = item["min_ess"] / item["run_s"]
    return rows, parameters


def run_phases(problem: Problem, sizes: Sizes, parameters: Any) -> list[dict[str, Any]]:
    """bayescore's two compiled programs against hand-written loops with the same trajectories.

    warmup: the driver's ``_warmup`` against :func:`replay_bayescore_warmup` (a plain
    ``lax.scan`` of the same warmup kernel with the same keys, plus the tuning). sampling: the
    driver's ``_draw`` against :func:`make_hand_sampling` from ``_warmup``'s states.
    ``parameters`` are ``bc.sample``'s tuned parameters, to check both reproduce its run.
    """
    method = bc.inference.nuts()
    init_key, state_keys, warmup_keys, sample_keys = run_keys(jax.random.key(SEED), NUM_CHAINS)
    positions = problem.target.init(init_key, NUM_CHAINS)
    try:
        from bayescore.core.driver import _draw, _Phase, _warmup

        warmup_phase = _Phase(method, sizes.num_warmup, sizes.num_warmup, 1, 0, None)
        sampling_phase = _Phase(method, sizes.num_warmup, sizes.num_samples, 1, 0, None)
        states = _warmup(warmup_phase, problem.target, warmup_keys, positions, state_keys)
        tuned, _, _ = _draw(sampling_phase, problem.target, sample_keys, states)
        chain_states = states.chain
    except (ImportError, AttributeError, TypeError, ValueError) as error:  # private API moved
        note = f"unavailable: {type(error).__name__}: {error}"
        return [
            row(problem, phase, "bayescore", None, None, check=note)
            for phase in ("warmup", "sampling")
        ]

    timings = measure(
        {
            "bayescore": lambda: _warmup(
                warmup_phase, problem.target, warmup_keys, positions, state_keys
            ),
            "hand-written": lambda: replay_bayescore_warmup(
                method, problem.target, positions, warmup_keys, sizes.num_warmup
            ),
        },
        sizes.phase_repeats,
        f"{problem.name} warmup",
    )
    replayed, n_steps = timings["hand-written"][1]
    gradients = count_gradients(jnp.swapaxes(n_steps, 0, 1))
    exact = same_leaves(replayed, parameters) and same_leaves(tuned, parameters)
    rows = [
        row(
            problem,
            "warmup",
            "bayescore",
            timings["bayescore"][0],
            gradients,
            check="compiled by bc.sample above",
        ),
        row(
            problem,
            "warmup",
            "hand-written",
            timings["hand-written"][0],
            gradients,
            check="same kernel and keys: " + ("same tuning" if exact else "tuning DIFFERS"),
        ),
    ]

    hand = make_hand_sampling(problem, sizes.num_samples)
    timings = measure(
        {
            "bayescore": lambda: _draw(sampling_phase, problem.target, sample_keys, states),
            "hand-written": lambda: hand(
                sample_keys, chain_states, tuned.step_size, tuned.inverse_mass_matrix, problem.data
            ),
        },
        sizes.phase_repeats,
        f"{problem.name} sampling",
    )
    timing, (_, draws, stats) = timings["bayescore"]
    ours = count_gradients(stats["n_steps"])
    rows.append(
        row(problem, "sampling", "bayescore", timing, ours, check="compiled by bc.sample above")
    )
    timing, (hand_draws, hand_stats) = timings["hand-written"]
    theirs = count_gradients(hand_stats.n_steps)
    gap = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(draws), jax.tree.leaves(hand_draws), strict=True)
    )
    check = "same trajectories" if theirs == ours else "trajectories DIFFER"
    rows.append(
        row(
            problem,
            "sampling",
            "hand-written",
            timing,
            theirs,
            check=f"{check} (max |Δdraw| {gap:.1e})",
        )
    )
    return rows


# ---------------------------------------------------------------------------------- report


def fmt(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or a dash when there is none."""
    return "–" if value is None else format(value, spec)


def pair(first: Any, second: Any, spec: str) -> str:
    """Two values in one table cell: ``first / second``."""
    return f"{fmt(first, spec)} / {fmt(second, spec)}"


def markdown(rows: list[dict[str, Any]], sizes: Sizes, load: tuple[float, float]) -> str:
    """The rows as a markdown table, with the configuration above it.

    ``load`` is the 1-minute load average before and after the run (other processes on the
    machine make timings noisier).
    """
    lines = [
        f"NUTS, {NUM_CHAINS} chains vmapped, {sizes.num_warmup} warmup + {sizes.num_samples} "
        f"draws per chain, {jax.default_backend()} ({jax.device_count()} device(s), "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} before / {load[1]:.1f} after). "
        f"Repeated calls after the first: {sizes.repeats} (full), {sizes.phase_repeats} "
        "(warmup, sampling), interleaved across runners. *run*: wall time minus the JAX compile "
        "work inside the call (*recompile*, median), median / min over the repeated calls. "
        "*grad evals*: leapfrog steps summed over chains / lock-step (summed over transitions "
        "of the longest chain's steps), warmup included in 'full'; *µs per grad* divides the "
        "median run by each. *Ratios*: bayescore ÷ runner, > 1 means bayescore is slower.",
        "",
        "| target | phase | runner | compile s | recompile s | run s (median / min) "
        "| grad evals (sum / lock-step) | µs per grad (sum / lock-step) "
        "| ratio run (median / min) | ratio µs per grad (sum / lock-step) | min ESS | ESS/s "
        "| check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['phase']} | {r['runner']} | {fmt(r['compile_s'], '.1f')} "
            f"| {fmt(r['recompile_s'], '.2f')} | {pair(r['run_s'], r['run_min_s'], '.3f')} "
            f"| {pair(r['gradients'], r['lockstep_gradients'], ',d')} "
            f"| {pair(r['us_per_gradient'], r['us_per_lockstep'], '.2f')} "
            f"| {pair(r['ratio_run'], r['ratio_run_min'], '.3f')} "
            f"| {pair(r['ratio_per_gradient'], r['ratio_per_lockstep'], '.3f')} "
            f"| {fmt(r.get('min_ess'), '.0f')} | {fmt(r.get('ess_per_s'), '.0f')} "
            f"| {r.get('check', '')} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Run every comparison; returns ``{"area": "core", "rows": [...], "markdown": "..."}``."""
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    problems = [
        gaussian_problem(sizes.gaussian_dim),
        logistic_problem(sizes.logistic_n, sizes.logistic_d),
    ]
    rows: list[dict[str, Any]] = []
    for problem in problems:
        full, parameters = run_full(problem, sizes)
        rows += full + run_phases(problem, sizes, parameters)
    add_ratios(rows)
    for item in rows:
        item.update(
            num_warmup=sizes.num_warmup,
            num_samples=sizes.num_samples,
            num_chains=NUM_CHAINS,
            backend=jax.default_backend(),
        )
    load = (load_before, os.getloadavg()[0])
    return {
        "area": "core",
        "rows": rows,
        "markdown": markdown(rows, sizes, load),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 warmup + 100 draws")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
