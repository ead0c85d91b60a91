"""Demo section: eight schools (non-centred) with the reference NUTS sampler.

Shows the whole data flow: NumPyro model -> Target -> ``bc.sample`` -> ArviZ DataTree, with
the summary, LOO, a trace plot, a posterior predictive check, and the posterior as netCDF.
"""

from __future__ import annotations

import jax
import numpy as np

TITLE = "Foundation: eight schools with NUTS, inspected in ArviZ"

SCHOOL_EFFECTS = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOL_SIGMAS = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SCHOOL_NAMES = [
    "Choate",
    "Deerfield",
    "Phillips Andover",
    "Phillips Exeter",
    "Hotchkiss",
    "Lawrenceville",
    "St. Paul's",
    "Mt. Hermon",
]


def eight_schools(num_schools: int, sigma: np.ndarray, y: np.ndarray | None = None) -> None:
    """Rubin's eight schools, non-centred: theta = mu + tau * theta_tilde."""
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", num_schools):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def run(section, quick: bool) -> None:  # noqa: ANN001
    import arviz as az

    import bayescore as bc

    num = 300 if quick else 1000
    target = bc.Target.from_numpyro(
        eight_schools, len(SCHOOL_EFFECTS), SCHOOL_SIGMAS, y=SCHOOL_EFFECTS
    )
    section.text(
        f"Model: NumPyro eight schools, non-centred. Target: {target.dim} unconstrained "
        f"parameters, sites {[s.name for s in target.latent]}, plate 'school'. Sampler: "
        f"bc.inference.nuts() (BlackJAX NUTS, Stan windowed adaptation), 4 chains x {num} "
        f"draws after {num} warmup steps."
    )
    result = bc.sample(
        bc.inference.nuts(),
        target,
        num_samples=num,
        num_warmup=num,
        num_chains=4,
        key=jax.random.key(0),
        progress=False,
    )
    tree = bc.predict(eight_schools, result, key=1)
    tree = tree.map_over_datasets(
        lambda ds: ds.assign_coords(school=SCHOOL_NAMES) if "school" in ds.dims else ds
    )
    section.table(
        az.summary(tree, var_names=["mu", "tau", "theta"]),
        "az.summary: r_hat and bulk/tail ESS per site.",
    )
    loo = az.loo(tree)
    divergences = int(np.asarray(tree.sample_stats["diverging"]).sum())
    section.text(
        f"az.loo: elpd_loo = {float(loo.elpd):.2f} (SE {float(loo.se):.2f}); "
        f"divergent transitions: {divergences}; mean acceptance rate "
        f"{float(tree.sample_stats['acceptance_rate'].mean()):.3f}."
    )
    section.figure(
        az.plot_trace_dist(tree, var_names=["mu", "tau"], backend="matplotlib"),
        "eight_schools_trace",
        "Trace and marginal densities of mu and tau.",
    )
    section.figure(
        az.plot_ppc_dist(tree, backend="matplotlib", num_samples=50),
        "eight_schools_ppc",
        "Posterior predictive check of the school effects.",
    )
    section.netcdf(tree, "eight_schools_posterior")
