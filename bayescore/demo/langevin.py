r"""Demo section: the Langevin family (MALA, MALT, underdamped BAOAB/OBABO, ULA).

Two parts. (i) A German-credit-like Bayesian logistic regression (1000 rows, 24 standardised
features, about 30% positives, simulated here with a fixed seed) sampled by MALA, MALT, BAOAB
and the reference NUTS, compared in a table and a forest plot. (ii) The discretisation bias of
the unadjusted samplers on :math:`N(0, 1)`, measured against the exact formulas: ULA's
stationary variance :math:`s^2 / (1 - h / (2 s^2))` (MALA: unbiased at the same step sizes),
BAOAB's exact position variance :math:`s^2` and OBABO's :math:`s^2 / (1 - h^2 / (4 s^2))`.

The data generator :func:`credit_data`, the model :func:`logistic_regression` and
:func:`comparison_table` are also used by ``examples/langevin_logistic_regression.py``.

Example:
    >>> from bayescore.demo.langevin import credit_data
    >>> x, y = credit_data()
    >>> x.shape, round(float(y.mean()), 1)
    ((1000, 24), 0.3)
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TITLE = "Langevin samplers: MALA, MALT, underdamped BAOAB/OBABO and ULA"

NUM_FEATURES = 24
FEATURES = [f"x{i:02d}" for i in range(1, NUM_FEATURES + 1)]


def credit_data(
    seed: int = 0,
    num_data: int = 1000,
    num_features: int = NUM_FEATURES,
    positive_rate: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """A simulated stand-in for the German credit data: ``(x, y)``, float32.

    ``x`` has ``num_data`` rows of ``num_features`` standardised features (mean 0, sd 1),
    moderately correlated through four shared latent factors, as columns of real credit data
    are; ``y`` is 0/1 from a logistic model with sparse true coefficients and an intercept set
    so that a fraction ``positive_rate`` of the rows is positive on average. The same seed
    gives the same data.

    Example:
        >>> from bayescore.demo.langevin import credit_data
        >>> x, y = credit_data(num_data=200, num_features=5)
        >>> x.shape, y.shape, x.dtype.name
        ((200, 5), (200,), 'float32')
    """
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(num_data, 4))
    loadings = rng.normal(scale=0.5, size=(4, num_features))
    x = factors @ loadings + rng.normal(size=(num_data, num_features))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    coefficients = rng.normal(scale=0.4, size=num_features)
    coefficients *= rng.uniform(size=num_features) < 0.6
    logits = x @ coefficients
    low, high = -10.0, 10.0  # bisect for the intercept that gives the positive rate
    for _ in range(60):
        intercept = 0.5 * (low + high)
        rate = np.mean(1.0 / (1.0 + np.exp(-(intercept + logits))))
        low, high = (low, intercept) if rate > positive_rate else (intercept, high)
    probability = 1.0 / (1.0 + np.exp(-(intercept + logits)))
    y = rng.uniform(size=num_data) < probability
    return x.astype(np.float32), y.astype(np.float32)


def logistic_regression(x: Any, y: Any = None) -> None:
    """Bayesian logistic regression: ``y ~ Bernoulli(logit = intercept + x @ beta)``.

    Priors ``intercept ~ Normal(0, 5)`` and ``beta ~ Normal(0, 1)`` (the features are
    standardised). The plates name the ArviZ dims: ``beta`` has dim ``feature``, the
    observations and their log likelihood dim ``data``.
    """
    import numpyro
    import numpyro.distributions as dist

    num_data, num_features = x.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    with numpyro.plate("feature", num_features):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", num_data):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + x @ beta), obs=y)


def agreement(
    trees: dict[str, Any], reference: str, var_names: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per sampler: how its posterior compares with ``reference``'s, and its smallest ESS.

    Keys: ``max |Δmean|/sd`` and ``max |Δsd|/sd`` (largest differences over all parameters of
    the posterior mean and sd from the reference's, in reference posterior sds; Monte Carlo
    noise alone gives differences of order :math:`1/\\sqrt{\\text{min ESS}}`), ``sd ratio``
    (mean over parameters of sd / reference sd) and ``min ESS`` (smallest bulk ESS).

    Example:
        >>> import numpy as np, xarray as xr
        >>> from bayescore.demo.langevin import agreement
        >>> draws = np.random.default_rng(0).normal(size=(2, 200))
        >>> tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        ...     {"a": (("chain", "draw"), draws)})})
        >>> agreement({"A": tree, "B": tree}, "A", ("a",))["B"]["max |Δmean|/sd"]
        0.0
    """
    import arviz as az

    def moments(tree: Any) -> tuple[np.ndarray, np.ndarray]:
        posterior = tree.posterior
        means = [np.ravel(posterior[v].mean(("chain", "draw"))) for v in var_names]
        sds = [np.ravel(posterior[v].std(("chain", "draw"))) for v in var_names]
        return np.concatenate(means), np.concatenate(sds)

    ref_mean, ref_sd = moments(trees[reference])
    rows = {}
    for name, tree in trees.items():
        mean, sd = moments(tree)
        ess = az.ess(tree, var_names=list(var_names))
        rows[name] = {
            "max |Δmean|/sd": float(np.max(np.abs(mean - ref_mean) / ref_sd)),
            "max |Δsd|/sd": float(np.max(np.abs(sd - ref_sd) / ref_sd)),
            "sd ratio": float(np.mean(sd / ref_sd)),
            "min ESS": min(float(ess[v].min()) for v in var_names),
        }
    return rows


