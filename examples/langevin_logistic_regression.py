"""Langevin samplers (MALA, MALT, underdamped BAOAB) against NUTS on a logistic regression.

Run: ``python examples/langevin_logistic_regression.py`` (add ``--quick`` for a short run).
The data are a simulated stand-in for the German credit data (1000 rows, 24 standardised
features, about 30% positives; ``bayescore.demo.langevin.credit_data``, fixed seed) and the
model is a NumPyro logistic regression with an intercept and Normal priors
(``bayescore.demo.langevin.logistic_regression``). Prints ``az.summary`` of the MALA posterior
and a comparison with NUTS, and writes ``langevin_trace.png`` and ``langevin_mala.nc``.
"""

import argparse

import arviz as az
import matplotlib

import bayescore as bc
from bayescore.demo.langevin import (
    FEATURES,
    comparison_table,
    credit_data,
    logistic_regression,
    timed_runs,
)

matplotlib.use("Agg")


def main(quick: bool) -> None:
    x, y = credit_data(seed=0)
    target = bc.Target.from_numpyro(logistic_regression, x, y=y)
    num_warmup, num_samples = (300, 300) if quick else (1000, 2000)
    samplers = {
        "MALA": bc.inference.mala(),  # one gradient per draw, Metropolis-adjusted
        "MALT": bc.inference.malt(),  # 10 OBABO steps per trajectory, Metropolis-adjusted
        "BAOAB": bc.inference.underdamped(),  # one gradient per draw, unadjusted
        "NUTS": bc.inference.nuts(),  # the reference
    }
    # Each sampler runs twice with the same key: the first call compiles the warmup and
    # sampling programs, the second reuses them and makes the same draws (timed: sampling alone).
    trees, seconds, first = timed_runs(
        samplers, target, num_warmup=num_warmup, num_samples=num_samples
    )
    for name in samplers:
        print(f"{name}: {first[name]:.1f} s with compilation, {seconds[name]:.2f} s without")

    print(f"\nMALA, 4 chains x {num_samples} draws after {num_warmup} warmup steps:")
    print(az.summary(trees["MALA"], var_names=["intercept", "beta"]))
    print("\nAgainst NUTS (differences in NUTS posterior sds; accept for BAOAB: would-be rate):")
    print(comparison_table(trees, seconds, reference="NUTS").to_string())

    az.plot_trace_dist(
        trees["MALA"],
        var_names=["intercept", "beta"],
        coords={"feature": FEATURES[:4]},
        compact=False,
        backend="matplotlib",
    ).savefig("langevin_trace.png")
    # The pointwise log likelihood (chains x draws x 1000 rows) is left out to keep the file small.
    trees["MALA"].drop_nodes("log_likelihood").to_netcdf("langevin_mala.nc", engine="h5netcdf")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
