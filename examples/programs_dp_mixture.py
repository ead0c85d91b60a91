"""Dirichlet-process (CRP) mixture clustering of a small 1-D data set, by SMC.

Run: ``python examples/programs_dp_mixture.py`` (add ``--quick`` for a short run).

12 points in three well-separated clusters (means -4, 0, 4, sd 0.5); a CRP(1) mixture of
normals with known sd 0.5 and cluster means ~ N(0, 4²) integrated out, the partition drawn
by customer links (see ``bayescore.demo.programs.dp_mixture``). SMC (one stage per point)
gives the posterior of the number of clusters. Writes ``programs_dp_mixture.png``.
"""

import argparse

from bayescore.demo.programs import cluster_data, cluster_figure, cluster_posterior


def main(quick: bool) -> None:
    data = cluster_data()
    result = cluster_posterior(100 if quick else 1000)
    print(f"final ESS {result['ess']:.1f}")
    for k, probability in result["num_clusters"].items():
        print(f"P(number of clusters = {k}) = {probability:.3f}")
    print("highest-weight seating:", result["best"])
    cluster_figure(data, result).savefig("programs_dp_mixture.png", dpi=90)
    print("wrote programs_dp_mixture.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer particles")
    main(parser.parse_args().quick)
