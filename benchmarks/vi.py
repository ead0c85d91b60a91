"""Variational inference: bc.fit vs NumPyro's SVI autoguides and flowjax's VI loop.

What is measured
================

Three targets, NumPyro models (float32):

* ``funnel``: Neal's funnel, d = 10, ``v ~ N(0, 3²)``, ``x_i ~ N(0, e^{v/2})``; log Z = 0.
* ``banana``: ``x0 ~ N(0, 10²)``, ``x1 ~ N(0.03 (x0² − 100), 1)`` (inference gym); log Z = 0.
* ``logistic``: Bayesian logistic regression, N = 2000, d = 10, ``w ~ N(0, I)``.

Pairs of runners with the same family, objective (ELBO), draws per step (16), optimiser
(``optax.adam(1e-2)``, for the flows 3e-3) and number of steps:

* mean-field normal: ``bc.fit(target, vi.mean_field(target))`` vs NumPyro ``SVI`` with
  ``AutoNormal`` and ``Trace_ELBO(num_particles=16)``;
* full-rank normal: ``vi.full_rank`` vs ``AutoMultivariateNormal``;
* the same two normal families fitted by ``bc.fit`` with ``vi.sticking_the_landing()`` (the
  path gradient: the score term of the reparameterisation gradient, zero in expectation,
  dropped; NumPyro's ``Trace_ELBO`` has no such estimator), beside the same NumPyro fits
  (timed again in the interleaved rounds, their ELBOs not refitted);
* IAF: ``bc.fit`` on ``flows.inverse_autoregressive_flow`` (flowjax's masked autoregressive
  layers with NumPyro's clipped log-scale affine transformer; 2 layers, width 32, ELU as in
  NumPyro's default; flowjax's default ReLU loses about 0.2 nats of ELBO on the funnel) vs
  NumPyro's ``AutoIAFNormal(num_flows=2, hidden_dims=[32])``, and vs flowjax's own loop
  ``fit_to_key_based_loss`` with ``ElboLoss`` on the same flow object.

*run s*: wall time minus JAX compile work of a repeated call, median of ``TIMING_ROUNDS``
calls interleaved between the runners, ``block_until_ready``. bc.fit is timed whole (its
checks and first-loss evaluation included; it reuses its compiled loop for an equal family,
objective and optimizer). NumPyro is timed in its steady state: the loop of ``svi.run``
(a ``lax.scan`` of ``svi.update``) compiled once and called on an initialised state, since
``svi.run`` itself traces the model and guide and rebuilds that loop on every call, a fixed
cost of about 0.1-0.2 s that is not compile work and would otherwise count as time per step
(earlier tables of this benchmark counted it, and overstated NumPyro's time per step about
twofold). *µs/step*; *ratio*: bayescore ÷ peer (target ≤ 0.7 against NumPyro).
*ELBO*, *log Z* (importance-weighted, ``log mean w``) and *k̂* (PSIS, ``arviz_stats``, the
same code for every runner) from 10⁵ draws of each fitted approximation, as mean ± sd over
12 seeds (the seed sets the fit's key and the flow's initialisation: one IAF fit's ELBO moves
by ±0.3 from seed to seed on the funnel, so one seed cannot rank the runners, and 10⁴ draws
leave about 0.01 nats of evaluation noise, the size of the differences between the normal
families); NumPyro's log weights come from its own guide and model traces. *ΔELBO*:
bayescore's mean minus the runner's with the standard error of that difference over the
seeds; bayescore's ELBO counts as *equal or better* unless ΔELBO < −2 SE. The IAF of every
seed is the first seed's flow object with that seed's initial weights, so ``bc.fit`` and
flowjax compile once (flowjax's layers hold per-instance closures).

Funnel convergence: the funnel's mean-field fits again at 3000 and 20,000 steps (same seeds
and evaluation; ``--convergence`` runs only these), beside the exact mean-field optimum in
closed form (:func:`funnel_mean_field_optimum`), so that an ELBO difference at 3000 steps can
be read as the speed of leaving the start (bayescore starts at the origin, NumPyro's
``AutoNormal`` at a uniform draw in [−2, 2]) or as the point each runner ends at.

Fast path gradient (Vaitl et al. 2024): time per gradient step of ``vi.fast_path()`` beside
``vi.reparameterisation()`` and ``vi.sticking_the_landing()`` (which pays the inverse pass)
for coupling (affine, spline), planar, IAF and MAF flows on the funnel at d = 10 and d = 50,
64 draws per step, interleaved rounds (target: fast path ≤ 1.5× reparameterisation). The IAF
samples in its parallel direction (the score needs a triangular solve with its Jacobian); the
MAF samples through its sequential inverse (the score is one VJP of its forward map).

Stochastic normalizing flows on the 2-D double well of Wu et al. 2020
(``u = a x₁ + b x₁² + c x₁⁴ + x₂²/2``, a = −0.5, b = −6, c = 1; exact profile, log Z and
the right well's mass 0.844 by quadrature). The flow: three affine coupling layers (width
64, depth 2) that alternate halves in one coordinate frame (flowjax's ``coupling_flow``
swaps the coordinates after each layer, which would put the Langevin blocks' double well on
the wrong axis every other block). The SNF: the same layers, each followed by 20 MALA steps
(h = 0.05) on the interpolated density π_λ with λ = 1/3, 2/3, 1 (Wu et al.'s
``InterpolatedEnergy``), exact path weights. Each is trained end to end (1000 steps of 128
draws, Adam 5e-3) by the ELBO (reverse KL over paths, as in Wu et al.'s KL training) and by
IWELBO(16) (8 groups of 16). The annealed MALA blocks alone (annealed importance sampling,
nothing to train) are the reference row. Free-energy profile along x₁ (40 bins on
[−2.5, 2.5], bins within 8 kT of the minimum): per bin √(bias² + std²) over 10 seeds,
unweighted and reweighted, averaged over the bins every seed reached.

``--quick``: fewer steps; ``--families IAF [--out F]``: only those families' fits. Run
``python benchmarks/vi.py [--quick]`` or ``bayescore bench vi [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
from types import SimpleNamespace
from typing import Any

import core  # benchmarks/core.py: timing helpers (this folder is on sys.path)
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from arviz_stats.base import array_stats
from flowjax.distributions import StandardNormal
from flowjax.train import fit_to_key_based_loss
from flowjax.train.losses import ElboLoss
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoIAFNormal, AutoMultivariateNormal, AutoNormal
from numpyro.infer.importance import _compute_log_weights

import bayescore as bc
from bayescore.core.prng import unrolled
from bayescore.inference import vi
from bayescore.models import flows
from bayescore.models.flows import masked_autoregressive_flow, unroll_layers

SEED = core.SEED
DRAWS = 16
EVAL_DRAWS = 100_000
EVAL_CHUNK = 10_000  # draws per evaluation call (the logistic model's logits stay small)
LEARNING_RATE = 1e-2
FLOW_LEARNING_RATE = 3e-3
QUALITY_SEEDS = 12  # fits per runner for ELBO / log Z / k̂ (seed-to-seed spread is large)
TIMING_ROUNDS = 9  # interleaved timed calls per runner after the first; the median counts


def funnel(dim: int = 10) -> None:
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim - 1]).to_event(1))


def banana() -> None:
    x0 = numpyro.sample("x0", dist.Normal(0.0, 10.0))
    numpyro.sample("x1", dist.Normal(0.03 * (x0**2 - 100.0), 1.0))


def logistic(x: Any, y: Any) -> None:
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(2000, 10)).astype(np.float32)
    logits = x @ rng.normal(size=10)
    return x, (rng.uniform(size=2000) < 1 / (1 + np.exp(-logits))).astype(np.float32)


def summary(log_w: np.ndarray) -> dict[str, float]:
    """ELBO, IW log Z and PSIS k̂ of log importance weights (same code for every runner)."""
    log_w = np.asarray(log_w, np.float64)
    log_w = log_w[np.isfinite(log_w)]
    _, khat = array_stats.psislw(-log_w)
    return {
        "elbo": float(np.mean(log_w)),
        "log_z": float(np.logaddexp.reduce(log_w) - np.log(len(log_w))),
        "khat": float(khat),
    }


@functools.cache
def _numpyro_evaluator(model: Any, guide: Any) -> Any:
    """One compiled evaluation per guide, the fitted parameters and data as arguments (a
    compiled program per fit, over the seeds and problems, exhausts the JIT's memory)."""

    def compute(keys: Any, params: Any, args: tuple) -> Any:
        return jax.vmap(lambda k: _compute_log_weights(k, params, model, guide, args, {}))(keys)

    return jax.jit(compute)


def numpyro_log_weights(model: Any, guide: Any, params: Any, args: tuple, seed: int) -> np.ndarray:
    keys = jax.random.split(jax.random.key(SEED + 7 + seed), EVAL_DRAWS)
    compute = _numpyro_evaluator(model, guide)
    return np.concatenate(
        [
            np.asarray(compute(keys[i : i + EVAL_CHUNK], params, args))
            for i in range(0, EVAL_DRAWS, EVAL_CHUNK)
        ]
    )


def approximation_log_weights(approx: Any, seed: int) -> np.ndarray:
    """``EVAL_DRAWS`` log weights of a bayescore approximation, ``EVAL_CHUNK`` per call."""
    key = jax.random.key(SEED + 7 + seed)
    return np.concatenate(
        [
            np.asarray(approx.log_weights(jax.random.fold_in(key, i), EVAL_CHUNK)[1])
            for i in range(EVAL_DRAWS // EVAL_CHUNK)
        ]
    )


def same_static(template: Any, family: Any) -> Any:
    """``family``'s arrays in ``template``'s pytree structure.

    flowjax's autoregressive layers hold per-instance closures, so a flow built for another
    seed would make ``bc.fit`` (and flowjax's loop) compile again; with the first seed's
    structure every seed reuses the compiled loop and only the initial weights differ.
    """
    leaves = [
        new if eqx.is_array(new) else old
        for old, new in zip(jax.tree.leaves(template), jax.tree.leaves(family), strict=True)
    ]  # the functions (paramax's Parameterize holds them as leaves) are the template's
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def problem_rows(
    name: str,
    model: Any,
    args: tuple,
    steps: int,
    seeds: int,
    families: list[str] | None = None,
) -> list[dict]:
    """Time every runner on the first seed; ELBO, log Z and k̂ as mean ± sd over ``seeds``
    (``families``: only these of the pairs below)."""
    target = bc.Target.from_numpyro(model, *args)
    dim = target.dim

    def iaf(seed: int) -> Any:
        return same_static(template, built_iaf(seed))

    def built_iaf(seed: int) -> Any:
        return flows.inverse_autoregressive_flow(
            jax.random.key(seed),
            base_dist=StandardNormal((dim,)),
            flow_layers=2,
            nn_width=32,
            nn_activation=jax.nn.elu,
        )

    def mean_field(seed: int) -> Any:
        return vi.mean_field(target)

    def full_rank(seed: int) -> Any:
        return vi.full_rank(target)

    template = built_iaf(SEED)
    reparameterisation, stl = vi.reparameterisation(), vi.sticking_the_landing()
    iaf_kwargs = {"num_flows": 2, "hidden_dims": [32]}
    pairs = {  # family: (family, bayescore's estimator, NumPyro's guide, its options, Adam's rate)
        "mean-field": (mean_field, reparameterisation, AutoNormal, {}, LEARNING_RATE),
        "mean-field, STL": (mean_field, stl, AutoNormal, {}, LEARNING_RATE),
        "full-rank": (full_rank, reparameterisation, AutoMultivariateNormal, {}, LEARNING_RATE),
        "full-rank, STL": (full_rank, stl, AutoMultivariateNormal, {}, LEARNING_RATE),
        "IAF": (iaf, reparameterisation, AutoIAFNormal, iaf_kwargs, FLOW_LEARNING_RATE),
    }
    if families is not None:
        pairs = {family: pair for family, pair in pairs.items() if family in families}
    peer_quality: dict[str, list] = {}  # a guide's fits recur beside each bayescore estimator
    rows = []
    for family_name, (make_family, estimator, guide_class, guide_kwargs, rate) in pairs.items():
        optimizer = optax.adam(rate)
        guide = guide_class(model, **guide_kwargs)
        svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=DRAWS))
        elbo_loss = ElboLoss(lambda x: target.logdensity(target.unravel()(x)), DRAWS)

        def ours(
            seed: int = SEED, make_family=make_family, optimizer=optimizer, estimator=estimator
        ) -> Any:
            return bc.fit(
                target,
                make_family(seed),
                estimator=estimator,
                optimizer=optimizer,
                num_steps=steps,
                num_groups=DRAWS,
                key=seed,
                progress=False,
            )

        # NumPyro's steady state: ``svi.run``'s own loop (a ``lax.scan`` of ``svi.update``)
        # compiled once; ``svi.run`` itself traces the model and guide and recompiles that
        # loop on every call, a fixed cost that would otherwise count as time per step.
        loop = jax.jit(
            lambda state, *args, svi=svi: jax.lax.scan(
                lambda carry, _: svi.update(carry, *args), state, None, length=steps
            )
        )
        start_state = svi.init(jax.random.key(SEED), *args)

        def numpyro_run(seed: int = SEED, svi=svi, loop=loop, start=start_state) -> Any:
            state = start if seed == SEED else svi.init(jax.random.key(seed), *args)
            final, losses = loop(state, *args)
            # a SimpleNamespace is not a pytree: block here, or the timing stops at dispatch
            params, losses = jax.block_until_ready((svi.get_params(final), losses))
            return SimpleNamespace(params=params, losses=losses)

        def flowjax_run(
            seed: int = SEED, make_family=make_family, optimizer=optimizer, loss=elbo_loss
        ) -> Any:
            return fit_to_key_based_loss(
                jax.random.key(seed),
                make_family(seed),
                loss_fn=loss,
                steps=steps,
                optimizer=optimizer,
                show_progress=False,
            )[0]

        def log_weights(runner: str, fitted: Any, seed: int, guide: Any = guide) -> np.ndarray:
            # a key per seed: the evaluation's own Monte Carlo error (about 0.005 nats with
            # 10⁵ draws on banana) is then part of the spread over the seeds
            if runner == "bayescore":
                return approximation_log_weights(fitted, seed)
            if runner.startswith("numpyro"):
                return numpyro_log_weights(model, guide, fitted.params, args, seed)
            flowjax_fit = vi.Approximation(fitted, target, {}, "ELBO", "flowjax")
            return approximation_log_weights(flowjax_fit, seed)

        runners = {"bayescore": ours, f"numpyro {guide_class.__name__}": numpyro_run}
        if family_name == "IAF":
            runners["flowjax fit_to_key_based_loss"] = flowjax_run
        timings = core.measure(dict(runners), TIMING_ROUNDS, f"{name} {family_name}")
        reference = timings["bayescore"][0]
        for runner, (timing, first) in timings.items():
            if runner in peer_quality:
                quality = peer_quality[runner]
            else:
                quality = [summary(log_weights(runner, first, 0))]
                quality += [
                    summary(log_weights(runner, runners[runner](SEED + extra), extra))
                    for extra in range(1, seeds)
                ]
                if runner != "bayescore":
                    peer_quality[runner] = quality
            row = {
                "problem": name,
                "family": family_name,
                "runner": runner,
                "steps": steps,
                "seeds": seeds,
                "compile_s": timing.first_compile,
                "run_s": timing.run_median,
                "us_per_step": 1e6 * timing.run_median / steps,
                "ratio": None
                if runner == "bayescore"
                else reference.run_median / timing.run_median,
            }
            for stat in ("elbo", "log_z", "khat"):
                values = np.array([q[stat] for q in quality])
                row[stat], row[f"{stat}_sd"] = float(values.mean()), float(values.std(ddof=1))
            rows.append(row)
        ours_row = next(r for r in rows[-len(runners) :] if r["runner"] == "bayescore")
        for row in rows[-len(runners) :]:
            if row is not ours_row:
                # bayescore's mean ELBO minus the runner's, with the standard error of that
                # difference over the seeds: "equal or better" unless it is below -2 SE
                row["elbo_delta"] = ours_row["elbo"] - row["elbo"]
                row["elbo_delta_se"] = float(
                    np.sqrt((ours_row["elbo_sd"] ** 2 + row["elbo_sd"] ** 2) / seeds)
                )
                row["elbo_equal_or_better"] = row["elbo_delta"] >= -2 * row["elbo_delta_se"]
    return rows


