"""Schrödinger–Föllmer sampling of a Bayesian logistic regression, beside NUTS.

Run: ``python examples/bridge_follmer_logistic.py`` (add ``--quick`` for a short run).

The posterior of a logistic regression (N = 200, d = 5, w ~ N(0, I)) sampled by NUTS and by
the Schrödinger–Föllmer sampler, once with the default N(0, I) reference and once with the
reference centred and scaled by a mean-field variational fit. Prints the posterior means and
sds of each and ``az.summary`` of the second; writes ``bridge_follmer_logistic.png``
(marginal densities by sampler) and ``bridge_follmer.nc``.
"""

import argparse

import arviz as az

from bayescore.demo.bridge import follmer_comparison, follmer_table


def main(quick: bool) -> None:
    trees = follmer_comparison(250 if quick else 1000)
    print(follmer_table(trees).to_string(index=False))
    best = trees["SF, reference from mean-field VI"]
    print(az.summary(best, var_names=["w"], kind="stats"))
    for name, tree in trees.items():
        if "inner_ess" in tree.sample_stats:
            ess = float(tree.sample_stats["inner_ess"].median())
            print(f"{name}: median smallest inner ESS {ess:.1f} of 100")
    plot = az.plot_dist(trees, var_names=["w"], kind="kde", backend="matplotlib")
    plot.add_legend("model")
    plot.savefig("bridge_follmer_logistic.png")
    best.to_netcdf("bridge_follmer.nc", engine="h5netcdf")
    print("wrote bridge_follmer_logistic.png and bridge_follmer.nc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws")
    main(parser.parse_args().quick)
