"""Higher-order programs: compiled-tier SMC vs a BlackJAX particle filter; eager trace MH.

What is measured
================

**Compiled-tier SMC** (``programs.smc(..., tier="compiled")``) as a bootstrap particle filter
on a static nonlinear state-space model (Kitagawa 1996; Gordon, Salmond & Smith 1993),
written as an ordinary NumPyro model with one latent and one observed site per step,

    x_0 ~ N(0, 5),  x_t = x_{t-1}/2 + 25 x_{t-1}/(1 + x_{t-1}²) + 8 cos(1.2 t) + N(0, 10),
    y_t = x_t²/20 + N(0, 1),   t = 0, ..., T - 1,

T = 100 observations simulated from the model (fixed seed), N = 10⁴ particles, float32,
systematic resampling at every step (``ess_threshold=1.0``), against the same filter built
from BlackJAX's SMC building blocks in the same process (BlackJAX has no particle-filter API):
``blackjax.smc.base.step`` with ``blackjax.smc.resampling.systematic``, the propagation and
observation densities written with ``jax.random`` / ``jax.scipy``, a ``lax.scan`` over the
steps under one ``jax.jit``; once returning log Ẑ only (the reference of the ratios), once
also returning every step's particles and ancestor indices, which is what bayescore's
``Population`` keeps (its particles' paths are gathered from them when first read). A second
bayescore row resamples adaptively (the default ``ess_threshold=0.5``).

* *compile s*: wall time of the first call (tracing + XLA compilation + one run);
* *run s*: median (and minimum) steady-state wall time of a call over the seeds (same N
  and T, new keys; every round calls each runner once, in turn, so they share the drift of
  a shared machine), ``jax.block_until_ready`` on the log-evidence (bayescore's call returns
  a ``Population`` whose log weights are on the host, so its time includes that transfer
  and the Python around the compiled program; its particles' paths are gathered when
  first read, not here);
* *particle·steps/s*: N·T / run s; *ratio*: bayescore's throughput ÷ BlackJAX's (target ≥ 1);
* *log Ẑ mean / var*: over 20 seeds (the filter's log-evidence estimate; the two estimate the
  same quantity, so their means agree within a few of their standard deviations).

**Eager-tier trace MH** (``programs.trace_mh``, ``single_site`` kernel) on the Dirichlet-process
(CRP) mixture of ``bayescore demo`` (``bayescore.demo.programs.dp_mixture``, 12 points, one
discrete link site and one factor per point): MH steps per second.

**Compiled-tier trace MH** (``programs.trace_mh(..., tier="compiled")``, ``single_site``) on
the Kitagawa model above (T = 100: 100 latent and 100 observed sites, a static program), the
whole chain one ``lax.scan``: *compile s* is the first call's wall time minus a steady call's
(tracing and XLA compilation), *steps/s* the median over seeds of steps ÷ the wall time of a
``trace_mh`` call (``block_until_ready`` on its arrays; the eager start, the scan and the
transfer to the host), beside the eager tier's steps/s on the same model.

**Compiled PMMH** (``programs.pmmh(..., tier="compiled")``) on the observation noise sd
σ ~ LogNormal(0, 0.5) of the same model (y_t ~ N(x_t²/20, σ²)), the
inner SMC 256 particles over the 100 steps with σ an input of it: MH steps per second (the
eager tier runs a Python SMC per step, too slow to time here).

``--quick``: N = 10³, 5 seeds, 200 MH steps (compiled: 2000 steps, 3 seeds; eager on the
Kitagawa model: 10 steps; PMMH: 200 steps). Run ``python benchmarks/programs.py
[--quick]`` or ``bayescore bench programs [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import blackjax.smc.base as smc_base
import blackjax.smc.resampling as resampling
import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from bayescore.demo.programs import cluster_data, dp_mixture
from bayescore.inference import programs
from bayescore.models import ho

SEED = core.SEED
NUM_STEPS = 100
INIT_SD, TRANSITION_SD, NOISE_SD = math.sqrt(5.0), math.sqrt(10.0), 1.0


def drift(x: Any, t: Any) -> Any:
    return 0.5 * x + 25.0 * x / (1.0 + x * x) + 8.0 * jnp.cos(1.2 * t)


def simulate(num_steps: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    x = INIT_SD * rng.normal()
    ys = []
    for t in range(num_steps):
        if t:
            x = float(drift(x, t)) + TRANSITION_SD * rng.normal()
        ys.append(x * x / 20.0 + NOISE_SD * rng.normal())
    return np.asarray(ys, dtype=np.float32)


def kitagawa(ys: np.ndarray) -> None:
    """The state-space model as a NumPyro program (static: no control flow on values)."""
    x = numpyro.sample("x_0", dist.Normal(0.0, INIT_SD))
    for t in range(len(ys)):
        if t:
            x = numpyro.sample(f"x_{t}", dist.Normal(drift(x, float(t)), TRANSITION_SD))
        numpyro.sample(f"y_{t}", dist.Normal(x * x / 20.0, NOISE_SD), obs=ys[t])


def blackjax_filter(ys: np.ndarray, num_particles: int, history: bool = False) -> Any:
    """The bootstrap filter from ``blackjax.smc.base.step``: key -> log Ẑ (and, with
    ``history``, every step's particles and ancestor indices, what bayescore keeps)."""
    ys = jnp.asarray(ys)

    def log_likelihood(x: Any, y: Any) -> Any:
        return norm.logpdf(y, x * x / 20.0, NOISE_SD)

    @jax.jit
    def run(key: Any) -> Any:
        init_key, key = jax.random.split(key)
        particles = INIT_SD * jax.random.normal(init_key, (num_particles,))
        log_weights = log_likelihood(particles, ys[0])
        log_z = logsumexp(log_weights) - jnp.log(num_particles)
        weights = jnp.exp(log_weights - logsumexp(log_weights))
        state = smc_base.init(particles, {})
        state = state._replace(weights=weights)

        def one_step(state: Any, inputs: Any) -> Any:
            step_key, t, y = inputs

            def update(keys: Any, x: Any, _: Any) -> Any:
                noise = jax.vmap(lambda k: jax.random.normal(k))(keys)
                return drift(x, t) + TRANSITION_SD * noise, None

            state, info = smc_base.step(
                step_key,
                state,
                update,
                lambda x: log_likelihood(x, y),
                resampling.systematic,
            )
            if history:
                return state, (info.log_likelihood_increment, state.particles, info.ancestors)
            return state, info.log_likelihood_increment

        steps = jnp.arange(1, len(ys))
        _, outputs = jax.lax.scan(
            one_step, state, (jax.random.split(key, len(steps)), steps.astype(float), ys[1:])
        )
        if history:
            increments, particles_history, ancestors = outputs
            return log_z + increments.sum(), particles_history, ancestors
        return log_z + outputs.sum()

    return run


def bayescore_filter(ys: np.ndarray, num_particles: int, ess_threshold: float) -> Any:
    program = ho.from_model(kitagawa, ys)

    def run(key: Any) -> Any:
        population = programs.smc(
            program, num_particles, key, tier="compiled", ess_threshold=ess_threshold
        )
        return population.log_evidence

    return run


def filter_rows(quick: bool) -> list[dict]:
    ys = simulate(NUM_STEPS)
    num_particles = 1_000 if quick else 10_000
    num_seeds = 5 if quick else 20
    runners = {
        "bayescore smc, compiled tier (resample every step)": bayescore_filter(
            ys, num_particles, 1.0
        ),
        "bayescore smc, compiled tier (ESS < N/2)": bayescore_filter(ys, num_particles, 0.5),
        "blackjax smc.base.step, particle history kept": (
            lambda key, run=blackjax_filter(ys, num_particles, history=True): run(key)[0]
        ),
        "blackjax smc.base.step bootstrap filter": blackjax_filter(ys, num_particles),
    }
    first = {
        name: core.timed_call(lambda call=call: call(jax.random.key(SEED)))
        for name, call in runners.items()
    }
    # rounds call every runner once in turn, so all see the same drift of a shared machine
    times: dict[str, list] = {name: [] for name in runners}
    estimates: dict[str, list] = {name: [] for name in runners}
    for seed in range(num_seeds):
        for name, call in runners.items():
            wall, _, log_z = core.timed_call(
                lambda call=call, seed=seed: call(jax.random.key(SEED + 1 + seed))
            )
            times[name].append(wall)
            estimates[name].append(float(log_z))
    rows = []
    for name in runners:
        run_s = statistics.median(times[name])
        rows.append(
            {
                "runner": name,
                "num_particles": num_particles,
                "num_steps": NUM_STEPS,
                "compile_s": first[name][0],
                "compile_work_s": first[name][1],
                "run_s": run_s,
                "min_run_s": min(times[name]),
                "throughput": num_particles * NUM_STEPS / run_s,
                "best_throughput": num_particles * NUM_STEPS / min(times[name]),
                "log_z_mean": float(np.mean(estimates[name])),
                "log_z_var": float(np.var(estimates[name], ddof=1)),
                "seeds": num_seeds,
            }
        )
        core.log(
            f"{name}: first call {first[name][0]:.1f} s, run {run_s * 1e3:.1f} ms (min "
            f"{min(times[name]) * 1e3:.1f}), log Z {rows[-1]['log_z_mean']:.2f}, var "
            f"{rows[-1]['log_z_var']:.3f}"
        )
    reference, best_reference = rows[-1]["throughput"], rows[-1]["best_throughput"]
    for row in rows:
        row["ratio"] = row["throughput"] / reference
        row["best_ratio"] = row["best_throughput"] / best_reference
    return rows


def trace_mh_row(quick: bool) -> dict:
    num_steps = 200 if quick else 1000
    program = ho.from_model(dp_mixture, cluster_data())
    programs.trace_mh(program, 5, jax.random.key(SEED))  # warm NumPyro's per-shape caches
    start = time.perf_counter()
    chain = programs.trace_mh(program, num_steps, jax.random.key(SEED + 1))
    wall = time.perf_counter() - start
    row = {
        "runner": "bayescore trace_mh, eager tier, single_site",
        "model": "CRP mixture of bayescore demo (12 points)",
        "num_steps": num_steps,
        "run_s": wall,
        "steps_per_s": num_steps / wall,
        "acceptance_rate": chain.acceptance_rate,
    }
    core.log(f"trace MH: {row['steps_per_s']:.0f} steps/s")
    return row


def compiled_trace_mh_row(quick: bool) -> dict:
    """Compiled vs eager single-site trace MH on the Kitagawa model (static, 100 latents)."""
    num_steps, num_seeds, eager_steps = (2000, 3, 10) if quick else (10_000, 5, 40)
    program = ho.from_model(kitagawa, simulate(NUM_STEPS))

    acceptance = []

    def chain(seed: int, tier: str, steps: int) -> Any:
        result = programs.trace_mh(program, steps, jax.random.key(SEED + seed), tier=tier)
        acceptance.append(result.acceptance_rate)
        return result.log_weights, result.particles.latents if tier == "compiled" else None

    first, _, _ = core.timed_call(lambda: chain(0, "compiled", num_steps))
    times = [
        core.timed_call(lambda s=s: chain(s, "compiled", num_steps))[0]
        for s in range(1, 1 + num_seeds)
    ]
    run_s = statistics.median(times)
    chain(0, "eager", 2)  # warm NumPyro's per-shape caches
    eager_s = core.timed_call(lambda: chain(1, "eager", eager_steps))[0]
    row = {
        "runner": "bayescore trace_mh, compiled tier, single_site",
        "model": f"Kitagawa state-space model (T = {NUM_STEPS}: {NUM_STEPS} latent sites)",
        "num_steps": num_steps,
        "compile_s": first - run_s,
        "run_s": run_s,
        "min_run_s": min(times),
        "steps_per_s": num_steps / run_s,
        "eager_steps": eager_steps,
        "eager_steps_per_s": eager_steps / eager_s,
        "acceptance_rate": statistics.median(acceptance[: 1 + num_seeds]),
        "seeds": num_seeds,
    }
    core.log(
        f"compiled trace MH: compile {row['compile_s']:.1f} s, {row['steps_per_s']:.0f} steps/s "
        f"(eager {row['eager_steps_per_s']:.1f} steps/s)"
    )
    return row


def noise_prior() -> Any:
    return numpyro.sample("noise_sd", dist.LogNormal(0.0, 0.5))


def kitagawa_with_noise(ys: np.ndarray) -> Any:
    """σ -> the Kitagawa model with observation noise sd σ (static for a traced σ)."""

    def model(noise_sd: Any) -> Any:
        def body() -> None:
            x = numpyro.sample("x_0", dist.Normal(0.0, INIT_SD))
            for t in range(len(ys)):
                if t:
                    x = numpyro.sample(f"x_{t}", dist.Normal(drift(x, float(t)), TRANSITION_SD))
                numpyro.sample(f"y_{t}", dist.Normal(x * x / 20.0, noise_sd), obs=ys[t])

        return ho.from_model(body)

    return model


def pmmh_row(quick: bool) -> dict:
    num_steps, num_particles, num_seeds = (200, 256, 3) if quick else (1000, 256, 5)
    prior, model = ho.Random.from_model(noise_prior), kitagawa_with_noise(simulate(NUM_STEPS))
    acceptance = []

    def chain(seed: int) -> Any:
        result = programs.pmmh(
            prior, model, num_particles, num_steps, jax.random.key(SEED + seed), tier="compiled"
        )
        acceptance.append(result.acceptance_rate)
        return result.log_weights

    first = core.timed_call(lambda: chain(0))[0]
    times = [core.timed_call(lambda s=s: chain(s))[0] for s in range(1, 1 + num_seeds)]
    run_s = statistics.median(times)
    row = {
        "runner": "bayescore pmmh, compiled tier",
        "num_particles": num_particles,
        "num_steps": num_steps,
        "compile_s": first - run_s,
        "run_s": run_s,
        "steps_per_s": num_steps / run_s,
        "acceptance_rate": statistics.median(acceptance),
        "seeds": num_seeds,
    }
    core.log(f"compiled PMMH: compile {row['compile_s']:.1f} s, {row['steps_per_s']:.0f} steps/s")
    return row


def markdown(
    rows: list[dict], mh: dict, load: tuple[float, float], fast: dict, particle_mh: dict
) -> str:
    first = rows[0]
    lines = [
        f"Bootstrap particle filter on the Kitagawa nonlinear state-space model, T = "
        f"{first['num_steps']}, N = {first['num_particles']:,d} particles, float32, "
        f"systematic resampling; {jax.default_backend()}, {os.cpu_count()} CPU cores, load "
        f"average {load[0]:.1f} before / {load[1]:.1f} after. *compile s*: the first call "
        "(tracing, XLA compilation, one run); *run s*: median and minimum steady-state call "
        f"over {first['seeds']} seeds (`block_until_ready`; the runners called in turn each "
        "round); *particle·steps/s* from the median; *ratio*: bayescore's throughput ÷ "
        "BlackJAX's, from the median and from the minimum (target ≥ 1); log Ẑ mean and "
        "variance over the same seeds.",
        "",
        "| runner | compile s | run s (median / min) | particle·steps/s | ratio (median / min) "
        "| log Ẑ mean | log Ẑ var |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runner']} | {r['compile_s']:.1f} | {r['run_s']:.4f} / {r['min_run_s']:.4f} "
            f"| {r['throughput']:.3g} | {r['ratio']:.2f} / {r['best_ratio']:.2f} "
            f"| {r['log_z_mean']:.2f} | {r['log_z_var']:.3f} |"
        )
    lines += [
        "",
        "",
        f"Eager-tier trace MH ({mh['model']}, {mh['num_steps']} steps): "
        f"{mh['steps_per_s']:.0f} steps/s, acceptance rate {mh['acceptance_rate']:.2f}.",
        "",
        f"Single-site trace MH on the {fast['model']}, {fast['num_steps']:,d} steps: the "
        f"compiled tier (one `lax.scan`; compile s = first call − median steady call; steps/s "
        f"from the median of {fast['seeds']} seeds, `block_until_ready`) vs the eager tier "
        f"({fast['eager_steps']} steps).",
        "",
        "| runner | compile s | run s (median / min) | steps/s | acceptance rate |",
        "|---|---:|---:|---:|---:|",
        f"| {fast['runner']} | {fast['compile_s']:.1f} | {fast['run_s']:.3f} / "
        f"{fast['min_run_s']:.3f} | {fast['steps_per_s']:.0f} | {fast['acceptance_rate']:.2f} |",
        f"| bayescore trace_mh, eager tier, single_site | – | – | "
        f"{fast['eager_steps_per_s']:.1f} | – |",
        f"| {particle_mh['runner']} (σ of the same model, N = "
        f"{particle_mh['num_particles']}, {particle_mh['num_steps']} steps) | "
        f"{particle_mh['compile_s']:.1f} | {particle_mh['run_s']:.3f} / – | "
        f"{particle_mh['steps_per_s']:.0f} | {particle_mh['acceptance_rate']:.2f} |",
    ]
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """The filter comparison and the trace-MH rate; returns rows and markdown."""
    load_before = os.getloadavg()[0]
    rows = filter_rows(quick)
    mh = trace_mh_row(quick)
    fast = compiled_trace_mh_row(quick)
    particle_mh = pmmh_row(quick)
    load = (load_before, os.getloadavg()[0])
    return {
        "area": "programs",
        "rows": rows,
        "trace_mh": mh,
        "compiled_trace_mh": fast,
        "pmmh": particle_mh,
        "markdown": markdown(rows, mh, load, fast, particle_mh),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000, fewer seeds and steps")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