def gradient_variance(approx: Any, objective: Any, estimator: Any, keys: int = 200) -> float:
    """Trace of the covariance of ``estimator``'s gradient over ``keys`` keys, 16 draws each."""
    import equinox as eqx
    import paramax

    target = approx.target
    unravel = target.unravel()
    params, static = eqx.partition(
        approx.family, eqx.is_inexact_array, is_leaf=lambda x: isinstance(x, paramax.NonTrainable)
    )
    groups = max(2, DRAWS // objective.num_particles)

    def one(key: Any) -> Any:
        def value(params: Any) -> Any:
            q = paramax.unwrap(eqx.combine(params, static))
            log_density = lambda x: target.logdensity(unravel(x))  # noqa: E731
            return estimator.surrogate(q, log_density, objective, key, groups)[0]

        grads = jax.grad(value)(params)
        return jnp.concatenate([jnp.ravel(g) for g in jax.tree.leaves(grads)])

    estimates = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(SEED), keys))
    return float(jnp.sum(jnp.var(estimates, axis=0)))


def variance_rows(steps: int) -> list[dict[str, Any]]:
    """Gradient variance of each estimator at three points of a full-rank ELBO fit (funnel)."""
    target = bc.Target.from_numpyro(funnel)
    pairs = {
        "ELBO": (
            vi.elbo(),
            [vi.reparameterisation(), vi.sticking_the_landing(), vi.score_function()],
        ),
        "IWELBO(8)": (vi.iwelbo(8), [vi.reparameterisation(), vi.dreg(), vi.score_function()]),
    }
    rows = []
    for at in (0, steps // 10, steps):
        approx = bc.fit(
            target,
            vi.full_rank(target),
            num_steps=max(at, 1),
            num_groups=DRAWS,
            key=SEED,
            progress=False,
        )
        for objective_name, (objective, estimators) in pairs.items():
            for estimator in estimators:
                rows.append(
                    {
                        "step": at,
                        "objective": objective_name,
                        "estimator": estimator.name,
                        "variance": gradient_variance(approx, objective, estimator),
                    }
                )
    return rows


def time_estimators(family: Any, target: Any, steps: int, repeats: int, label: str) -> dict:
    """``core.measure`` of ``steps`` gradient steps of each path estimator on ``family``."""
    import equinox as eqx
    import paramax

    unravel = target.unravel()
    params, static = eqx.partition(
        family, eqx.is_inexact_array, is_leaf=lambda x: isinstance(x, paramax.NonTrainable)
    )

    def log_density(x: Any) -> Any:
        return target.logdensity(unravel(x))

    def runner(estimator: Any) -> Any:
        def loss(params: Any, key: Any) -> Any:
            q = unroll_layers(paramax.unwrap(eqx.combine(params, static)))  # as bc.fit does
            return estimator.surrogate(q, log_density, vi.elbo(), key, 64)[0]

        @jax.jit
        def many(params: Any, key: Any) -> Any:
            key = unrolled(key)  # as bc.fit's loop does

            def step(params: Any, t: Any) -> Any:
                grads = jax.grad(loss)(params, jax.random.fold_in(key, t))
                return jax.tree.map(lambda p, g: p - 1e-6 * g, params, grads), None

            return jax.lax.scan(step, params, jnp.arange(steps))[0]

        return lambda: many(params, jax.random.key(SEED))

    estimators = (vi.reparameterisation(), vi.sticking_the_landing(), vi.fast_path())
    return core.measure({e.name: runner(e) for e in estimators}, repeats, label)


def path_gradient_rows(quick: bool) -> list[dict[str, Any]]:
    """µs per gradient step of reparameterisation, STL and the fast path, per flow."""
    from flowjax.bijections import RationalQuadraticSpline

    from bayescore.models import flows

    steps, repeats = (10, 2) if quick else (50, 5)
    rows = []
    for dim in (10, 50):
        target = bc.Target.from_numpyro(funnel, dim)
        key = jax.random.key(SEED)
        base = StandardNormal((dim,))
        families = {
            "affine coupling ×8": flows.coupling_flow(key, base_dist=base, flow_layers=8),
            "spline coupling ×8": flows.coupling_flow(
                key,
                base_dist=base,
                transformer=RationalQuadraticSpline(knots=8, interval=5.0),
                flow_layers=8,
            ),
            "planar ×8": flows.planar_flow(key, base_dist=base, flow_layers=8),
            "IAF ×4": masked_autoregressive_flow(
                key, base_dist=base, invert=False, flow_layers=4, nn_width=32
            ),
            "MAF ×4": masked_autoregressive_flow(
                key, base_dist=base, invert=True, flow_layers=4, nn_width=32
            ),
        }
        for family_name, family in families.items():
            label = f"path gradient d={dim} {family_name}"
            timings = time_estimators(family, target, steps, repeats, label)
            base_us = timings["reparameterisation"][0].steady_median / steps * 1e6
            for name, (timing, _) in timings.items():
                us = timing.steady_median / steps * 1e6
                rows.append(
                    {
                        "dim": dim,
                        "family": family_name,
                        "estimator": name,
                        "compile_s": timing.first_compile,
                        "us_per_step": us,
                        "ratio": us / base_us,
                    }
                )
    return rows


def double_well(x: Any) -> Any:
    """Wu et al.'s 2-D double well, log p̃ = −(a x₁ + b x₁² + c x₁⁴) − x₂²/2."""
    return -(-0.5 * x[0] - 6.0 * x[0] ** 2 + x[0] ** 4) - 0.5 * x[1] ** 2


def snf_rows(quick: bool) -> list[dict[str, Any]]:
    """Flow alone vs SNF on the double well, each trained by the ELBO and by IWELBO(16)."""
    from flowjax.bijections import Chain, Flip

    from bayescore.models.flows import coupling_flow

    grid = np.linspace(-6.0, 6.0, 200_001)
    density = np.exp(-(-0.5 * grid - 6.0 * grid**2 + grid**4))
    log_z = float(np.log(density.sum() * (grid[1] - grid[0])) + 0.5 * np.log(2 * np.pi))
    edges = np.linspace(-2.5, 2.5, 41)
    inside = (grid[:, None] >= edges[None, :-1]) & (grid[:, None] < edges[None, 1:])
    mass = (density[:, None] * inside).sum(0)
    exact = -np.log(mass / mass.sum())
    right = float(density[grid > 0].sum() / density.sum())
    bins = exact < exact.min() + 8.0

    def profile(x1: np.ndarray, log_w: np.ndarray | None = None) -> np.ndarray:
        w = np.ones_like(x1) if log_w is None else np.exp(log_w - log_w.max())
        counts, _ = np.histogram(x1, edges, weights=w)
        with np.errstate(divide="ignore"):
            return -np.log(counts / counts.sum())

    target = bc.Target.from_logdensity(double_well, jnp.zeros(2))
    base = StandardNormal((2,))
    steps, seeds, draws = (100, 2, 20_000) if quick else (1000, 10, 100_000)
    schedule = (1 / 3, 2 / 3, 1.0)

    def layers(seed: int) -> list[Any]:
        # coupling_flow's layer is coupling-then-Flip; a Flip on the other side keeps every
        # layer's output in the input's frame, the halves alternating.
        built = [
            coupling_flow(k, base_dist=base, flow_layers=1, nn_width=64, nn_depth=2).bijection
            for k in jax.random.split(jax.random.key(seed), len(schedule))
        ]
        return [
            Chain([layer, Flip((2,))]) if i % 2 == 0 else Chain([Flip((2,)), layer])
            for i, layer in enumerate(built)
        ]

    def annealed(blocks: list[Any]) -> list[Any]:
        out = []
        for layer, lam in zip(blocks, schedule, strict=True):
            out += [layer, vi.LangevinBlock(0.05, lam=lam, num_steps=20)]
        return out

    objectives = {"ELBO": (vi.elbo(), 128), "IWELBO(16)": (vi.iwelbo(16), 8)}
    families = {
        "flow": lambda seed: vi.stochastic_flow(target, base, layers(seed)),
        "SNF": lambda seed: vi.stochastic_flow(target, base, annealed(layers(seed))),
    }
    templates = {name: make(0) for name, make in families.items()}
    evaluate = eqx.filter_jit(lambda f, k: f.log_weight(k, (draws,)))
    results: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, family: Any, seed: int, train_s: float) -> None:
        x, log_w = evaluate(family, jax.random.key(100 + seed))
        x, log_w = np.asarray(x, np.float64), np.asarray(log_w, np.float64)
        w = np.exp(log_w - log_w.max())
        results.setdefault(name, []).append(
            {
                "unweighted": profile(x[:, 0]),
                "reweighted": profile(x[:, 0], log_w),
                "log_z_error": float(np.logaddexp.reduce(log_w) - np.log(draws) - log_z),
                "elbo": float(log_w.mean()),
                "ess": float(w.sum() ** 2 / (w**2).sum() / draws),
                "right": float(np.mean(x[:, 0] > 0)),
                "train_s": train_s,
            }
        )

    for seed in range(seeds):
        for family_name, make in families.items():
            for objective_name, (objective, groups) in objectives.items():
                family = same_static(templates[family_name], make(seed))
                wall, compile_s, fitted = core.timed_call(
                    lambda family=family, objective=objective, groups=groups, seed=seed: bc.fit(
                        target,
                        family,
                        objective=objective,
                        num_steps=steps,
                        num_groups=groups,
                        learning_rate=5e-3,
                        key=seed,
                        progress=False,
                    )
                )
                record(f"{family_name}, {objective_name}", fitted.family, seed, wall - compile_s)
        reference = vi.stochastic_flow(
            target, base, [vi.LangevinBlock(0.05, lam=lam, num_steps=20) for lam in schedule]
        )
        record("annealed MALA alone", reference, seed, 0.0)
    rows = []
    for name, runs in results.items():
        row: dict[str, Any] = {"model": name, "exact_right": right, "log_z": log_z}
        for kind in ("unweighted", "reweighted"):
            profiles = np.stack([r[kind] for r in runs])[:, bins]
            reached = np.all(np.isfinite(profiles), axis=0)
            error = np.sqrt(
                np.mean(profiles[:, reached] - exact[bins][reached], 0) ** 2
                + np.std(profiles[:, reached], 0) ** 2
            )
            row[f"{kind}_error"] = float(np.mean(error)) if reached.any() else float("nan")
            row[f"{kind}_bins"] = f"{int(reached.sum())}/{int(bins.sum())}"
        for stat in ("log_z_error", "elbo", "ess", "right", "train_s"):
            values = np.array([r[stat] for r in runs])
            row[stat] = float(values.mean())
            row[f"{stat}_sd"] = float(values.std())
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], steps: int, load: Any) -> str:
    fmt = core.fmt
    lines = [
        f"ELBO fits, {steps} steps of {DRAWS} draws, Adam ({LEARNING_RATE:g}; flows "
        f"{FLOW_LEARNING_RATE:g}); {jax.default_backend()}, {os.cpu_count()} CPU cores, load "
        f"average {load[0]:.1f} before / {load[1]:.1f} after. *run*: wall minus compile work "
        f"of a repeated call, median of {TIMING_ROUNDS} interleaved calls; bc.fit timed "
        "whole, NumPyro in its steady state (``svi.run``'s ``lax.scan`` of ``svi.update`` "
        "compiled once and called on an initialised state: ``svi.run`` retraces the model "
        "and rebuilds that loop on every call, a fixed cost that earlier tables counted as "
        "time per step). *ratio*: bayescore ÷ runner (target ≤ 0.7 vs NumPyro). ELBO, "
        f"log Z and k̂ from {EVAL_DRAWS:,d} draws of each fit, mean ± sd over "
        f"{rows[0]['seeds']} seeds (the flow's initialisation and the fit's key; timing on the "
        "first); funnel and banana: log Z = 0 exactly. *ΔELBO*: bayescore's mean ELBO minus "
        "the runner's, ± the standard error of the difference over the seeds; *equal or "
        "better* unless ΔELBO < −2 SE.",
        "",
        "| problem | family | runner | compile s | run s | µs per step | ratio | ELBO | log Z "
        "| k̂ | ΔELBO ± SE | equal or better |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delta = (
            f"{r['elbo_delta']:+.3f} ± {r['elbo_delta_se']:.3f} | "
            + ("yes" if r["elbo_equal_or_better"] else "**no**")
            if "elbo_delta" in r
            else "– | –"
        )
        lines.append(
            f"| {r['problem']} | {r['family']} | {r['runner']} | {fmt(r['compile_s'], '.1f')} "
            f"| {fmt(r['run_s'], '.2f')} | {fmt(r['us_per_step'], '.0f')} "
            f"| {fmt(r['ratio'], '.2f')} | {r['elbo']:.3f} ± {r['elbo_sd']:.3f} "
            f"| {r['log_z']:.3f} ± {r['log_z_sd']:.3f} | {r['khat']:.2f} ± {r['khat_sd']:.2f} "
            f"| {delta} |"
        )
    return "\n".join(lines)


