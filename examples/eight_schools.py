"""Eight schools (non-centred) with the reference NUTS sampler, inspected in ArviZ.

Run: ``python examples/eight_schools.py`` (add ``--quick`` for a short run). Prints the summary
and LOO, and writes ``eight_schools_trace.png`` and ``eight_schools.nc``.
"""

import argparse

import arviz as az
import jax
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist

import bayescore as bc

matplotlib.use("Agg")


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def main(quick: bool) -> None:
    sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    target = bc.Target.from_numpyro(eight_schools, sigma, y=y)
    num = 200 if quick else 1000
    result = bc.sample(
        bc.inference.nuts(),
        target,
        num_samples=num,
        num_warmup=num,
        num_chains=4,
        key=jax.random.key(0),
    )
    tree = bc.predict(eight_schools, result)
    print(az.summary(tree, var_names=["mu", "tau", "theta"]))
    print(az.loo(tree))
    az.plot_trace_dist(tree, var_names=["mu", "tau"], backend="matplotlib").savefig(
        "eight_schools_trace.png"
    )
    tree.to_netcdf("eight_schools.nc", engine="h5netcdf")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
