r"""Demo section: higher-order programs (random functions, nonparametrics, trace MH).

Three programs whose latent structure is not fixed in advance. **Random-function regression
is GP regression**: a random linear function :math:`f(x) = a x + b`, :math:`(a, b) \sim
\mathcal N(0, 3^2 I)`, fitted by trace MH to the seven points of LazyPPL's RegressionDemo,
against the closed-form posterior of the Gaussian process with :math:`k(x, x') = 9 x x' + 9`
(the same prior on functions). **Dirichlet-process mixture**: a Chinese restaurant process
seats 12 points of three well-separated clusters; each cluster's mean is integrated out
analytically and SMC (one stage per point) gives the posterior of the number of clusters.
**Change points**: a Poisson process on :math:`[0, 10]` places the change points of a
piecewise-constant Gaussian mean (levels integrated out); trace MH with
:func:`~bayescore.inference.programs.restart` around
:func:`~bayescore.inference.programs.lazy` gives the posterior mean curve and the posterior
of the number of change points.

The functions are also used by ``examples/programs_gp_regression.py``,
``examples/programs_dp_mixture.py`` and ``examples/programs_changepoint.py``.

Example:
    >>> from bayescore.demo.programs import gp_posterior
    >>> mean, sd = gp_posterior([2.5, 7.0])
    >>> [round(float(v), 4) for v in mean], [round(float(v), 4) for v in sd]
    ([3.3752, 10.4323], [0.1941, 0.4217])
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

TITLE = "Higher-order programs: random functions, a Dirichlet-process mixture, change points"

REGRESSION_X = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
REGRESSION_Y = np.array([0.6, 0.7, 1.2, 3.2, 6.8, 8.2, 8.4])
NOISE = 0.5
PRIOR_SD = 3.0


def linear_regression() -> Any:
    """``(a, b) ~ N(0, 3² I)`` (one site, ``"coefficients"``), ``y_i ~ N(a x_i + b, 0.5²)``
    at the RegressionDemo data; returns the random function ``f(x) = a x + b``.

    Example:
        >>> import jax
        >>> from bayescore.models import ho
        >>> f, log_weight, trace = ho.from_model(linear_regression).run(jax.random.key(0))
        >>> [a for a in trace if isinstance(a, str)], callable(f)
        (['coefficients'], True)
    """
    import numpyro
    import numpyro.distributions as dist

    prior = dist.Normal(0.0, PRIOR_SD).expand([2]).to_event(1)
    slope, intercept = np.asarray(numpyro.sample("coefficients", prior), dtype=float)

    def f(x: Any) -> Any:
        return slope * np.asarray(x, dtype=float) + intercept

    for i, (x, y) in enumerate(zip(REGRESSION_X, REGRESSION_Y, strict=True)):
        numpyro.sample(("y", i), dist.Normal(f(x), NOISE), obs=y)
    return f


def gp_posterior(grid: Any) -> tuple[np.ndarray, np.ndarray]:
    """The closed-form posterior mean and sd of :math:`f` on ``grid`` for the GP with
    :math:`k(x, x') = 9 x x' + 9` and noise sd 0.5 on the RegressionDemo data.

    Example:
        >>> mean, sd = gp_posterior([0.0])
        >>> mean.shape, bool(sd[0] > 0)
        ((1,), True)
    """
    grid = np.asarray(grid, dtype=float)

    def kernel(x: Any, y: Any) -> Any:
        return PRIOR_SD**2 * np.multiply.outer(x, y) + PRIOR_SD**2

    gram = kernel(REGRESSION_X, REGRESSION_X) + NOISE**2 * np.eye(len(REGRESSION_X))
    cross = kernel(grid, REGRESSION_X)
    mean = cross @ np.linalg.solve(gram, REGRESSION_Y)
    covariance = kernel(grid, grid) - cross @ np.linalg.solve(gram, cross.T)
    return mean, np.sqrt(np.maximum(np.diag(covariance), 0.0))


def regression_posterior(num_steps: int, grid: Any = None, key: int = 0) -> dict[str, Any]:
    """Trace MH on :func:`linear_regression` with a Gaussian random walk on the coefficients
    (``site_kernel``) and 2 % restarts from the prior: the posterior mean and sd of
    :math:`f` on ``grid`` (default 29 points on ``[0, 7]``) after a burn-in of a fifth of
    the steps, the chain, and the closed form of :func:`gp_posterior`.

    Example:
        >>> result = regression_posterior(20, [1.0, 2.0])
        >>> sorted(result), result["mean"].shape
        (['chain', 'exact_mean', 'exact_sd', 'grid', 'mean', 'sd'], (2,))
    """
    from bayescore.inference import programs
    from bayescore.models import ho

    grid = np.linspace(0.0, 7.0, 29) if grid is None else np.asarray(grid, dtype=float)
    walk = programs.site_kernel("coefficients", programs.random_walk(0.12))
    kernel = programs.restart(0.02, walk)
    program = ho.from_model(linear_regression)
    chain = programs.trace_mh(program, num_steps, jax.random.key(key), kernel)
    values = np.array([f(grid) for f in chain.values[num_steps // 5 :]])
    exact_mean, exact_sd = gp_posterior(grid)
    return {
        "mean": values.mean(axis=0),
        "sd": values.std(axis=0),
        "exact_mean": exact_mean,
        "exact_sd": exact_sd,
        "chain": chain,
        "grid": grid,
    }


def regression_figure(result: dict[str, Any], grid: Any) -> Any:
    """The trace-MH posterior band of :math:`f` over the GP's closed form, with the data.

    Example:
        >>> import numpy as np
        >>> grid = np.linspace(0, 7, 3)
        >>> result = {"mean": grid, "sd": grid * 0 + 1, "exact_mean": grid,
        ...           "exact_sd": grid * 0 + 1}
        >>> len(regression_figure(result, grid).axes)
        1
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for name, label, colour in (("exact_", "GP closed form", "0.3"), ("", "trace MH", "tab:blue")):
        mean, sd = result[name + "mean"], result[name + "sd"]
        axis.plot(grid, mean, color=colour, label=f"{label}: mean ± 2 sd")
        axis.fill_between(grid, mean - 2 * sd, mean + 2 * sd, color=colour, alpha=0.2)
    axis.scatter(REGRESSION_X, REGRESSION_Y, color="black", zorder=3, s=12, label="data")
    axis.set_xlabel("x")
    axis.set_ylabel("f(x)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def cluster_data(seed: int = 0, per_cluster: int = 4) -> np.ndarray:
    """Three well-separated 1-D clusters (means -4, 0, 4, sd 0.5), shuffled.

    Example:
        >>> cluster_data().shape
        (12,)
    """
    rng = np.random.default_rng(seed)
    data = np.concatenate([m + 0.5 * rng.normal(size=per_cluster) for m in (-4.0, 0.0, 4.0)])
    return rng.permutation(data)


def dp_mixture(data: Any, alpha: float = 1.0, noise: float = 0.5, prior_sd: float = 4.0) -> Any:
    """A CRP(``alpha``) mixture of ``N(μ_k, noise²)``, ``μ_k ~ N(0, prior_sd²)`` integrated
    out. The partition is drawn by customer links: customer ``i`` sits with customer ``j < i``
    with probability ``1 / (i + alpha)`` each, or at a new table with probability
    ``alpha / (i + alpha)`` (site ``("link", i)``), which seats it at a table of ``n_k``
    customers with probability ``n_k / (i + alpha)``: the CRP, with sites whose priors do
    not depend on the other sites, so a single-site move carries its followers along. Each
    point is scored by its table's predictive density given the table's earlier points.
    Returns the tables (labelled in order of opening).

    Example:
        >>> import jax
        >>> from bayescore.models import ho
        >>> tables, _, _ = ho.from_model(dp_mixture, [0.1, 0.2]).run(jax.random.key(0))
        >>> len(tables)
        2
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    sums: list[float] = []
    counts: list[int] = []
    tables: list[int] = []
    for i, y in enumerate(np.asarray(data, dtype=float)):
        weights = np.append(np.ones(i), alpha)
        link = dist.Categorical(probs=jnp.asarray(weights / weights.sum()))
        j = int(numpyro.sample(("link", i), link))
        table = tables[j] if j < i else len(counts)
        if table == len(counts):
            sums.append(0.0)
            counts.append(0)
        precision = 1.0 / prior_sd**2 + counts[table] / noise**2
        mean = sums[table] / noise**2 / precision
        scale = math.sqrt(1.0 / precision + noise**2)
        log_density = -0.5 * ((y - mean) / scale) ** 2 - math.log(scale * math.sqrt(2 * math.pi))
        numpyro.factor(("y", i), log_density)
        sums[table] += y
        counts[table] += 1
        tables.append(table)
    return tables


def cluster_posterior(num_particles: int, data: Any = None, key: int = 0) -> dict[str, Any]:
    """SMC on :func:`dp_mixture` (a particle filter over seatings, one stage per point): the
    posterior of the number of clusters, the population's ESS and its highest-weight seating.

    Example:
        >>> result = cluster_posterior(4, data=[0.1, 5.0])
        >>> sorted(result)
        ['best', 'ess', 'num_clusters']
    """
    from bayescore.inference import programs
    from bayescore.models import ho

    data = cluster_data() if data is None else data
    program = ho.from_model(dp_mixture, data)
    population = programs.smc(program, num_particles, jax.random.key(key))
    weights = population.normalized_weights()
    counts = np.array([len(set(tables)) for tables in population.values])
    return {
        "num_clusters": {int(k): float(weights[counts == k].sum()) for k in np.unique(counts)},
        "ess": population.ess(),
        "best": population.values[int(np.argmax(weights))],
    }


def cluster_figure(data: Any, result: dict[str, Any]) -> Any:
    """The data coloured by the clusters of one draw, and the posterior of their number.

    Example:
        >>> len(cluster_figure([0.1, 5.0], {"num_clusters": {2: 1.0}, "best": [0, 1]}).axes)
        2
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    tables = np.asarray(result["best"])
    left.scatter(np.asarray(data), np.zeros(len(data)), c=tables, cmap="tab10", s=30)
    left.set_yticks([])
    left.set_title("data, coloured by the highest-weight seating", fontsize=9)
    clusters = result["num_clusters"]
    right.bar(list(clusters), list(clusters.values()), color="tab:blue")
    right.set_xlabel("number of clusters")
    right.set_ylabel("posterior probability")
    figure.tight_layout()
    return figure


CHANGE_TIMES = (3.0, 7.0)
LEVELS = (0.0, 2.0, -1.0)


def changepoint_data(seed: int = 0, num: int = 40, upper: float = 10.0) -> tuple[Any, Any]:
    """``num`` equally spaced times on ``[0, upper]`` and a piecewise-constant mean (levels
    0, 2, -1, changing at 3 and 7) plus ``N(0, 0.5²)`` noise: ``(t, y)``.

    Example:
        >>> tuple(a.shape for a in changepoint_data())
        ((40,), (40,))
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, upper, num)
    level = np.asarray(LEVELS)[np.searchsorted(np.asarray(CHANGE_TIMES), t)]
    return t, level + 0.5 * rng.normal(size=num)


def changepoint_model(
    t: Any,
    y: Any,
    rate: float = 0.2,
    upper: float = 10.0,
    noise: float = 0.5,
    level_sd: float = 2.0,
) -> Any:
    """Change points from a Poisson process of ``rate`` on ``[0, upper]``; each segment's
    level ``~ N(0, level_sd²)`` integrated out (a multivariate normal marginal per segment,
    scored with ``numpyro.factor``). Returns ``(change points, curve)``, ``curve(s)`` the
    posterior mean level of the segment holding ``s`` given the change points.

    Example:
        >>> import jax
        >>> from bayescore.models import ho
        >>> (points, curve), _, _ = ho.from_model(changepoint_model, *changepoint_data()).run(
        ...     jax.random.key(0))
        >>> points.ndim, float(curve(1.0)) == float(curve(1.0))
        (1, True)
    """
    import numpyro

    from bayescore.models import ho

    points = np.asarray(ho.poisson_process("changes", rate, upper))
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    segment = np.searchsorted(points, t)
    means = np.zeros(len(points) + 1)
    log_likelihood = 0.0
    for k in range(len(points) + 1):
        block = y[segment == k]
        n = len(block)
        if n == 0:
            continue
        # y_block ~ N(0, noise² I + level_sd² 1 1ᵀ): determinant and inverse in closed form
        ratio = level_sd**2 / noise**2
        total, squares = block.sum(), (block**2).sum()
        quadratic = (squares - ratio * total**2 / (1.0 + n * ratio)) / noise**2
        log_det = n * math.log(noise**2) + math.log(1.0 + n * ratio)
        log_likelihood += -0.5 * (quadratic + log_det + n * math.log(2 * math.pi))
        means[k] = level_sd**2 * total / (noise**2 + n * level_sd**2)
    numpyro.factor("data", log_likelihood)

    def curve(s: Any) -> Any:
        return means[np.searchsorted(points, np.asarray(s, dtype=float))]

    return points, curve


def changepoint_posterior(num_steps: int, grid: Any = None, key: int = 0) -> dict[str, Any]:
    """Trace MH with ``restart(0.05, lazy(0.3))`` on :func:`changepoint_model`: the posterior
    mean curve on ``grid`` (default 101 points on ``[0, 10]``), the posterior of the number
    of change points (after a burn-in of a fifth of the steps) and the chain.

    Example:
        >>> result = changepoint_posterior(20, [1.0, 5.0])
        >>> result["mean"].shape, sorted(result)
        ((2,), ['acceptance_rate', 'chain', 'grid', 'mean', 'num_changes'])
    """
    from bayescore.inference import programs
    from bayescore.models import ho

    t, y = changepoint_data()
    kernel = programs.restart(0.05, programs.lazy(0.3))
    program = ho.from_model(changepoint_model, t, y)
    chain = programs.trace_mh(program, num_steps, jax.random.key(key), kernel)
    kept = chain.values[num_steps // 5 :]
    grid = np.linspace(0.0, 10.0, 101) if grid is None else np.asarray(grid, dtype=float)
    mean = np.mean([curve(grid) for _, curve in kept], axis=0)
    counts = np.array([len(points) for points, _ in kept])
    values, frequencies = np.unique(counts, return_counts=True)
    return {
        "mean": mean,
        "num_changes": dict(
            zip(values.tolist(), (frequencies / len(counts)).tolist(), strict=True)
        ),
        "acceptance_rate": chain.acceptance_rate,
        "chain": chain,
        "grid": grid,
    }


def changepoint_figure(result: dict[str, Any], grid: Any) -> Any:
    """The data, the true mean and the posterior mean curve.

    Example:
        >>> import numpy as np
        >>> grid = np.linspace(0, 10, 5)
        >>> len(changepoint_figure({"mean": grid * 0, "num_changes": {2: 1.0}}, grid).axes)
        2
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t, y = changepoint_data()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3), width_ratios=(2, 1))
    left.scatter(t, y, s=10, color="black", label="data")
    truth = np.asarray(LEVELS)[np.searchsorted(np.asarray(CHANGE_TIMES), grid)]
    left.plot(grid, truth, color="0.5", ls="--", label="true mean")
    left.plot(grid, result["mean"], color="tab:red", label="posterior mean")
    left.legend(fontsize=8)
    changes = result["num_changes"]
    right.bar(list(changes), list(changes.values()), color="tab:red")
    right.set_xlabel("number of change points")
    right.set_ylabel("posterior probability")
    figure.tight_layout()
    return figure


