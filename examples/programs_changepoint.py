"""A change-point model with a random number of change points, by trace MH.

Run: ``python examples/programs_changepoint.py`` (add ``--quick`` for a short run).

40 noisy observations (sd 0.5) of a mean that is 0, then 2 from t = 3, then -1 from t = 7.
The change points are a Poisson process of rate 0.2 on [0, 10] (``ho.poisson_process``);
the segments' levels ~ N(0, 2²) are integrated out. Trace MH with
``programs.restart(0.05, programs.lazy(0.3))`` (LazyPPL's ``mhirreducible``) moves the
number and places of the change points. Prints the posterior of their number; writes
``programs_changepoint.png`` (the posterior mean curve) and ``programs_changepoint.nc``.
"""

import argparse

import numpy as np

from bayescore.demo.programs import changepoint_figure, changepoint_posterior
from bayescore.inference import programs


def main(quick: bool) -> None:
    result = changepoint_posterior(800 if quick else 5000)
    grid = result["grid"]
    print(f"acceptance rate {result['acceptance_rate']:.2f}")
    for k, probability in result["num_changes"].items():
        print(f"P(number of change points = {k}) = {probability:.3f}")
    print("posterior mean at t = 1, 5, 9:", np.round(result["mean"][[10, 50, 90]], 2))
    changepoint_figure(result, grid).savefig("programs_changepoint.png", dpi=90)
    tree = programs.to_arviz(
        result["chain"],
        derived={"num_changes": lambda value: len(value[0]), "mean": lambda value: value[1](grid)},
    )
    tree.to_netcdf("programs_changepoint.nc", engine="h5netcdf")
    print("wrote programs_changepoint.png and programs_changepoint.nc")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter chain")
    main(parser.parse_args().quick)
