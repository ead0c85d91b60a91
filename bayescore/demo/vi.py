r"""Demo section: variational inference, families × objectives × estimators.

Four posteriors, each fitted by ``bc.fit`` with several (family, objective, estimator)
combinations: Neal's funnel (d = 10) and the banana (both with :math:`\log Z = 0`, so the
ELBO's gap to 0 is the KL divergence), eight schools (non-centred) and a Bayesian logistic
regression. The table reports the final ELBO, the importance-weighted :math:`\log Z` and
PSIS :math:`\hat k` from 10⁴ draws; the figure overlays draws of each family on the banana.

The models and :func:`compare` are also used by ``examples/vi_families_and_estimators.py``.

Example:
    >>> from bayescore.demo.vi import COMBINATIONS
    >>> sorted(COMBINATIONS)[:2]
    ['IAF, ELBO', 'full-rank, ELBO']
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TITLE = "Variational inference: families, objectives and gradient estimators"

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)


def funnel(dim: int = 10) -> None:
    """Neal's funnel: ``v ~ N(0, 3²)``, ``x_i ~ N(0, e^{v/2})``, ``i < dim``; log Z = 0.

    Example:
        >>> import bayescore as bc
        >>> from bayescore.demo.vi import funnel
        >>> bc.Target.from_numpyro(funnel).dim
        10
    """
    import numpyro
    import numpyro.distributions as dist

    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim - 1]).to_event(1))


def banana() -> None:
    """``x0 ~ N(0, 10²)``, ``x1 ~ N(0.03 (x0² − 100), 1)`` (inference gym); log Z = 0.

    Example:
        >>> import bayescore as bc
        >>> from bayescore.demo.vi import banana
        >>> bc.Target.from_numpyro(banana).dim
        2
    """
    import numpyro
    import numpyro.distributions as dist

    x0 = numpyro.sample("x0", dist.Normal(0.0, 10.0))
    numpyro.sample("x1", dist.Normal(0.03 * (x0**2 - 100.0), 1.0))


def eight_schools(sigma: Any, y: Any = None) -> None:
    """The non-centred eight-schools model (Rubin 1981).

    Example:
        >>> import bayescore as bc
        >>> from bayescore.demo.vi import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools
        >>> bc.Target.from_numpyro(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y).dim
        10
    """
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
        numpyro.deterministic("theta", mu + tau * theta_raw)
        numpyro.sample("obs", dist.Normal(mu + tau * theta_raw, sigma), obs=y)


def logistic_regression(x: Any, y: Any = None) -> None:
    """Bayesian logistic regression, ``w ~ N(0, I)``.

    Example:
        >>> import numpy as np, bayescore as bc
        >>> from bayescore.demo.vi import logistic_regression
        >>> bc.Target.from_numpyro(logistic_regression, np.ones((5, 3)), y=np.ones(5)).dim
        3
    """
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_data(seed: int = 0, num: int = 2000, dim: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Simulated logistic-regression data ``(x, y)``, float32.

    Example:
        >>> from bayescore.demo.vi import logistic_data
        >>> logistic_data(num=50)[0].shape
        (50, 10)
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num, dim)).astype(np.float32)
    logits = x @ rng.normal(size=dim)
    return x, (rng.uniform(size=num) < 1 / (1 + np.exp(-logits))).astype(np.float32)


def targets() -> dict[str, Any]:
    """The four demo Targets by name.

    Example:
        >>> from bayescore.demo.vi import targets
        >>> sorted(targets())
        ['banana', 'eight schools', 'funnel', 'logistic regression']
    """
    import bayescore as bc

    x, y = logistic_data()
    return {
        "funnel": bc.Target.from_numpyro(funnel),
        "banana": bc.Target.from_numpyro(banana),
        "eight schools": bc.Target.from_numpyro(
            eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y
        ),
        "logistic regression": bc.Target.from_numpyro(logistic_regression, x, y=y),
    }


def _iaf(target: Any) -> Any:
    from flowjax.distributions import StandardNormal

    from bayescore.models.flows import masked_autoregressive_flow

    return masked_autoregressive_flow(
        jax.random.key(0),
        base_dist=StandardNormal((target.dim,)),
        flow_layers=2,
        nn_width=32,
        nn_activation=jax.nn.elu,  # NumPyro's AutoIAFNormal default; fits the funnel better
        invert=False,
    )


def _combinations() -> dict[str, tuple]:
    from bayescore.inference import vi

    return {
        "mean-field, ELBO": (vi.mean_field, vi.elbo, vi.reparameterisation, 1e-2),
        "full-rank, ELBO": (vi.full_rank, vi.elbo, vi.reparameterisation, 1e-2),
        "full-rank, ELBO, STL": (vi.full_rank, vi.elbo, vi.sticking_the_landing, 1e-2),
        "full-rank, IWELBO(8), DReG": (vi.full_rank, lambda: vi.iwelbo(8), vi.dreg, 1e-2),
        "IAF, ELBO": (_iaf, vi.elbo, vi.reparameterisation, 3e-3),
    }


COMBINATIONS = list(_combinations())


def compare(target: Any, num_steps: int, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Fit ``target`` with each combination; rows of ELBO, log Z, k̂ and seconds.

    Example:
        >>> import jax.numpy as jnp, bayescore as bc
        >>> from bayescore.demo.vi import compare
        >>> target = bc.Target.from_logdensity(lambda x: -0.5 * jnp.sum(x**2), jnp.zeros(2))
        >>> rows = compare(target, 20, names=["mean-field, ELBO"])
        >>> sorted(rows[0])
        ['ELBO', 'PSIS k', 'fit', 'log Z', 'seconds']
    """
    import bayescore as bc

    rows = []
    for name, (family, objective, estimator, rate) in _combinations().items():
        if names is not None and name not in names:
            continue
        start = time.perf_counter()
        approx = bc.fit(
            target,
            family(target),
            objective=objective(),
            estimator=estimator(),
            learning_rate=rate,
            num_steps=num_steps,
            key=0,
            progress=False,
        )
        seconds = time.perf_counter() - start
        _, log_w = approx.log_weights(jax.random.key(1), 10_000)
        log_z, khat = approx.log_evidence(jax.random.key(1), 10_000)
        rows.append(
            {
                "fit": name,
                "ELBO": round(float(jnp.mean(log_w)), 3),
                "log Z": round(log_z, 3),
                "PSIS k": round(khat, 2),
                "seconds": round(seconds, 1),
            }
        )
    return rows


