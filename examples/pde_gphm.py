"""High-frequency and multi-scale PDEs by GP-HM: four cases of the paper, solved and plotted.

Run: ``python examples/pde_gphm.py`` (add ``--quick`` for coarse 2-D grids and few steps).

Solves, with a Gaussian spectral-mixture GP (Allen–Cahn: the Matérn-5/2 mixture;
``bayescore.models.pde.solve``, float64):

* 1-D Poisson ``u'' = f`` with ``u = sin(100x)`` on [0, 2π], 400 collocation points (and,
  unless quick, with the squared-exponential baseline);
* 2-D Poisson ``Δu = f`` with ``u = sin(100x) sin(100y)`` on [0, 2π]², 400 × 400 points;
* 2-D Allen–Cahn ``Δu + u(u² − 1) = f`` with a multi-scale solution on [0, 1]²;
* advection ``200 u_x + u_y = 0`` with ``u = sin(x − 200y)`` on [0, 1]².

Prints each case's relative L2 error on a 300-point (per dimension) test grid beside the
reference implementation's logged error, and writes ``pde_fields.png`` (solution and
pointwise-error fields; the 1-D case with its posterior 2 sd) and ``pde_errors.csv``. The
code is ``bayescore.demo.pde.compare``, shared with the demo page.
"""

import argparse

import matplotlib

matplotlib.use("Agg")

from bayescore.demo.pde import compare, table  # noqa: E402


def main(quick: bool) -> None:
    rows, figure = compare(quick)
    frame = table(rows)
    print(frame.to_string(index=False))
    frame.to_csv("pde_errors.csv", index=False)
    figure.savefig("pde_fields.png", dpi=110)
    print("wrote pde_fields.png and pde_errors.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="coarse 2-D grids, fewer steps")
    main(parser.parse_args().quick)