def snf_markdown(snf: list[dict[str, Any]]) -> list[str]:
    """The double-well table's lines."""
    lines = [
        "",
        "",
        "Double well (Wu et al. 2020), mean ± sd over seeds. Free-energy error in kT over "
        "the bins every seed reached (*bins*: reached / within 8 kT of the minimum); *right*: "
        "fraction of draws with x₁ > 0 (exact "
        f"{snf[0]['exact_right']:.3f}); log Z = {snf[0]['log_z']:.3f}; *ESS*: per draw; "
        "*train s*: one fit, compile excluded.",
        "",
        "| model, training objective | F error unweighted (bins) | F error reweighted (bins) "
        "| ELBO | log Z error | ESS | right | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['unweighted_error']:.2f} ({r['unweighted_bins']}) "
        f"| {r['reweighted_error']:.2f} ({r['reweighted_bins']}) "
        f"| {r['elbo']:.3g} ± {r['elbo_sd']:.3g} | {r['log_z_error']:.3f} ± "
        f"{r['log_z_error_sd']:.3f} | {r['ess']:.3f} ± {r['ess_sd']:.3f} "
        f"| {r['right']:.3f} ± {r['right_sd']:.3f} | {r['train_s']:.1f} |"
        for r in snf
    ]
    return lines