def run(section: Any, quick: bool) -> None:
    """Fill the demo section (see the module docstring)."""
    num_steps = 1500 if quick else 6000
    result = regression_posterior(1500 if quick else 6000)
    grid = result["grid"]
    error = np.max(np.abs(result["mean"] - result["exact_mean"]) / result["exact_sd"])
    ratio = result["sd"] / result["exact_sd"]
    section.text(
        f"Random linear function, {num_steps} steps of trace MH (a random walk on the "
        f"coefficients, 2 % restarts), acceptance rate {result['chain'].acceptance_rate:.2f}: "
        f"the largest error of the posterior mean of f on the grid is {error:.2f} exact sds; "
        f"the posterior sd is {ratio.min():.2f} to {ratio.max():.2f} times the GP's."
    )
    section.figure(
        regression_figure(result, grid),
        "programs_gp_regression",
        "posterior of f: trace MH on the random-function program (blue) over the closed-form "
        "GP posterior with k(x, x') = 9xx' + 9 (grey)",
    )
    data = cluster_data()
    num_particles = 100 if quick else 1000
    clusters = cluster_posterior(100 if quick else 1000)
    probabilities = ", ".join(f"P(K = {k}) = {p:.2f}" for k, p in clusters["num_clusters"].items())
    section.text(
        f"CRP(1) mixture of {len(data)} points in three clusters, cluster means integrated "
        f"out; SMC with {num_particles} particles (final ESS {clusters['ess']:.0f}): "
        f"{probabilities}."
    )
    section.figure(cluster_figure(data, clusters), "programs_dp_mixture")
    num_steps = 800 if quick else 5000
    changes = changepoint_posterior(800 if quick else 5000)
    grid = changes["grid"]
    probabilities = ", ".join(f"P(N = {k}) = {p:.2f}" for k, p in changes["num_changes"].items())
    section.text(
        f"Change points from a Poisson process (rate 0.2 on [0, 10]; truth: 3 and 7), levels "
        f"integrated out; {num_steps} steps of trace MH with restart(0.05, lazy(0.3)), "
        f"acceptance rate {changes['acceptance_rate']:.2f}: {probabilities}."
    )
    section.figure(
        changepoint_figure(changes, grid),
        "programs_changepoint",
        "left: data, true mean (dashed) and posterior mean curve; right: number of change points",
    )
