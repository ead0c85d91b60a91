"""SGLD, SGHMC and SGLD-CV against full-data NUTS on a large logistic regression.

Run: ``python examples/sgmcmc_logistic_regression.py`` (add ``--quick`` for a short run).
The data are simulated with a fixed seed (``bayescore.demo.sgmcmc.logistic_data``): 10^5 rows
(10^4 with ``--quick``) of 10 standard normal features, plus 20% more rows held out. The
model (``bayescore.demo.sgmcmc.logistic_regression``) subsamples its likelihood plate,
``numpyro.plate("data", N, subsample_size=B)``, which is where the SG-MCMC samplers take their
minibatches; NUTS runs on the same model without subsampling. Prints ``az.summary`` of the
SGLD-CV posterior, held-out accuracy of each posterior's predictive mean and a comparison with
NUTS; writes ``sgmcmc_trace.png`` and ``sgmcmc_sgld_cv.nc``.
"""

import argparse

import arviz as az
import matplotlib
import numpy as np

from bayescore.demo.sgmcmc import compare_with_nuts, comparison_table, logistic_data, settings

matplotlib.use("Agg")


def held_out_accuracy(tree, x, y) -> float:
    """Accuracy of the posterior-mean predicted probability, thresholded at 1/2."""
    posterior = tree.posterior
    intercept = np.asarray(posterior["intercept"]).reshape(-1)
    beta = np.asarray(posterior["beta"]).reshape(-1, x.shape[1])
    probability = np.mean(1.0 / (1.0 + np.exp(-(intercept[:, None] + beta @ x.T))), axis=0)
    return float(np.mean((probability > 0.5) == (y > 0.5)))


def main(quick: bool) -> None:
    config = settings(quick)
    num_data = config["num_data"]
    x_all, y_all = logistic_data(seed=0, num_data=num_data + num_data // 5)
    x, y, x_test, y_test = x_all[:num_data], y_all[:num_data], x_all[num_data:], y_all[num_data:]
    print(f"{num_data} training rows, minibatches of {config['batch_size']}")
    trees, seconds = compare_with_nuts(x, y, config)

    print("\nSGLD-CV posterior:")
    print(az.summary(trees["SGLD-CV"], var_names=["intercept", "beta"]))
    print("\nHeld-out accuracy of the posterior predictive mean:")
    for name, tree in trees.items():
        print(f"  {name:8s} {held_out_accuracy(tree, x_test, y_test):.4f}")
    print("\nAgainst NUTS (differences in NUTS posterior sds; seconds include compilation):")
    print(comparison_table(trees, seconds).to_string())

    az.plot_trace_dist(
        trees["SGLD-CV"],
        var_names=["intercept", "beta"],
        coords={"feature": ["x0", "x1", "x2"]},
        compact=False,
        backend="matplotlib",
    ).savefig("sgmcmc_trace.png")
    tree = trees["SGLD-CV"]
    if "log_likelihood" in tree.children:  # chains x draws x N values: left out
        tree = tree.drop_nodes("log_likelihood")
    tree.to_netcdf("sgmcmc_sgld_cv.nc", engine="h5netcdf")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
