"""Variational inference on four posteriors, comparing families, objectives and estimators.

Run: ``python examples/vi_families_and_estimators.py`` (add ``--quick`` for a short run).

Neal's funnel (d = 10), the banana, eight schools (non-centred) and a Bayesian logistic
regression (N = 2000, d = 10) are each fitted by ``bc.fit`` with: mean-field and full-rank
normals on the ELBO (reparameterisation gradient), the full-rank normal with sticking the
landing, the full-rank normal on the IWELBO(8) with DReG, and an inverse autoregressive flow.
Prints one table per posterior (ELBO, importance-weighted log Z, PSIS k̂: above 0.7 the
importance weights are unreliable) and ``az.summary`` of the eight-schools fit; writes
``vi_comparison.csv``, ``vi_eight_schools.nc`` and ``vi_banana.png``.
"""

import argparse

import arviz as az
import jax
import pandas as pd

import bayescore as bc
from bayescore.demo.vi import banana_figure, compare, targets
from bayescore.inference import vi


def main(quick: bool) -> None:
    num_steps = 300 if quick else 3000
    names = ["mean-field, ELBO", "full-rank, IWELBO(8), DReG"] if quick else None
    tables = []
    for name, target in targets().items():
        table = pd.DataFrame(compare(target, num_steps, names)).assign(posterior=name)
        body = table.drop(columns="posterior").to_string(index=False)
        print(f"\n{name} ({target.dim} parameters)\n{body}")
        tables.append(table)
    pd.concat(tables).to_csv("vi_comparison.csv", index=False)

    schools = targets()["eight schools"]
    approx = bc.fit(schools, vi.full_rank(schools), num_steps=num_steps, key=0, progress=False)
    tree = approx.to_arviz(2000, key=jax.random.key(1))
    print("\neight schools, full-rank ELBO fit:")
    print(az.summary(tree, var_names=["mu", "tau", "theta"], kind="stats"))
    tree.to_netcdf("vi_eight_schools.nc")
    banana_figure(num_steps).savefig("vi_banana.png", dpi=110)
    print("wrote vi_comparison.csv, vi_eight_schools.nc and vi_banana.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and fits")
    main(parser.parse_args().quick)