def banana_figure(num_steps: int) -> Any:
    """Draws of three families fitted to the banana, over its exact density.

    The example is not run as a doctest: the demo's ``vi`` section runs this function
    (``bayescore demo --quick --section vi``, in the tests) and its compiles take half a
    minute.

    Example:
        >>> from bayescore.demo.vi import banana_figure
        >>> len(banana_figure(10).axes)  # doctest: +SKIP
        3
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    import bayescore as bc
    from bayescore.inference import vi

    target = targets()["banana"]
    grid0, grid1 = np.linspace(-25, 25, 200), np.linspace(-5, 15, 200)
    log_density = (
        -0.5 * (grid0[None, :] / 10) ** 2
        - 0.5 * (grid1[:, None] - 0.03 * (grid0[None, :] ** 2 - 100)) ** 2
    )
    families = {"mean-field": vi.mean_field, "full-rank": vi.full_rank, "IAF": _iaf}
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for axis, (name, family) in zip(axes, families.items(), strict=True):
        rate = 3e-3 if name == "IAF" else 1e-2
        approx = bc.fit(
            target, family(target), learning_rate=rate, num_steps=num_steps, key=0, progress=False
        )
        draws = approx.sample(jax.random.key(1), 2000)
        axis.contourf(grid0, grid1, np.exp(log_density), levels=12, cmap="Greys")
        axis.scatter(draws["x0"], draws["x1"], s=2, alpha=0.4, color="tab:red")
        elbo = float(jnp.mean(approx.log_weights(jax.random.key(2), 5000)[1]))
        axis.set_title(f"{name}: ELBO {elbo:.2f} (log Z = 0)", fontsize=9)
        axis.set_xlabel("x0")
    axes[0].set_ylabel("x1")
    figure.tight_layout()
    return figure


def run(section: Any, quick: bool) -> None:
    """Fill the demo section (see the module docstring)."""
    import pandas as pd

    num_steps = 300 if quick else 3000
    names = ["mean-field, ELBO", "full-rank, IWELBO(8), DReG"] if quick else None
    section.text(
        f"Each posterior fitted by bc.fit with {num_steps} Adam steps of 64 draws; ELBO, "
        "importance-weighted log Z and PSIS k̂ from 10⁴ draws of the fitted family. Funnel and "
        "banana have log Z = 0, so −ELBO is the KL divergence of the fit."
    )
    for name, target in targets().items():
        section.table(pd.DataFrame(compare(target, num_steps, names)), name)
    section.figure(banana_figure(num_steps), "vi_banana", "draws of each family on the banana")


__all__ = [
    "COMBINATIONS",
    "banana",
    "banana_figure",
    "compare",
    "eight_schools",
    "funnel",
    "logistic_data",
    "logistic_regression",
    "targets",
]
