r"""Demo section: stochastic-gradient MCMC (SGLD, cyclical SGLD, SGHMC, SGLD-CV).

Two parts. (i) A 2-D mixture of Gaussians with well separated modes, sampled by SGLD at a
constant step size and by cyclical SGLD (cSGLD, Zhang et al. 2020): the large steps at the
start of each cycle carry cSGLD from mode to mode, so it covers more of them in the same
number of steps. (ii) A Bayesian logistic regression with a subsampled likelihood plate,
sampled by SGLD, SGHMC and SGLD-CV and compared with full-data NUTS.

The data generator :func:`logistic_data`, the model :func:`logistic_regression` and
:func:`comparison_table` are also used by ``examples/sgmcmc_logistic_regression.py``.

Example:
    >>> from bayescore.demo.sgmcmc import logistic_data
    >>> x, y = logistic_data(num_data=1000)
    >>> x.shape, y.dtype.name
    ((1000, 10), 'float32')
"""

from __future__ import annotations

import time
from typing import Any

import jax.numpy as jnp
import numpy as np

TITLE = "Stochastic-gradient MCMC: SGLD, cyclical SGLD, SGHMC and SGLD-CV"

MODES = np.array([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0], [0.0, 0.0]])


def logistic_data(
    seed: int = 0, num_data: int = 100_000, num_features: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated logistic-regression data: ``(x, y)``, float32, standard normal features.

    The true coefficients are ``N(0, 0.5²)`` draws and the intercept is 0.3; the same seed
    gives the same data (the first ``n`` rows do not depend on ``num_data``).

    Example:
        >>> from bayescore.demo.sgmcmc import logistic_data
        >>> x, y = logistic_data(num_data=500, num_features=3)
        >>> x.shape, y.shape
        ((500, 3), (500,))
    """
    rng = np.random.default_rng(seed)
    coefficients = rng.normal(scale=0.5, size=num_features)
    x = rng.normal(size=(num_data, num_features))
    probability = 1.0 / (1.0 + np.exp(-(0.3 + x @ coefficients)))
    y = rng.uniform(size=num_data) < probability
    return x.astype(np.float32), y.astype(np.float32)


def logistic_regression(x: Any, y: Any = None, batch_size: int | None = None) -> None:
    """Logistic regression with an intercept; ``batch_size`` subsamples the likelihood plate.

    Priors ``intercept ~ Normal(0, 5)``, ``beta ~ Normal(0, 1)`` (dim ``feature``). With
    ``batch_size`` the ``data`` plate is ``numpyro.plate("data", N, subsample_size=batch_size)``,
    which is what the SG-MCMC samplers draw their minibatches from; without it the plate is
    the full data (for NUTS).

    Example:
        >>> import bayescore as bc
        >>> from bayescore.demo.sgmcmc import logistic_data, logistic_regression
        >>> x, y = logistic_data(num_data=200)
        >>> target = bc.Target.from_numpyro(logistic_regression, x, y=y, batch_size=20)
        >>> target.dim
        11
    """
    import numpyro
    import numpyro.distributions as dist

    num_data, num_features = x.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    with numpyro.plate("feature", num_features):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", num_data, subsample_size=batch_size) as idx:
        logits = intercept + x[idx] @ beta
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=None if y is None else y[idx])


def comparison_table(
    trees: dict[str, Any],
    seconds: dict[str, float],
    reference: str = "NUTS",
    var_names: tuple[str, ...] = ("intercept", "beta"),
) -> Any:
    """One row per sampler: agreement with ``reference``, ESS, gradient passes, time.

    Columns: ``max |Δmean|/sd`` and ``max |Δsd|/sd`` (largest differences over all parameters
    of the posterior mean and sd from the reference's, in reference posterior sds),
    ``sd ratio`` (the mean over parameters of sd / reference sd: above 1 means the minibatch
    noise inflates the posterior), ``min ESS`` (smallest bulk ESS), ``passes/draw`` (mean
    ``n_steps``: minibatch gradient passes per stored draw's step; for NUTS full-data
    gradients per draw) and ``seconds``.

    Example:
        >>> from bayescore.demo.sgmcmc import comparison_table
        >>> callable(comparison_table)
        True
    """
    import pandas as pd

    from bayescore.demo.langevin import agreement

    rows = agreement(trees, reference, var_names)
    for name, tree in trees.items():
        rows[name] |= {
            "passes/draw": float(tree.sample_stats["n_steps"].mean()),
            "seconds": seconds[name],
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.round({"min ESS": 0, "passes/draw": 1, "seconds": 1}).round(3)


def settings(quick: bool) -> dict[str, Any]:
    """Data size, batch size, steps and step sizes of the logistic-regression comparison.

    The SG-MCMC step sizes scale like ``1 / N`` (the gradient is of full-data scale), and the
    batch grows with ``N`` so that the minibatch noise stays a small part of the injected
    noise.

    Example:
        >>> from bayescore.demo.sgmcmc import settings
        >>> settings(quick=True)["num_data"]
        10000
    """
    num_data, batch_size = (10_000, 100) if quick else (100_000, 1000)
    scale = 10_000 / num_data
    return dict(
        num_data=num_data,
        batch_size=batch_size,
        num_samples=1000 if quick else 2000,
        thin=10,
        nuts_draws=300 if quick else 500,
        sgld=1e-5 * scale,
        sghmc=1e-6 * scale,
        sgld_cv=1e-5 * scale,
    )


def compare_with_nuts(
    x: np.ndarray, y: np.ndarray, config: dict[str, Any], num_chains: int = 2, key: int = 0
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run SGLD, SGHMC, SGLD-CV (subsampled target) and NUTS (full data) on ``(x, y)``.

    ``config`` is :func:`settings`' dict. The SG-MCMC runs burn in for as many steps as they
    keep (``num_samples × thin`` each). Returns the DataTrees (dim ``feature`` named ``x0..``)
    and the seconds of each run (compilation included). The example is not run as a doctest:
    the demo's ``sgmcmc`` section runs this function (in the tests) and its compiles take half
    a minute.

    Example:
        >>> from bayescore.demo.sgmcmc import compare_with_nuts, logistic_data, settings
        >>> config = {**settings(True), "num_data": 400, "batch_size": 40, "num_samples": 50,
        ...           "nuts_draws": 50, "sgld": 1e-4, "sghmc": 1e-5, "sgld_cv": 1e-4}
        >>> x, y = logistic_data(num_data=400)
        >>> trees, seconds = compare_with_nuts(x, y, config)  # doctest: +SKIP
        >>> sorted(trees)  # doctest: +SKIP
        ['NUTS', 'SGHMC', 'SGLD', 'SGLD-CV']
    """
    import bayescore as bc

    sg = bc.inference.sgmcmc
    coords = {"feature": [f"x{i}" for i in range(x.shape[1])]}
    subsampled = bc.Target.from_numpyro(
        logistic_regression, x, y=y, batch_size=config["batch_size"]
    )
    full = bc.Target.from_numpyro(logistic_regression, x, y=y)
    steps = config["num_samples"] * config["thin"]
    methods = {
        "SGLD": bc.inference.sgld(config["sgld"]),
        "SGHMC": bc.inference.sghmc(config["sghmc"], friction=0.1),
        "SGLD-CV": bc.inference.sgld(
            config["sgld_cv"], estimator=sg.ControlVariates(num_steps=1000)
        ),
    }
    trees, seconds = {}, {}
    for index, (name, method) in enumerate(methods.items()):
        start = time.perf_counter()
        result = bc.sample(
            method,
            subsampled,
            num_samples=config["num_samples"],
            num_warmup=steps,
            num_chains=num_chains,
            thin=config["thin"],
            key=key + index + 1,
            progress=False,
        )
        seconds[name] = time.perf_counter() - start
        trees[name] = result.to_arviz(coords=coords)
    start = time.perf_counter()
    result = bc.sample(
        bc.inference.nuts(),
        full,
        num_samples=config["nuts_draws"],
        num_warmup=config["nuts_draws"],
        num_chains=num_chains,
        key=key,
        progress=False,
    )
    seconds["NUTS"] = time.perf_counter() - start
    trees["NUTS"] = result.to_arviz(coords=coords)
    return trees, seconds


# ------------------------------------------------------------------------ mixture of modes


def mixture_logdensity(params: dict[str, Any]) -> Any:
    """Log density of an equal-weight mixture of ``N(mode, 0.6² I)`` at the :data:`MODES`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.demo.sgmcmc import mixture_logdensity
        >>> bool(mixture_logdensity({"z": jnp.zeros(2)}) > mixture_logdensity({"z": jnp.ones(2)}))
        True
    """
    import jax

    squared = jnp.sum((params["z"] - jnp.asarray(MODES)) ** 2, axis=-1)
    return jax.scipy.special.logsumexp(-squared / (2 * 0.6**2))


def modes_visited(draws: np.ndarray) -> int:
    """How many of the :data:`MODES` have a draw within 1.5 of them.

    Example:
        >>> import numpy as np
        >>> from bayescore.demo.sgmcmc import modes_visited
        >>> modes_visited(np.array([[3.0, 3.0], [0.1, 0.0]]))
        2
    """
    distances = np.linalg.norm(draws[:, None, :] - MODES[None], axis=-1)
    return int(np.sum(np.any(distances < 1.5, axis=0)))


def _mixture(section: Any, quick: bool) -> None:
    import matplotlib.pyplot as plt
    import pandas as pd

    import bayescore as bc

    num_steps = 4000 if quick else 20000
    num_chains = 4
    target = bc.Target.from_logdensity(mixture_logdensity, {"z": jnp.full((2,), -3.0)})
    methods = {
        "SGLD (h = 0.02)": bc.inference.sgld(0.02),
        "cyclical SGLD (h0 = 0.6, 16 cycles)": bc.inference.sgld(
            bc.inference.sgmcmc.cyclical(0.6, 2 * num_steps, 16, exploration=0.1)
        ),
    }
    draws, rows = {}, {}
    for index, (name, method) in enumerate(methods.items()):
        result = bc.sample(
            method,
            target,
            num_samples=num_steps,
            num_warmup=num_steps,
            num_chains=num_chains,
            key=index,
            progress=False,
        )
        z = np.asarray(result.positions["z"])
        sampling = ~np.asarray(result.stats["exploring"])
        draws[name] = z[sampling]
        rows[name] = {
            "modes visited (all chains)": modes_visited(draws[name]),
            "modes per chain (mean)": np.mean(
                [modes_visited(z[c][sampling[c]]) for c in range(num_chains)]
            ),
        }
    section.text(
        "A two-dimensional mixture of five Gaussians (sd 0.6, modes 4.2 or more apart), "
        f"{num_chains} chains starting at the mode (-3, -3), {num_steps} burn-in steps and "
        f"{num_steps} kept steps each. The target has no minibatches, so the gradients are "
        "exact: what differs is the step size. SGLD at a constant small step size mostly stays "
        "where it started; cyclical SGLD restarts each cycle with a large step (the first "
        "tenth of each cycle explores without noise; those steps are dropped) and hops "
        "between modes."
    )
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
    for ax, (name, z) in zip(axes, draws.items(), strict=True):
        ax.scatter(z[::4, 0], z[::4, 1], s=2, alpha=0.3)
        ax.scatter(MODES[:, 0], MODES[:, 1], marker="x", color="k", label="modes")
        ax.set_title(name)
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
    axes[0].legend(loc="upper right")
    figure.tight_layout()
    section.figure(
        figure,
        "sgmcmc_mixture",
        "Sampling-phase draws of all chains (every 4th step). Crosses: the five modes.",
    )
    section.table(pd.DataFrame.from_dict(rows, orient="index"), "Modes reached (within 1.5).")


def _logistic(section: Any, quick: bool) -> None:
    import arviz as az

    config = settings(quick)
    x, y = logistic_data(num_data=config["num_data"])
    trees, seconds = compare_with_nuts(x, y, config)
    section.text(
        f"Bayesian logistic regression on {config['num_data']} simulated rows with 10 standard "
        f"normal features; the SG-MCMC samplers see minibatches of {config['batch_size']} "
        "rows through numpyro.plate(..., subsample_size=B), NUTS the full data. Step sizes: "
        f"SGLD {config['sgld']:g}, SGHMC {config['sghmc']:g} (friction 0.1), SGLD-CV "
        f"{config['sgld_cv']:g} (centred at a mode found by 1000 Adam steps). Two chains, "
        f"{config['num_samples']} draws kept every {config['thin']} steps after as many "
        "burn-in steps."
    )
    section.table(
        comparison_table(trees, seconds),
        "Each sampler against NUTS. sd ratio above 1: the posterior widened by the minibatch "
        "gradient noise, which SGLD and SGHMC do not correct; the control variates remove "
        "most of it. seconds include compilation.",
    )
    section.table(az.summary(trees["SGLD-CV"]), "az.summary of the SGLD-CV posterior.")
    tree = trees["SGLD-CV"]
    if "log_likelihood" in tree.children:
        tree = tree.drop_nodes("log_likelihood")
    section.netcdf(tree, "sgmcmc_sgld_cv_posterior")


def run(section: Any, quick: bool) -> None:
    _mixture(section, quick)
    _logistic(section, quick)


__all__ = [
    "MODES",
    "TITLE",
    "compare_with_nuts",
    "comparison_table",
    "logistic_data",
    "logistic_regression",
    "mixture_logdensity",
    "modes_visited",
    "run",
    "settings",
]