def comparison_table(
    trees: dict[str, Any],
    seconds: dict[str, float],
    reference: str = "NUTS",
    var_names: tuple[str, ...] = ("intercept", "beta"),
) -> Any:
    """One row per sampler: agreement with ``reference``, ESS, ESS/s, acceptance, step size.

    ``trees`` maps a sampler's name to its DataTree, ``seconds`` to the run time its ESS/s
    divides by. Columns:

    - the columns of :func:`agreement` (differences from the reference, sd ratio, min ESS),
      and ``ESS/s``;
    - ``grads/draw``: gradient evaluations per draw (``n_steps``);
    - ``accept``: mean ``acceptance_rate`` (for an unadjusted sampler the rate a
      Metropolis-Hastings test *would* have had) and ``step size``: mean over chains.

    Example:
        >>> from bayescore.demo.langevin import comparison_table
        >>> callable(comparison_table)
        True
    """
    import pandas as pd

    rows = agreement(trees, reference, var_names)
    for name, tree in trees.items():
        stats = tree.sample_stats
        rows[name] |= {
            "ESS/s": rows[name]["min ESS"] / seconds[name],
            "grads/draw": float(stats["n_steps"].mean()),
            "accept": float(stats["acceptance_rate"].mean()),
            "step size": float(stats["step_size"].mean()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.round({"min ESS": 0, "ESS/s": 0, "grads/draw": 1}).round(3)


def timed_runs(
    samplers: dict[str, Any],
    target: Any,
    *,
    num_warmup: int,
    num_samples: int,
    seed: int = 0,
    num_chains: int = 4,
) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """Run each sampler twice with the same key; time the second run (no compilation).

    The first ``bc.sample`` call compiles the warmup and sampling programs; the second reuses
    them and, with the same key, makes the same draws, so its time is sampling alone. Sampler
    ``i`` (in ``samplers``' order) uses key ``seed + i``. Returns the DataTrees (dim
    ``feature`` named by :data:`FEATURES` when the target has ``beta``), the seconds of the
    timed runs, and those of the first (compiling) runs.

    Example:
        >>> import jax.numpy as jnp
        >>> import bayescore as bc
        >>> from bayescore.demo.langevin import timed_runs
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] ** 2, {"x": jnp.zeros(())})
        >>> trees, seconds, first = timed_runs({"MALA": bc.inference.mala()}, target,
        ...                                    num_warmup=100, num_samples=100)
        >>> list(trees), seconds["MALA"] < first["MALA"]
        (['MALA'], True)
    """
    import bayescore as bc

    coords = {"feature": FEATURES} if any(s.name == "beta" for s in target.latent) else None
    trees, seconds, first = {}, {}, {}
    for index, (name, method) in enumerate(samplers.items()):
        settings = dict(
            num_samples=num_samples,
            num_warmup=num_warmup,
            num_chains=num_chains,
            key=jax.random.key(seed + index),
            progress=False,
        )
        start = time.perf_counter()
        bc.sample(method, target, **settings)
        first[name] = time.perf_counter() - start
        start = time.perf_counter()
        result = bc.sample(method, target, **settings)
        seconds[name] = time.perf_counter() - start
        trees[name] = result.to_arviz(coords=coords)
    return trees, seconds, first


# --------------------------------------------------------------------- bias on a Gaussian


def stationary_moments(
    methods: dict[str, Any],
    step_sizes: np.ndarray,
    *,
    num_chains: int,
    num_steps: int,
    key: Any,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run each method's kernel at fixed step sizes on ``N(0, 1)``; estimate ``Var x``.

    The tuned kernel is built through the Method protocol, ``method.kernel(target,
    method.prepare(h, identity))`` (no warmup, no adaptation), and vmapped over step sizes and
    chains; every method and step size runs in one compiled program. Chains start at draws of
    ``N(0, 1)`` and drop their first fifth. Returns, per method and step size, the estimate of
    ``Var x = E x²`` (the mean is 0 by symmetry), its standard error across the independent
    chains, and the mean acceptance rate (for an unadjusted method the would-be rate).

    Example:
        >>> import jax, numpy as np
        >>> import bayescore as bc
        >>> from bayescore.demo.langevin import stationary_moments
        >>> out = stationary_moments({"ULA": bc.inference.ula()}, np.array([1.0]),
        ...                          num_chains=64, num_steps=500, key=jax.random.key(0))
        >>> variance, se, rate = out["ULA"]
        >>> bool(abs(variance[0] - 2.0) < 5 * se[0])  # ULA at h = 1: Var x = 1/(1 - 1/2)
        True
    """
    import bayescore as bc

    target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] ** 2, {"x": jnp.zeros(())})
    burn_in = num_steps // 5

    def chain(method: Any, step_size: Any, key: Any) -> tuple[Any, Any]:
        kernel = method.kernel(target, method.prepare(step_size, jnp.ones(1)))
        start_key, init_key, run_key = jax.random.split(key, 3)
        state = kernel.init({"x": jax.random.normal(start_key)}, init_key)

        def body(state: Any, step_key: Any) -> tuple[Any, tuple[Any, Any]]:
            state, info = kernel.step(step_key, state)
            return state, (state.position["x"], info.acceptance_rate)

        _, (xs, rates) = jax.lax.scan(body, state, jax.random.split(run_key, num_steps))
        return jnp.mean(xs[burn_in:] ** 2), jnp.mean(rates[burn_in:])

    @jax.jit
    def run(step_sizes: Any, key: Any) -> dict[str, tuple[Any, Any]]:
        keys = jax.random.split(key, (len(methods), len(step_sizes), num_chains))
        return {
            name: jax.vmap(jax.vmap(partial(chain, method), (None, 0)), (0, 0))(
                step_sizes, keys[index]
            )
            for index, (name, method) in enumerate(methods.items())
        }

    out = {}
    for name, (second_moments, rates) in run(jnp.asarray(step_sizes), key).items():
        second_moments, rates = np.asarray(second_moments), np.asarray(rates)
        out[name] = (
            second_moments.mean(axis=1),
            second_moments.std(axis=1, ddof=1) / np.sqrt(num_chains),
            rates.mean(axis=1),
        )
    return out


def _bias_experiment(section: Any, quick: bool) -> None:
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    import bayescore as bc

    num_chains, num_steps = (128, 2000) if quick else (512, 10000)
    step_sizes = np.array([0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    runs = {
        "ULA": bc.inference.ula(),
        "MALA": bc.inference.mala(),
        "BAOAB": bc.inference.underdamped(splitting="baoab", friction=1.0),
        "OBABO": bc.inference.underdamped(splitting="obabo", friction=1.0),
    }
    measured = stationary_moments(
        runs, step_sizes, num_chains=num_chains, num_steps=num_steps, key=jax.random.key(0)
    )
    section.text(
        "The unadjusted samplers are biased, by an amount set by the step size. On the "
        "one-dimensional N(0, 1) the stationary laws are known exactly, so the bias can be "
        f"measured: each sampler ran {num_chains} chains of {num_steps} steps at each fixed step "
        "size h (no adaptation, identity mass matrix; the whole grid is one vmapped program "
        "built from the method's kernel), and the variance of x is compared with the formulas. "
        "ULA, the Euler-Maruyama step of the overdamped diffusion, has Var x = 1/(1 - h/2), "
        "and MALA, the same proposal with a Metropolis-Hastings test, is exact at every h. "
        "The kinetic splittings behave in opposite ways: BAOAB samples x exactly on a "
        "Gaussian at any stable h, OBABO has Var x = 1/(1 - h²/4)."
    )
    grid = np.linspace(0.0, 1.85, 200)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    (ax_over, ax_kin), (acc_over, acc_kin) = axes
    exact = {
        "ULA": (lambda h: 1.0 / (1.0 - h / 2.0), "ULA exact: 1/(1 - h/2)"),
        "OBABO": (lambda h: 1.0 / (1.0 - h**2 / 4.0), "OBABO exact: 1/(1 - h²/4)"),
    }
    colors = {"ULA": "C3", "MALA": "C0", "BAOAB": "C2", "OBABO": "C1"}
    for ax, acc_ax, names in (
        (ax_over, acc_over, ("ULA", "MALA")),
        (ax_kin, acc_kin, ("OBABO", "BAOAB")),
    ):
        ax.axhline(1.0, color="k", lw=1, ls=":", label="target: Var x = 1")
        for name in names:
            mean, se, rate = measured[name]
            if name in exact:
                formula, label = exact[name]
                ax.plot(grid, formula(grid), color=colors[name], lw=1.5, label=label)
            ax.errorbar(
                step_sizes,
                mean,
                yerr=2 * se,
                fmt="o",
                ms=5,
                capsize=3,
                color=colors[name],
                mfc="white" if name in exact else colors[name],
                label=f"{name} measured (± 2 SE)",
            )
            acc_ax.plot(step_sizes, rate, "o-", color=colors[name], label=name)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator([0.8, 1, 1.5, 2, 3, 5, 10]))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("Var x (log scale)")
        ax.legend(fontsize=8, loc="upper left")
        acc_ax.axhline(
            0.9, color="gray", lw=1, ls="--", label="unadjusted samplers' default target"
        )
        acc_ax.set_xlabel("step size h")
        acc_ax.set_ylim(0.0, 1.02)
        acc_ax.legend(fontsize=8, loc="lower left")
    ax_over.set_title("Overdamped: ULA vs MALA on N(0, 1)")
    ax_kin.set_title("Underdamped (friction 1): BAOAB vs OBABO on N(0, 1)")
    acc_over.set_ylabel("acceptance rate\n(ULA: would-be rate)")
    acc_kin.set_ylabel("would-be acceptance rate")
    figure.tight_layout()
    section.figure(
        figure,
        "langevin_step_size_bias",
        "Top: variance of x against the step size; lines are the exact formulas, points the "
        "measurements (error bars: 2 standard errors across chains). Bottom: MALA's acceptance "
        "rate and the rate a Metropolis-Hastings test would have given the unadjusted moves "
        "(min(1, e^-W), W the energy error), the diagnostic the unadjusted samplers adapt "
        "their step size to (default target 0.9).",
    )
    table = pd.DataFrame(
        {
            "h": step_sizes,
            "ULA Var x": measured["ULA"][0],
            "1/(1-h/2)": 1.0 / (1.0 - step_sizes / 2.0),
            "ULA would-be accept": measured["ULA"][2],
            "MALA Var x": measured["MALA"][0],
            "MALA accept": measured["MALA"][2],
            "BAOAB Var x": measured["BAOAB"][0],
            "OBABO Var x": measured["OBABO"][0],
            "1/(1-h²/4)": 1.0 / (1.0 - step_sizes**2 / 4.0),
            "BAOAB would-be": measured["BAOAB"][2],
            "OBABO would-be": measured["OBABO"][2],
        }
    ).set_index("h")
    section.table(table.round(3), "The numbers behind the figure (exact value: Var x = 1).")


# ------------------------------------------------------------------- logistic regression


def _logistic_regression(section: Any, quick: bool) -> None:
    import arviz as az

    import bayescore as bc

    num_warmup, num_samples = (300, 300) if quick else (1000, 2000)
    x, y = credit_data()
    target = bc.Target.from_numpyro(logistic_regression, x, y=y)
    samplers = {
        "MALA": bc.inference.mala(),
        "MALT": bc.inference.malt(),
        "BAOAB": bc.inference.underdamped(),
        "NUTS": bc.inference.nuts(),
    }
    section.text(
        f"Model: Bayesian logistic regression on simulated German-credit-like data ({len(y)} "
        f"rows, {x.shape[1]} standardised, moderately correlated features, {y.mean():.0%} "
        "positives), with an intercept and Normal priors; "
        f"{target.dim} unconstrained parameters. Samplers, all with their defaults (diagonal "
        "mass matrix and step size adapted in Stan's windows): bc.inference.mala() (one "
        "gradient per draw, target acceptance 0.574), bc.inference.malt() (10 OBABO steps per "
        "trajectory, Metropolis-adjusted, target 0.65), bc.inference.underdamped() (BAOAB, "
        "unadjusted, one gradient per draw, step size tuned to a would-be acceptance of 0.9) "
        f"and the reference bc.inference.nuts(); 4 chains x {num_samples} draws after "
        f"{num_warmup} warmup steps each."
    )
    trees, seconds, _ = timed_runs(
        samplers, target, num_warmup=num_warmup, num_samples=num_samples, seed=10
    )
    section.table(
        comparison_table(trees, seconds),
        "Each sampler against NUTS. max |Δmean|/sd and max |Δsd|/sd: the largest difference "
        "over the 25 parameters of the posterior mean and sd from NUTS's, in NUTS posterior "
        "sds (Monte Carlo noise alone is of order 1/sqrt(min ESS)). min ESS: the smallest bulk "
        "ESS; ESS/s divides it by the run time of warmup plus draws (compilation excluded: "
        "each run is timed on a second call). accept: mean acceptance rate; for BAOAB the rate "
        "a Metropolis-Hastings test would have had.",
    )
    section.text(
        "Reading the table: MALA needs one gradient per draw but moves diffusively, so with "
        "correlated coefficients and a diagonal mass matrix its draws are strongly "
        "autocorrelated; MALT and NUTS make long, nearly deterministic moves and reach many "
        "times the ESS per draw. BAOAB is cheap and unadjusted: its error is controlled by "
        "the step size, which it adapts to the would-be acceptance rate."
    )
    forest = az.plot_forest(
        trees,
        var_names=["intercept", "beta"],
        combined=True,
        backend="matplotlib",
        figure_kwargs={"figsize": (8, 11)},
    )
    forest.add_legend("model", title="sampler")
    section.figure(
        forest,
        "langevin_logistic_forest",
        "Forest plot: posterior mean, 50% and 89% equal-tailed intervals of the intercept and "
        "the 24 coefficients, one colour per sampler (chains combined).",
    )
    section.table(
        az.summary(trees["MALA"], var_names=["intercept", "beta"]),
        "az.summary of the MALA posterior.",
    )
    mala = trees["MALA"].drop_nodes("log_likelihood")
    section.netcdf(mala, "langevin_mala_posterior")


def run(section: Any, quick: bool) -> None:
    _logistic_regression(section, quick)
    _bias_experiment(section, quick)


__all__ = [
    "FEATURES",
    "TITLE",
    "comparison_table",
    "credit_data",
    "logistic_regression",
    "agreement",
    "run",
    "stationary_moments",
    "timed_runs",
]
