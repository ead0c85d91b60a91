"""Flow training: bayescore vs flowjax on the same flows, data and steps, in one process.

What is measured
================

**Maximum likelihood** (``bayescore.models.flows.fit_to_data`` vs
``flowjax.train.fit_to_data``). Both train the *same* flowjax flow object (same initial
parameters) with the *same* optax Adam object (learning rate 1e-3), minibatches of 256, 10%
validation, for a fixed number of epochs (early stopping off: patience above the epoch count),
so both take the same number of optimiser steps on the same data; flowjax is given one
``MaximumLikelihoodLoss`` instance for all its calls, so it does not recompile between calls
(its best case). Two problems:

* ``two moons`` (generated, noise 0.05): an 8-knot rational-quadratic spline coupling flow,
  4 layers, conditioner width 50 (flowjax's default), standard normal base.
* ``gmm d=8``: a mixture of 5 Gaussians in 8 dimensions (means N(0, 3²), random covariances
  with eigenvalues in [0.1, 1]); a masked autoregressive flow with spline transformers,
  4 layers, width 64. Its exact log density gives the *oracle* test log-likelihood.

*compile s*: JAX compile work in the first call. *run s*: wall time minus compile work of
each repeated call (``block_until_ready`` on the fitted flow), median / min over the rounds
(``benchmarks/core.py: measure``, runners interleaved). *µs per step*: run s over the steps
taken. *ratio*: bayescore ÷ flowjax (target ≤ 1). *test LL*: mean log-likelihood of 5000
held-out points (nats per point; higher is better), averaged over every call of the runner,
each call with its own key (so its own train/validation split and shuffle order), ± the
standard error of that average: the two loops draw their random numbers differently, so only
a difference beyond this spread says one trains better.

**Torus** (circular data; test log-likelihood). Two angles from the wrapped-Gaussian mixture
of ``bayescore.demo.flows.dihedral_angles``; bayescore's smooth (C^∞) torus flow
(``smooth_flow(circular=True)``, 4 coupling layers, 8 mixture components, width 64) against a
flowjax spline coupling flow on the square [−π, π]² (8 knots, 4 layers, width 64, uniform
base): the flowjax choice for angles, which ignores that −π and π are the same angle. Both
are trained by the same loop (bayescore's) for the same epochs; the oracle is the exact
density.

``--quick``: smaller data, fewer epochs, one repeated round. Run ``python
benchmarks/flows.py [--quick]`` or ``bayescore bench flows [--quick]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NamedTuple

import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flowjax.bijections import RationalQuadraticSpline
from flowjax.distributions import StandardNormal, Uniform
from flowjax.train import fit_to_data as flowjax_fit
from flowjax.train.losses import MaximumLikelihoodLoss

from bayescore.demo.flows import dihedral_angles, dihedral_log_density, two_moons
from bayescore.models.flows import (
    coupling_flow,
    fit_to_data,
    masked_autoregressive_flow,
    smooth_flow,
)

SEED = core.SEED
BATCH = 256
VAL_PROP = 0.1
LEARNING_RATE = 1e-3
NUM_TEST = 5000


class Sizes(NamedTuple):
    """Data sizes and run lengths of one benchmark mode.

    Attributes:
        num_train: rows given to the trainers (10% of them validation).
        epochs: passes over the training rows.
        repeats: timed rounds after the first call.
        torus_train: rows of the torus problem.
        torus_epochs: its passes.
    """

    num_train: int
    epochs: int
    repeats: int
    torus_train: int
    torus_epochs: int


FULL = Sizes(num_train=20_000, epochs=20, repeats=3, torus_train=10_000, torus_epochs=40)
QUICK = Sizes(num_train=2_000, epochs=2, repeats=1, torus_train=1_000, torus_epochs=3)


def gaussian_mixture(dim: int = 8, components: int = 5) -> tuple[Any, Any]:
    """``(sample(seed, n), log_density(x))`` of a fixed random Gaussian mixture."""
    rng = np.random.default_rng(SEED)
    means = 3.0 * rng.normal(size=(components, dim))
    rotations = np.linalg.qr(rng.normal(size=(components, dim, dim)))[0]
    eigenvalues = rng.uniform(0.1, 1.0, size=(components, dim))
    covariances = np.einsum("kij,kj,klj->kil", rotations, eigenvalues, rotations)
    factors = np.linalg.cholesky(covariances)
    weights = np.full(components, 1.0 / components)

    def sample(seed: int, num: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        which = rng.choice(components, size=num, p=weights)
        noise = np.einsum("nij,nj->ni", factors[which], rng.normal(size=(num, dim)))
        return (means[which] + noise).astype(np.float32)

    def log_density(x: Any) -> Any:
        precisions = jnp.linalg.inv(covariances)
        offsets = jnp.asarray(x)[:, None, :] - means[None]
        quadratic = jnp.einsum("nki,kij,nkj->nk", offsets, precisions, offsets)
        log_norms = -0.5 * dim * jnp.log(2 * jnp.pi) - 0.5 * jnp.linalg.slogdet(covariances)[1]
        return jax.scipy.special.logsumexp(jnp.log(weights) + log_norms - 0.5 * quadratic, 1)

    return sample, log_density


def mean_log_prob(flow: Any, x: np.ndarray) -> float:
    return float(jnp.mean(eqx.filter_jit(lambda f, x: f.log_prob(x))(flow, jnp.asarray(x))))


def ml_rows(sizes: Sizes) -> list[dict[str, Any]]:
    """Maximum-likelihood training, bayescore vs flowjax, on two moons and the d=8 mixture."""
    sample_gmm, gmm_log_density = gaussian_mixture()
    problems = {
        "two moons": (
            coupling_flow(
                jax.random.key(SEED),
                base_dist=StandardNormal((2,)),
                transformer=RationalQuadraticSpline(knots=8, interval=4.0),
                flow_layers=4,
            ),
            two_moons(SEED, sizes.num_train),
            two_moons(SEED + 1, NUM_TEST),
            None,
        ),
        "gmm d=8": (
            masked_autoregressive_flow(
                jax.random.key(SEED),
                base_dist=StandardNormal((8,)),
                transformer=RationalQuadraticSpline(knots=8, interval=12.0),
                flow_layers=4,
                nn_width=64,
            ),
            sample_gmm(SEED, sizes.num_train),
            sample_gmm(SEED + 1, NUM_TEST),
            gmm_log_density,
        ),
    }
    optimizer = optax.adam(LEARNING_RATE)
    loss = MaximumLikelihoodLoss()
    steps = sizes.epochs * ((sizes.num_train - round(VAL_PROP * sizes.num_train)) // BATCH)
    rows = []
    for problem, (flow, train, test, oracle) in problems.items():
        common = dict(
            optimizer=optimizer,
            max_epochs=sizes.epochs,
            max_patience=sizes.epochs + 1,
            batch_size=BATCH,
            val_prop=VAL_PROP,
        )
        fitted: dict[str, list[Any]] = {"bayescore": [], "flowjax": []}

        def ours(flow=flow, train=train, common=common, fitted=fitted["bayescore"]):
            key = jax.random.key(len(fitted))  # a new split and shuffle order per call
            fitted.append(fit_to_data(key, flow, train, progress=False, **common)[0])
            return fitted[-1]

        def theirs(flow=flow, train=train, common=common, fitted=fitted["flowjax"]):
            key = jax.random.key(len(fitted))
            fitted.append(
                flowjax_fit(key, flow, train, loss_fn=loss, show_progress=False, **common)[0]
            )
            return fitted[-1]

        timings = core.measure({"bayescore": ours, "flowjax": theirs}, sizes.repeats, problem)
        reference = timings["bayescore"][0]
        oracle_ll = None if oracle is None else float(jnp.mean(oracle(test)))
        for runner, (timing, _) in timings.items():
            test_lls = [mean_log_prob(flow, test) for flow in fitted[runner]]
            rows.append(
                {
                    "problem": problem,
                    "runner": runner,
                    "steps": steps,
                    "compile_s": timing.first_compile,
                    "run_s": timing.run_median,
                    "run_min_s": timing.run_min,
                    "us_per_step": 1e6 * timing.run_median / steps,
                    "ratio": None
                    if runner == "bayescore"
                    else reference.run_median / timing.run_median,
                    "ratio_min": None
                    if runner == "bayescore"
                    else reference.run_min / timing.run_min,
                    "test_ll": float(np.mean(test_lls)),
                    "test_ll_se": float(np.std(test_lls, ddof=1) / np.sqrt(len(test_lls)))
                    if len(test_lls) > 1
                    else None,
                    "test_lls": test_lls,
                    "oracle_ll": oracle_ll,
                }
            )
    return rows


def torus_rows(sizes: Sizes) -> list[dict[str, Any]]:
    """Smooth torus flow vs flowjax spline coupling flow on circular data (test LL)."""
    train = dihedral_angles(SEED, sizes.torus_train)
    test = dihedral_angles(SEED + 1, NUM_TEST)
    flows = {
        "bayescore smooth torus flow": smooth_flow(
            jax.random.key(SEED),
            2,
            circular=True,
            low=-jnp.pi,
            high=jnp.pi,
            flow_layers=4,
            num_components=8,
            nn_width=64,
        ),
        "flowjax spline flow on [−π, π]²": coupling_flow(
            jax.random.key(SEED),
            base_dist=Uniform(-jnp.pi * jnp.ones(2), jnp.pi * jnp.ones(2)),
            transformer=RationalQuadraticSpline(knots=8, interval=(-jnp.pi, jnp.pi)),
            flow_layers=4,
            nn_width=64,
        ),
    }
    oracle = float(jnp.mean(dihedral_log_density(test)))
    rows = []
    for name, flow in flows.items():
        wall, compile_seconds, (fitted, history) = core.timed_call(
            lambda flow=flow: fit_to_data(
                jax.random.key(1),
                flow,
                train,
                learning_rate=LEARNING_RATE,
                max_epochs=sizes.torus_epochs,
                max_patience=10,
                batch_size=BATCH,
                progress=False,
            )
        )
        core.log(f"torus {name}: {wall:.1f} s")
        # Periodicity: the density on the seam, approached from both sides.
        edge = np.linspace(-3.0, 3.0, 13, dtype=np.float32)
        seam = np.full_like(edge, np.pi - 1e-5)
        left = np.stack([-seam, edge], 1)
        right = np.stack([seam, edge], 1)
        log_prob = eqx.filter_jit(lambda f, x: f.log_prob(x))
        jump = float(jnp.max(jnp.abs(log_prob(fitted, left) - log_prob(fitted, right))))
        rows.append(
            {
                "problem": "torus",
                "runner": name,
                "epochs": len(history["train"]),
                "seconds": wall,
                "compile_s": compile_seconds,
                "test_ll": mean_log_prob(fitted, test),
                "oracle_ll": oracle,
                "seam_jump": jump,
            }
        )
    return rows


def markdown(ml: list[dict[str, Any]], torus: list[dict[str, Any]], sizes: Sizes, load: Any) -> str:
    fmt, pair = core.fmt, core.pair
    lines = [
        f"Maximum-likelihood training, {sizes.num_train:,d} rows (10% validation), minibatch "
        f"{BATCH}, {sizes.epochs} epochs, Adam {LEARNING_RATE:g}; {jax.default_backend()}, "
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} before / {load[1]:.1f} after. "
        f"*run*: wall minus compile work, median / min over {sizes.repeats} rounds. *ratio*: "
        "bayescore ÷ flowjax (target ≤ 1). *test LL*: nats per point on 5000 held-out rows, "
        f"mean ± standard error over the {sizes.repeats + 1} calls, each with its own key "
        "(train/validation split and shuffle order).",
        "",
        "| problem | runner | steps | compile s | run s (median / min) | µs per step "
        "| ratio (median / min) | test LL | oracle LL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ml:
        lines.append(
            f"| {r['problem']} | {r['runner']} | {r['steps']} | {fmt(r['compile_s'], '.1f')} "
            f"| {pair(r['run_s'], r['run_min_s'], '.3f')} | {fmt(r['us_per_step'], '.0f')} "
            f"| {pair(r['ratio'], r['ratio_min'], '.2f')} | {fmt(r['test_ll'], '.3f')} "
            f"± {fmt(r['test_ll_se'], '.3f')} "
            f"| {fmt(r['oracle_ll'], '.3f')} |"
        )
    lines += [
        "",
        f"Torus: {sizes.torus_train:,d} pairs of angles, up to {sizes.torus_epochs} epochs "
        "(patience 10), both flows trained by bayescore's loop. *seam jump*: largest "
        "|log q(−π + δ, ψ) − log q(π − δ, ψ)| over 13 values of ψ (δ = 10⁻⁵; 0 for a density "
        "continuous on the torus).",
        "",
        "| flow | epochs | seconds | test LL | oracle LL | seam jump |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in torus:
        lines.append(
            f"| {r['runner']} | {r['epochs']} | {fmt(r['seconds'], '.1f')} "
            f"| {fmt(r['test_ll'], '.3f')} | {fmt(r['oracle_ll'], '.3f')} "
            f"| {fmt(r['seam_jump'], '.3g')} |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Both parts; returns ``{"area": "flows", "rows": [...], "markdown": "..."}``."""
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    ml = ml_rows(sizes)
    torus = torus_rows(sizes)
    load = (load_before, os.getloadavg()[0])
    for item in ml + torus:
        item.update(backend=jax.default_backend(), sizes=sizes._asdict())
    return {
        "area": "flows",
        "rows": ml + torus,
        "markdown": markdown(ml, torus, sizes, load),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, smaller data")
    args = parser.parse_args()
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