def funnel_mean_field_optimum(dim: int = 10) -> dict[str, float]:
    """The largest ELBO of a mean-field normal on the funnel, and where it is.

    In closed form for ``q = N(m, s²) × N(0, t²)^(d−1)`` (the x means are 0 at the optimum,
    by symmetry): ``E log N(v; 0, 3²) = −½ log(2π·9) − (m² + s²)/18``, each
    ``E log N(x_i; 0, e^{v/2}) = −½ log 2π − m/2 − t² e^{−m + s²/2}/2``, plus the entropies;
    maximised over ``(m, log s, log t)`` by Nelder–Mead.
    """
    from scipy.optimize import minimize

    def negative_elbo(point: np.ndarray) -> float:
        m, s, t = point[0], np.exp(point[1]), np.exp(point[2])
        prior = -0.5 * np.log(2 * np.pi * 9.0) - (m**2 + s**2) / 18.0
        likelihood = (dim - 1) * (
            -0.5 * np.log(2 * np.pi) - m / 2 - t**2 * np.exp(-m + s**2 / 2) / 2
        )
        entropy = 0.5 * np.log(2 * np.pi * np.e * s**2) + (dim - 1) * 0.5 * np.log(
            2 * np.pi * np.e * t**2
        )
        return -(prior + likelihood + entropy)

    options = {"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000}
    found = minimize(negative_elbo, np.zeros(3), method="Nelder-Mead", options=options)
    m, log_s, log_t = found.x
    return {"elbo": -float(found.fun), "v_mean": m, "v_sd": np.exp(log_s), "x_sd": np.exp(log_t)}


def convergence_rows(quick: bool) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The funnel's mean-field fits of the main table run longer, against the exact optimum.

    Same family, objective, draws, optimiser, seeds and evaluation as the main table's funnel
    mean-field rows (its 3000-step row is that row again); a longer run shows whether an ELBO
    difference there is how fast each runner leaves its start or where it ends.
    """
    steps_list = (200, 1000) if quick else (3000, 20_000)
    seeds = 2 if quick else QUALITY_SEEDS
    target = bc.Target.from_numpyro(funnel)
    guide = AutoNormal(funnel)
    optimizer = optax.adam(LEARNING_RATE)
    svi = SVI(funnel, guide, optimizer, Trace_ELBO(num_particles=DRAWS))
    rows = []
    for steps in steps_list:
        for runner in ("bayescore", "numpyro AutoNormal"):
            elbos = []
            for seed in range(seeds):
                if runner == "bayescore":
                    fitted = bc.fit(target, vi.mean_field(target), optimizer=optimizer,
                                    num_steps=steps, num_groups=DRAWS, key=SEED + seed,
                                    progress=False)  # fmt: skip
                    log_w = approximation_log_weights(fitted, seed)
                else:
                    params = svi.run(jax.random.key(SEED + seed), steps, progress_bar=False).params
                    log_w = numpyro_log_weights(funnel, guide, params, (), seed)
                elbos.append(summary(log_w)["elbo"])
            mean, sd = float(np.mean(elbos)), float(np.std(elbos, ddof=1))
            rows.append({"steps": steps, "runner": runner, "seeds": seeds, "elbo": mean,
                         "elbo_sd": sd})  # fmt: skip
    return rows, funnel_mean_field_optimum()


def convergence_markdown(rows: list[dict[str, Any]], optimum: dict[str, float]) -> list[str]:
    lines = [
        "",
        "",
        "The funnel's mean-field fits run longer: ELBO (mean ± sd over the seeds, 10⁵ draws "
        f"each) against the exact mean-field optimum, {optimum['elbo']:.4f} (v ~ "
        f"N({optimum['v_mean']:.3f}, {optimum['v_sd']:.3f}²), x_i ~ N(0, "
        f"{optimum['x_sd']:.3f}²); closed form, `funnel_mean_field_optimum`). *gap*: optimum "
        "minus the mean ELBO.",
        "",
        "| steps | runner | ELBO | gap |",
        "|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['steps']} | {r['runner']} | {r['elbo']:.4f} ± {r['elbo_sd']:.4f} "
        f"| {optimum['elbo'] - r['elbo']:.4f} |"
        for r in rows
    ]
    return lines


def problems() -> dict[str, tuple[Any, tuple]]:
    """The three targets: ``{name: (NumPyro model, its arguments)}``."""
    return {
        "funnel": (funnel, ()),
        "banana": (banana, ()),
        "logistic": (logistic, logistic_data()),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Every problem and family; returns ``{"area": "vi", "rows": [...], "markdown": "..."}``."""
    steps = 200 if quick else 3000
    seeds = 2 if quick else QUALITY_SEEDS
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    variance = variance_rows(steps)
    path = path_gradient_rows(quick)
    snf = snf_rows(quick)
    convergence, optimum = convergence_rows(quick)
    for name, (model, args) in problems().items():
        rows += problem_rows(name, model, args, steps, seeds)
    load = (load_before, os.getloadavg()[0])
    for item in rows:
        item.update(backend=jax.default_backend())
    lines = [
        "",
        "",
        f"Gradient variance (trace of the covariance over 200 keys, {DRAWS} draws per "
        "estimate) for the full-rank family on the funnel, at three points of an ELBO fit "
        "(step 0 is the initial family):",
        "",
        "| step | objective | estimator | variance |",
        "|---:|---|---|---:|",
    ]
    lines += [
        f"| {r['step']} | {r['objective']} | {r['estimator']} | {r['variance']:.3g} |"
        for r in variance
    ]
    lines += [
        "",
        "",
        "Fast path gradient: µs per gradient step (ELBO, 64 draws) on the funnel; *ratio*: ÷ "
        "reparameterisation (target ≤ 1.5 for the fast path). STL pays the inverse pass (a "
        "root-find for planar, sequential for IAF); the MAF samples through its sequential "
        "inverse, so every estimator pays it.",
        "",
        "| d | family | estimator | compile s | µs per step | ratio |",
        "|---:|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['dim']} | {r['family']} | {r['estimator']} | {r['compile_s']:.1f} "
        f"| {r['us_per_step']:.0f} | {r['ratio']:.2f} |"
        for r in path
    ]
    lines += snf_markdown(snf)
    lines += convergence_markdown(convergence, optimum)
    return {
        "area": "vi",
        "rows": rows,
        "gradient_variance": variance,
        "path_gradient": path,
        "double_well": snf,
        "funnel_convergence": {"rows": convergence, "optimum": optimum},
        "markdown": markdown(rows, steps, load) + "\n".join(lines),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument(
        "--double-well", action="store_true", help="only the stochastic normalizing flows"
    )
    parser.add_argument(
        "--convergence", action="store_true", help="only the funnel's longer mean-field fits"
    )
    parser.add_argument(
        "--families", nargs="+", help="only the fits of these families (e.g. IAF) on each problem"
    )
    parser.add_argument("--out", help="with --families: also write the rows as JSON here")
    args = parser.parse_args()
    if args.families:
        steps, seeds = (200, 2) if args.quick else (3000, QUALITY_SEEDS)
        load_before = os.getloadavg()[0]
        rows = []
        for name, (model, model_args) in problems().items():
            rows += problem_rows(name, model, model_args, steps, seeds, args.families)
        text = markdown(rows, steps, (load_before, os.getloadavg()[0]))
        print(text)
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps({"rows": rows, "markdown": text}))
        return
    if args.convergence:
        print("\n".join(convergence_markdown(*convergence_rows(args.quick))))
        return
    if args.double_well:
        print("\n".join(snf_markdown(snf_rows(args.quick))))
        return
    print(run(quick=args.quick)["markdown"])


if __name__ == "__main__":
    main()
