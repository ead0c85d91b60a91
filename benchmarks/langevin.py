"""Langevin samplers: cost of a step against a gradient, MALA against BlackJAX, ESS per second.

What is measured
================

The targets are ``benchmarks/core.py``'s (imported from it, not copied): ``gaussian``, a
100-dimensional N(0, Σ) with Σ's eigenvalues log-spaced in [1, 100] under a random rotation,
and ``logistic``, Bayesian logistic regression with N = 10⁴ observations and d = 20
(``bc.Target.from_numpyro``); float32, default JAX device, 4 chains ``vmap``-ped. Timing is
core.py's too: every call does identical work (same keys, same data), is timed up to
``jax.block_until_ready`` of its outputs, the first call (which compiles) is reported apart,
then ``repeats`` rounds call every runner of a comparison once in turn, rotating the order;
*run s* is wall time minus the JAX compile work inside the call (median / min over the repeated
calls) and every time and ratio below uses it.

(a) Cost of a sampler step in gradients
---------------------------------------

Each sampler runs as a fixed kernel: ``adapt_step_size=False, adapt_mass_matrix=False``,
identity inverse mass matrix (a diagonal preconditioner of ones, the same arithmetic as a
tuned diagonal one), default friction 1 and ``num_steps=10`` for MALT. Step sizes: ``h`` is
the step size bayescore's dual averaging tunes for MALA with the identity metric (an untimed
``bc.sample(bc.inference.mala(adapt_mass_matrix=False))`` with ``tune_warmup`` warmup steps,
median over chains); MALA and ULA use ``h``, BAOAB, OBABO and MALT the leapfrog step
``sqrt(2h)`` (MALA with step ``h`` is one leapfrog step of length ``sqrt(2h)``). All chains
start from that run's last draws. What is timed is the driver's compiled sampling program,
``bayescore.core.driver._draw`` (the program ``bc.sample`` runs after warmup; private, so the
rows say so if it moves): ``steps`` transitions of every chain in one ``lax.scan`` (MALT:
``steps // 10`` transitions, the same ``steps`` gradient evaluations per chain), keeping every
draw and its 7 statistics, each step's keys ``fold_in(chain_key, t)`` derived in the loop.
``steps`` is 20,000 on the Gaussian (a gradient of its 4 chains costs a few µs) and 2,000 on
the logistic regression.

Two references, each one ``jax.jit`` program of a ``lax.scan`` of the same ``steps``
iterations on the same starting points:

* *gradient*: the body is ``jax.vmap(jax.value_and_grad(target.logdensity))`` on the 4 chains'
  positions (the same Target and the same call the samplers make), then ``x ← x + s·∇`` with
  ``s = 0`` a traced argument (a data dependence, so XLA cannot hoist the gradient out of the
  loop; the positions do not change), keeping ``log π`` per iteration.
* *gradient + normal*: the same, plus what every Langevin step needs besides: the step's keys
  ``fold_in(chain_key, t)`` and one N(0, I) vector per chain (JAX's default PRNG, threefry),
  added with the gradient times ``s = 0``.

*µs per grad* is run time ÷ gradient evaluations per chain (``steps`` for every row), and
``÷ gradient`` is a row's µs per grad over the gradient reference's: the cost of a
one-gradient step (MALA, ULA, BAOAB, OBABO) in gradients, and for MALT the cost per gradient
of its trajectories. It counts everything a step does besides the gradient: random numbers
(keys, normals, the uniform of the accept test), the proposal and MH arithmetic, the select,
and writing the draw and its statistics. Goal: ≤ 1.1. ``÷ gradient + normal`` is the same over
the second reference, the least a step drawing one normal vector can cost (OBABO and MALT's
inner steps draw two, BAOAB, MALA and ULA one).

(b) MALA against BlackJAX's
---------------------------

The bayescore MALA row of (a) against a hand-written ``jax.jit`` of a ``lax.scan`` over
``steps`` of ``blackjax.mala.build_kernel()`` ``vmap``-ped over chains, timed in the same
interleaved rounds. Same step size ``h`` (a traced argument of both programs), same starting
states (the driver's initial ``MALAState`` s, which bayescore's MALA shares with BlackJAX),
same keys (``fold_in(chain_key, t)``, core.py's ``driver_keys``); the hand-written loop keeps
the draw, log density, acceptance probability and accept decision per step. bayescore's
transition is its own code (BlackJAX's MALA has no preconditioner), so the two agree up to
float rounding only: the table gives the largest |Δ| between the two runs' draws and how many
accept decisions agree. Its log density is NumPyro's ``potential_energy`` of the model,
negated, as in core.py's hand-written loop. Ratio ``bayescore ÷ BlackJAX``; goal ≤ 1.0.

(c) Effective samples per second
--------------------------------

``bc.sample`` with the samplers' defaults (diagonal mass matrix and step size adapted in
Stan's windows): ``bc.inference.mala()``, ``bc.inference.malt()`` (10 steps per trajectory,
friction 1) and, for reference, ``bc.inference.nuts()``, against NumPyro's NUTS
(``MCMC(NUTS(...), chain_method="vectorized")``, as in core.py). ``num_warmup`` warmup +
``num_samples`` draws per chain for every runner, same key. *compile s* is the compile work
inside the first call, *recompile s* inside the repeated ones (NumPyro recompiles on every
``run``), *run s* the steady-state time of a whole run (warmup + sampling). ``min ESS`` is the
smallest bulk ESS (``arviz_stats``, as in core.py) over the coordinates of the unconstrained
draws; ``ESS/s`` divides it by *run s*; ``ESS per 1k grads`` divides it by the gradient
evaluations of the sampling phase (summed over chains: ``n_steps`` of the draws, NumPyro's
``num_steps``), the efficiency of the tuned sampler. Warmup gradients are exact for MALA
(1 per step) and MALT (10 per step), not counted for NUTS (core.py counts them). Ratios are
``bayescore ÷ NumPyro NUTS`` of run time, of seconds per effective sample and of gradients per
effective sample: above 1 means the bayescore runner is worse. Few draws of a slowly mixing
chain (MALA on the ill-conditioned Gaussian) give a rough ESS: compare orders of magnitude.

Sizes: full, ``steps`` = 20,000 / 2,000 (Gaussian / logistic) with 7 repeated rounds for
(a) and (b), 1000 warmup + 1000 draws and 3 repeated rounds for (c). ``--quick`` runs
``steps`` = 4,000 / 400, 200 warmup + 200 draws, logistic regression with N = 2000 and fewer
rounds: a smoke test of the benchmark, too short for ratios to a few per cent.

Run ``python benchmarks/langevin.py [--quick]`` or ``bayescore bench langevin [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, NamedTuple

import blackjax
import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

import bayescore as bc
from bayescore.core.driver import run_keys

NUM_CHAINS = core.NUM_CHAINS
SEED = core.SEED
MALT_STEPS = 10


class Sizes(NamedTuple):
    """Run lengths and problem sizes of one benchmark mode.

    Attributes:
        gaussian_steps: gradient evaluations per chain in each timed call of (a) and (b) on
            the Gaussian (its gradient is cheap: more steps for a measurable call).
        logistic_steps: the same on the logistic regression.
        step_repeats: timed rounds after the first call in (a) and (b).
        tune_warmup: warmup steps of the run that tunes MALA's identity-metric step size.
        num_warmup: warmup steps per chain in (c).
        num_samples: kept draws per chain in (c).
        repeats: timed rounds after the first call in (c).
        gaussian_dim: dimension of the Gaussian target.
        logistic_n: data points of the logistic regression.
        logistic_d: covariates of the logistic regression.
    """

    gaussian_steps: int
    logistic_steps: int
    step_repeats: int
    tune_warmup: int
    num_warmup: int
    num_samples: int
    repeats: int
    gaussian_dim: int
    logistic_n: int
    logistic_d: int


FULL = Sizes(
    gaussian_steps=20_000,
    logistic_steps=2_000,
    step_repeats=7,
    tune_warmup=500,
    num_warmup=1000,
    num_samples=1000,
    repeats=3,
    gaussian_dim=100,
    logistic_n=10_000,
    logistic_d=20,
)
QUICK = Sizes(
    gaussian_steps=4_000,
    logistic_steps=400,
    step_repeats=3,
    tune_warmup=200,
    num_warmup=200,
    num_samples=200,
    repeats=1,
    gaussian_dim=100,
    logistic_n=2_000,
    logistic_d=20,
)


# ---------------------------------------------------------------------------- (a) and (b)


@eqx.filter_jit
def gradient_scan(target: bc.Target, positions: Any, scale: Array, steps: int) -> Any:
    """The reference: ``steps`` chain-vmapped ``value_and_grad`` of the Target in a scan.

    ``x ← x + scale·∇`` (``scale`` = 0, traced) ties each iteration to the last so XLA keeps
    the gradient inside the loop; ``log π`` is kept per iteration, as the samplers keep it.
    """
    value_and_grad = jax.vmap(jax.value_and_grad(target.logdensity))

    def body(x: Any, _: None) -> tuple[Any, Array]:
        value, grad = value_and_grad(x)
        return jax.tree.map(lambda a, g: a + scale * g, x, grad), value

    return jax.lax.scan(body, positions, None, length=steps)


@eqx.filter_jit
def gradient_noise_scan(
    target: bc.Target, positions: Any, scale: Array, chain_keys: Array, steps: int
) -> Any:
    """:func:`gradient_scan` plus what any Langevin step needs besides: the driver's key.

    Each iteration also derives the chain keys ``fold_in(chain_key, t)`` and draws one N(0, I)
    vector per chain (JAX's default PRNG), added with the gradient times ``scale`` = 0.
    """
    value_and_grad = jax.vmap(jax.value_and_grad(target.logdensity))
    unravel = ravel_pytree(jax.tree.map(lambda x: x[0], positions))[1]

    def body(x: Any, step: Array) -> tuple[Any, Array]:
        keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, step)
        noise = jax.vmap(lambda key: unravel(jax.random.normal(key, (target.dim,))))(keys)
        value, grad = value_and_grad(x)
        return jax.tree.map(lambda a, g, n: a + scale * (g + n), x, grad, noise), value

    return jax.lax.scan(body, positions, jnp.arange(steps))


def make_blackjax_mala(problem: Any, steps: int) -> Any:
    """Hand-written loop: ``lax.scan`` of ``blackjax.mala`` vmapped over chains, one jit."""
    kernel = blackjax.mala.build_kernel()

    @jax.jit
    def run(chain_keys: Array, states: Any, step_size: Array, data: tuple[Array, ...]) -> Any:
        logdensity = problem.make_logdensity(*data)
        keys = core.driver_keys(steps, chain_keys)

        def one_chain(key: Array, state: Any) -> tuple[Any, Any]:
            return kernel(key, state, logdensity, step_size)

        def body(states: Any, step_keys: Array) -> tuple[Any, Any]:
            states, info = jax.vmap(one_chain)(step_keys, states)
            kept = (states.position, states.logdensity, info.acceptance_rate, info.is_accepted)
            return states, kept

        _, kept = jax.lax.scan(body, states, keys)
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), kept)

    return run


def tune_identity_mala(problem: Any, sizes: Sizes) -> tuple[float, Any]:
    """MALA's step size for the identity metric (median over chains) and the last draws."""
    result = bc.sample(
        bc.inference.mala(adapt_mass_matrix=False),
        problem.target,
        num_samples=1,
        num_warmup=sizes.tune_warmup,
        num_chains=NUM_CHAINS,
        key=jax.random.key(SEED + 2),
        progress=False,
    )
    step_size = float(np.median(np.asarray(result.parameters[0])))
    return step_size, jax.tree.map(lambda x: x[:, -1], result.positions)


def fixed_samplers(step_size: float) -> dict[str, tuple[Any, int]]:
    """The fixed kernels of (a): ``name -> (method, gradients per transition)``."""
    leapfrog = math.sqrt(2.0 * step_size)
    fixed = {"adapt_step_size": False, "adapt_mass_matrix": False}
    return {
        "MALA": (bc.inference.mala(step_size=step_size, **fixed), 1),
        "ULA": (bc.inference.ula(step_size=step_size, **fixed), 1),
        "BAOAB": (bc.inference.underdamped(splitting="baoab", step_size=leapfrog, **fixed), 1),
        "OBABO": (bc.inference.underdamped(splitting="obabo", step_size=leapfrog, **fixed), 1),
        "MALT": (bc.inference.malt(num_steps=MALT_STEPS, step_size=leapfrog, **fixed), MALT_STEPS),
    }


def run_steps(problem: Any, sizes: Sizes, steps: int) -> list[dict[str, Any]]:
    """(a) and (b) on one problem: every fixed kernel, the references, BlackJAX's MALA."""
    step_size, positions = tune_identity_mala(problem, sizes)
    _, state_keys, warmup_keys, sample_keys = run_keys(jax.random.key(SEED + 3), NUM_CHAINS)
    samplers = fixed_samplers(step_size)
    scale = jnp.zeros((), jnp.float32)
    calls: dict[str, Any] = {
        "gradient": lambda: gradient_scan(problem.target, positions, scale, steps),
        "gradient + normal": lambda: gradient_noise_scan(
            problem.target, positions, scale, sample_keys, steps
        ),
    }
    initial: dict[str, Any] = {}
    try:
        from bayescore.core.driver import _draw, _Phase, _warmup

        for name, (method, grads) in samplers.items():
            start = _Phase(method, 0, 0, 1, 0, None)
            initial[name] = _warmup(start, problem.target, warmup_keys, positions, state_keys)
            phase = _Phase(method, 0, steps // grads, 1, 0, None)
            calls[name] = lambda phase=phase, states=initial[name]: _draw(
                phase, problem.target, sample_keys, states
            )
    except (ImportError, AttributeError, TypeError, ValueError) as error:  # private API moved
        note = f"unavailable: {type(error).__name__}: {error}"
        return [step_row(problem, "MALA", None, 1, None, check=note)]
    hand = make_blackjax_mala(problem, steps)
    mala_states = initial["MALA"].chain
    step = jnp.asarray(step_size, jnp.float32)
    calls["blackjax.mala"] = lambda: hand(sample_keys, mala_states, step, problem.data)

    timings = core.measure(calls, sizes.step_repeats, f"{problem.name} steps")
    references = (timings["gradient"][0], timings["gradient + normal"][0])
    rows = [
        step_row(problem, "gradient", references[0], 1, steps, references, check="reference"),
        step_row(
            problem,
            "gradient + normal",
            references[1],
            1,
            steps,
            references,
            check="reference: + fold_in key, N(0, I) draw",
        ),
    ]
    for name, (_, grads) in samplers.items():
        timing, (_, draws, stats) = timings[name]
        finite = all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(draws))
        rate = float(np.mean(np.asarray(stats["acceptance_rate"])))
        check = f"mean acceptance {rate:.2f}" + ("" if finite else ", NON-FINITE draws")
        rows.append(step_row(problem, name, timing, grads, steps, references, check=check))
    timing, (positions_bj, _, rate_bj, accepted_bj) = timings["blackjax.mala"]
    rate = float(np.mean(np.asarray(rate_bj)))
    rows.append(
        step_row(
            problem,
            "blackjax.mala",
            timing,
            1,
            steps,
            references,
            check=f"mean acceptance {rate:.2f} (hand-written loop)",
        )
    )

    _, ours, stats = timings["MALA"][1]
    gap = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(positions_bj), strict=True)
    )
    agree = int(np.sum(np.asarray(stats["is_accepted"]) == np.asarray(accepted_bj)))
    mala = next(r for r in rows if r["sampler"] == "MALA")
    theirs = rows[-1]
    comparison = {
        "section": "mala vs blackjax",
        "target": problem.name,
        "step_size": step_size,
        "steps": steps,
        "bayescore_run_s": mala["run_s"],
        "bayescore_run_min_s": mala["run_min_s"],
        "blackjax_run_s": theirs["run_s"],
        "blackjax_run_min_s": theirs["run_min_s"],
        "ratio_run": mala["run_s"] / theirs["run_s"],
        "ratio_run_min": mala["run_min_s"] / theirs["run_min_s"],
        "max_abs_draw_difference": gap,
        "accept_decisions_agree": agree,
        "accept_decisions": int(np.asarray(accepted_bj).size),
        "acceptance_rate": rate,
    }
    for row in rows[2:]:
        row["step_size"] = math.sqrt(2.0 * step_size) if row["sampler"] in KINETIC else step_size
    return rows + [comparison]


