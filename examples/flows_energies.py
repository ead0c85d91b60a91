"""Variational fits of Rezende & Mohamed's four test energies U1..U4 by reverse KL.

Run: ``python examples/flows_energies.py`` (add ``--quick`` for a short run).

Each energy ``p(z) ∝ exp(-U(z))`` on the plane is fitted with three flows: 32 planar layers,
32 radial layers (both on a standard normal base) and a 6-layer rational-quadratic spline
coupling flow (sampling direction cheap, ``invert=False``), 4000 steps each. Each fit minimises
E_q[log q - log p̃] with 256 draws per step and Adam on a cosine schedule.

Cut-off: U2, U3 and U4 do not decay along z1, so they are not normalisable as published; the
wall 50·max(|z1| - 4, 0)² is added to them (the box |z1| ≤ 4 that the papers plot). U1 is
used as published. log Z is computed by quadrature on [-7, 7]², so the table reports the KL
divergence KL(q‖p) = loss + log Z itself (0 for a perfect fit).

Writes ``flows_energies.png`` (exact densities, then each flow's) and
``flows_energies.csv``.
"""

import argparse

import pandas as pd

from bayescore.demo.flows import density_panels, energy_comparison


def main(quick: bool) -> None:
    steps, kinds, rows, panels = energy_comparison(quick)  # 4000 steps (300 if quick)
    table = pd.DataFrame(rows)
    print(f"{steps} steps per fit, flows: {', '.join(kinds)}")
    print(table.to_string(index=False))
    table.to_csv("flows_energies.csv", index=False)
    density_panels(panels, columns=len(kinds) + 1).savefig("flows_energies.png", dpi=110)
    print("wrote flows_energies.png and flows_energies.csv")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and flows")
    main(parser.parse_args().quick)
