"""Random-function regression equals GP regression (LazyPPL's RegressionDemo data).

Run: ``python examples/programs_gp_regression.py`` (add ``--quick`` for a short run).

A random linear function f(x) = a x + b, (a, b) ~ N(0, 3² I), observed with noise sd 0.5 at
seven points, fitted by trace MH (a Gaussian random walk on the coefficients through
``programs.site_kernel``, 2 % restarts from the prior), against the closed-form posterior of
the Gaussian process with k(x, x') = 9 x x' + 9, the same prior on functions. Prints both
posteriors of f on a grid; writes ``programs_gp_regression.png`` and
``programs_gp_regression.nc`` (the chain's coefficients and f on the grid).
"""

import argparse

from bayescore.demo.programs import regression_figure, regression_posterior
from bayescore.inference import programs


def main(quick: bool) -> None:
    result = regression_posterior(1500 if quick else 6000)
    grid = result["grid"]
    print(f"acceptance rate {result['chain'].acceptance_rate:.2f}")
    print("   x   MH mean  GP mean   MH sd   GP sd")
    for i in range(0, len(grid), 4):
        print(
            f"{grid[i]:4.1f} {result['mean'][i]:8.3f} {result['exact_mean'][i]:8.3f} "
            f"{result['sd'][i]:7.3f} {result['exact_sd'][i]:7.3f}"
        )
    regression_figure(result, grid).savefig("programs_gp_regression.png", dpi=90)
    tree = programs.to_arviz(result["chain"], evaluate={"f": grid})
    tree.to_netcdf("programs_gp_regression.nc", engine="h5netcdf")
    print("wrote programs_gp_regression.png and programs_gp_regression.nc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter chain")
    main(parser.parse_args().quick)