KINETIC = ("BAOAB", "OBABO", "MALT")


def step_row(
    problem: Any,
    sampler: str,
    timing: Any,
    grads_per_step: int,
    steps: int | None,
    references: tuple[Any, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One row of (a): times per gradient evaluation and their ratios to the references'."""

    def per_grad(seconds: float | None) -> float | None:
        return None if seconds is None or not steps else 1e6 * seconds / steps

    def ratio(ours: float | None, theirs: float | None) -> float | None:
        return ours / theirs if ours and theirs else None

    run = None if timing is None else timing.run_median
    run_min = None if timing is None else timing.run_min
    ours, ours_min = per_grad(run), per_grad(run_min)
    ratios = {}
    pairs = zip(("gradient", "gradient_normal"), references or (None, None), strict=True)
    for name, reference in pairs:
        theirs = None if reference is None else per_grad(reference.run_median)
        theirs_min = None if reference is None else per_grad(reference.run_min)
        ratios[f"ratio_to_{name}"] = ratio(ours, theirs)
        ratios[f"ratio_to_{name}_min"] = ratio(ours_min, theirs_min)
    return {
        "section": "step cost",
        "target": problem.name,
        "sampler": sampler,
        "grads_per_step": grads_per_step,
        "gradient_evaluations": steps,
        "transitions": None if steps is None else steps // grads_per_step,
        "compile_s": None if timing is None else timing.first_compile,
        "first_s": None if timing is None else timing.first,
        "recompile_s": None if timing is None else timing.recompile_median,
        "run_s": run,
        "run_min_s": run_min,
        "steady_all_s": None if timing is None else timing.steady,
        "steady_compile_all_s": None if timing is None else timing.steady_compile,
        "us_per_step": None if ours is None else ours * grads_per_step,
        "us_per_gradient": ours,
        **ratios,
        **extra,
    }


# ---------------------------------------------------------------------------------- (c)


def run_ess(problem: Any, sizes: Sizes) -> list[dict[str, Any]]:
    """(c) on one problem: adapted MALA, MALT and NUTS through ``bc.sample``, NumPyro NUTS."""
    key = jax.random.key(SEED)
    methods = {
        "bayescore MALA": bc.inference.mala(),
        "bayescore MALT": bc.inference.malt(num_steps=MALT_STEPS),
        "bayescore NUTS": bc.inference.nuts(),
    }

    def bayescore_call(method: Any) -> Any:
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

    mcmc = core.numpyro_mcmc(problem, sizes)

    def numpyro_call() -> Any:
        mcmc.run(
            key,
            *problem.numpyro_args,
            init_params=problem.numpyro_init,
            extra_fields=("num_steps",),
        )
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    calls = {name: (lambda m=method: bayescore_call(m)) for name, method in methods.items()}
    calls["numpyro NUTS"] = numpyro_call
    timings = core.measure(calls, sizes.repeats, f"{problem.name} ess")

    rows = []
    for name in methods:
        timing, (draws, stats, parameters) = timings[name]
        per_step = {"bayescore MALA": 1, "bayescore MALT": MALT_STEPS}.get(name)
        warmup = None if per_step is None else per_step * sizes.num_warmup * NUM_CHAINS
        step_sizes = np.asarray(parameters[0])  # (step size, mass matrix) for every method
        check = (
            f"acceptance {float(np.mean(np.asarray(stats['acceptance_rate']))):.2f}, "
            f"step size {float(np.min(step_sizes)):.3g}–{float(np.max(step_sizes)):.3g}, "
            f"{int(np.sum(np.asarray(stats['diverging'])))} divergent"
        )
        rows.append(
            ess_row(problem, name, timing, draws, warmup, int(np.sum(stats["n_steps"])), check)
        )
    timing, (draws, fields) = timings["numpyro NUTS"]
    rows.append(
        ess_row(problem, "numpyro NUTS", timing, draws, None, int(np.sum(fields["num_steps"])), "")
    )
    peer = rows[-1]
    for row in rows:
        for key_, field in (
            ("ratio_run", "run_s"),
            ("ratio_run_min", "run_min_s"),
            ("ratio_s_per_ess", "s_per_ess"),
            ("ratio_grads_per_ess", "grads_per_ess"),
        ):
            ours, theirs = row[field], peer[field]
            row[key_] = ours / theirs if ours and theirs else None
    return rows


def ess_row(
    problem: Any,
    runner: str,
    timing: Any,
    draws: Any,
    warmup_gradients: int | None,
    sampling_gradients: int,
    check: str,
) -> dict[str, Any]:
    """One row of (c)."""
    ess = core.min_bulk_ess(draws)
    run = timing.run_median
    return {
        "section": "ess",
        "target": problem.name,
        "runner": runner,
        "compile_s": timing.first_compile,
        "first_s": timing.first,
        "recompile_s": timing.recompile_median,
        "run_s": run,
        "run_min_s": timing.run_min,
        "steady_all_s": timing.steady,
        "steady_compile_all_s": timing.steady_compile,
        "warmup_gradients": warmup_gradients,
        "sampling_gradients": sampling_gradients,
        "min_ess": ess,
        "ess_per_s": ess / run,
        "ess_per_1k_gradients": 1e3 * ess / sampling_gradients,
        "s_per_ess": run / ess,
        "grads_per_ess": sampling_gradients / ess,
        "check": check,
    }


# ---------------------------------------------------------------------------------- report


def markdown(rows: list[dict[str, Any]], sizes: Sizes, load: tuple[float, float]) -> str:
    """The three tables, with the configuration above them."""
    fmt, pair = core.fmt, core.pair
    steps = [r for r in rows if r["section"] == "step cost"]
    versus = [r for r in rows if r["section"] == "mala vs blackjax"]
    ess = [r for r in rows if r["section"] == "ess"]
    lines = [
        f"{NUM_CHAINS} chains vmapped, {jax.default_backend()} ({jax.device_count()} device(s), "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} before / {load[1]:.1f} after). "
        "*run*: wall time minus the JAX compile work inside the call, median / min over the "
        "repeated calls, interleaved across runners. Ratios: > 1 means the bayescore runner "
        "is slower (or, for *÷ gradient*, that a step costs more than a gradient evaluation).",
        "",
        f"**(a) Cost of a step** ({sizes.gaussian_steps:,d} (Gaussian) / "
        f"{sizes.logistic_steps:,d} (logistic) gradient evaluations per chain per call, "
        f"{sizes.step_repeats} repeated calls; fixed kernels, identity metric, MALT "
        f"{MALT_STEPS} steps per transition): *µs per grad* = run ÷ gradient evaluations per "
        "chain; *÷ gradient* = that ÷ the reference's: the jitted, vmapped `value_and_grad` of "
        "the same Target in a scan of the same length (goal ≤ 1.1); *÷ gradient + normal*: "
        "the reference that also derives the per-step key and draws one N(0, I) vector per "
        "chain, the least a Langevin step does.",
        "",
        "| target | sampler | grads per step | step size | compile s | run s (median / min) "
        "| µs per step | µs per grad | ÷ gradient (median / min) "
        "| ÷ gradient + normal (median / min) | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in steps:
        lines.append(
            f"| {r['target']} | {r['sampler']} | {r['grads_per_step']} "
            f"| {fmt(r.get('step_size'), '.3g')} "
            f"| {fmt(r['compile_s'], '.1f')} | {pair(r['run_s'], r['run_min_s'], '.3f')} "
            f"| {fmt(r['us_per_step'], '.2f')} | {fmt(r['us_per_gradient'], '.2f')} "
            f"| {pair(r['ratio_to_gradient'], r['ratio_to_gradient_min'], '.3f')} "
            f"| {pair(r['ratio_to_gradient_normal'], r['ratio_to_gradient_normal_min'], '.3f')} "
            f"| {r.get('check', '')} |"
        )
    lines += [
        "",
        "**(b) bayescore MALA ÷ hand-written `blackjax.mala`** (the MALA and blackjax.mala "
        "runs of (a): same step size, keys and starting states; goal ≤ 1.0).",
        "",
        "| target | step size | bayescore run s | blackjax run s | ratio run (median / min) "
        "| max abs Δdraw | accept decisions agree | acceptance |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in versus:
        lines.append(
            f"| {r['target']} | {r['step_size']:.3g} "
            f"| {pair(r['bayescore_run_s'], r['bayescore_run_min_s'], '.3f')} "
            f"| {pair(r['blackjax_run_s'], r['blackjax_run_min_s'], '.3f')} "
            f"| {pair(r['ratio_run'], r['ratio_run_min'], '.3f')} "
            f"| {r['max_abs_draw_difference']:.1e} "
            f"| {r['accept_decisions_agree']:,d} / {r['accept_decisions']:,d} "
            f"| {r['acceptance_rate']:.2f} |"
        )
    lines += [
        "",
        f"**(c) ESS per second** (adapted, {sizes.num_warmup} warmup + {sizes.num_samples} "
        f"draws per chain, {sizes.repeats} repeated calls; *run*: warmup + sampling). "
        "*grad evals*: summed over chains, warmup (– where not counted) / sampling; "
        "*ESS per 1k grads* uses the sampling ones. Ratios: bayescore ÷ NumPyro NUTS.",
        "",
        "| target | runner | compile s | recompile s | run s (median / min) "
        "| grad evals (warmup / sampling) | min ESS | ESS/s | ESS per 1k grads "
        "| ratio run (median / min) | ratio s per ESS | ratio grads per ESS | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ess:
        lines.append(
            f"| {r['target']} | {r['runner']} | {fmt(r['compile_s'], '.1f')} "
            f"| {fmt(r['recompile_s'], '.2f')} | {pair(r['run_s'], r['run_min_s'], '.3f')} "
            f"| {pair(r['warmup_gradients'], r['sampling_gradients'], ',d')} "
            f"| {fmt(r['min_ess'], '.0f')} | {fmt(r['ess_per_s'], '.0f')} "
            f"| {fmt(r['ess_per_1k_gradients'], '.2f')} "
            f"| {pair(r['ratio_run'], r['ratio_run_min'], '.3f')} "
            f"| {fmt(r['ratio_s_per_ess'], '.3f')} | {fmt(r['ratio_grads_per_ess'], '.3f')} "
            f"| {r['check']} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Run (a), (b) and (c); returns ``{"area": "langevin", "rows": [...], "markdown": "..."}``."""
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    problems = [
        (core.gaussian_problem(sizes.gaussian_dim), sizes.gaussian_steps),
        (core.logistic_problem(sizes.logistic_n, sizes.logistic_d), sizes.logistic_steps),
    ]
    step_rows: list[dict[str, Any]] = []
    ess_rows: list[dict[str, Any]] = []
    for problem, steps in problems:
        step_rows += run_steps(problem, sizes, steps)
        ess_rows += run_ess(problem, sizes)
    rows = step_rows + ess_rows
    for item in rows:
        item.update(num_chains=NUM_CHAINS, backend=jax.default_backend(), sizes=sizes._asdict())
    load = (load_before, os.getloadavg()[0])
    return {
        "area": "langevin",
        "rows": rows,
        "markdown": markdown(rows, sizes, load),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, smaller logistic data")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
