"""Functional CP on FunBaT's rank-1 synthetic set: conditional EP vs SGLD vs VI on one model.

Run: ``python examples/tucker_synthetic.py`` (add ``--quick`` for a short run).

The data are ``y = u1(x) u2(z)`` at 675 training and 675 test points (``synthetic_cp``: six
random 15 × 15 grids, the recipe of FunBaT's synthetic experiment). A rank-1 functional CP
model with Matérn-3/2 GPs is fitted three ways:

* conditional EP (``FunctionalTucker.fit``): Kalman smoothing per mode, kernel
  hyperparameters learned;
* SGLD (``bc.inference.sgld``) on ``model.numpyro_model(...)`` with minibatches of 64
  entries, the same model as a NumPyro program, with CEP's learned kernels;
* mean-field VI (``bc.fit``) on the same NumPyro program.

Prints the test RMSE and time of each; writes ``tucker_functions.png`` (each method's two
functions with ±2 sd) and ``tucker_sgld.nc`` (the SGLD run as an ArviZ DataTree). The code
is ``bayescore.demo.tucker.compare``, shared with the demo page.
"""

import argparse

import matplotlib

matplotlib.use("Agg")

from bayescore.demo.tucker import compare  # noqa: E402


def main(quick: bool) -> None:
    results, figure, tree = compare(quick)
    print(f"{'method':<16} {'test RMSE':>10} {'seconds':>8}")
    for name, (error, seconds) in results.items():
        print(f"{name:<16} {error:>10.4f} {seconds:>8.1f}")
    figure.savefig("tucker_functions.png", dpi=110)
    tree.to_netcdf("tucker_sgld.nc")
    print("wrote tucker_functions.png and tucker_sgld.nc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    main(parser.parse_args().quick)
