"""A Bayesian MLP on the scikit-learn digits, sampled by SGLD and by S-SGMCMC.

Run: ``python examples/sgmcmc_digits_mlp.py`` (add ``--quick`` for a short run). The 1797
8x8 digit images (bundled with scikit-learn) are standardised and split 80/20 with a fixed
seed. The model is a one-hidden-layer network, 64 -> 50 (tanh) -> 10, with Normal(0, 1)
priors on every weight and bias, written in NumPyro with a subsampled plate over the training
rows. It is sampled with SGLD and with structured SGLD (S-SGMCMC: the gradient of each layer
averaged over past values of the other layer, ``Structured(groups=[["w1", "b1"], ["w2",
"b2"]])``). Prints the test accuracy of the Bayesian model average (the predictive probability
averaged over draws), its expected calibration error (10 bins) and ``az.summary`` of a few
parameters; writes ``sgmcmc_digits_sgld.nc``.
"""

import argparse
import time

import arviz as az
import numpy as np

import bayescore as bc
from bayescore.demo.digits import digits_data, mlp, predictive
from bayescore.metrics import expected_calibration_error


def main(quick: bool) -> None:
    x_train, x_test, y_train, y_test = digits_data()
    target = bc.Target.from_numpyro(mlp, x_train, y=y_train, batch_size=100)
    print(f"{len(y_train)} training and {len(y_test)} test images, {target.dim} parameters")

    num_samples, thin = (200, 10) if quick else (1000, 10)
    step_size = 1e-4
    methods = {
        "SGLD": bc.inference.sgld(step_size),
        "S-SGMCMC (SGLD)": bc.inference.sgld(
            step_size,
            estimator=bc.inference.sgmcmc.Structured(
                groups=[["w1", "b1"], ["w2", "b2"]], buffer_size=200, thinning=10
            ),
        ),
    }
    trees = {}
    for index, (name, method) in enumerate(methods.items()):
        start = time.perf_counter()
        result = bc.sample(
            method,
            target,
            num_samples=num_samples,
            num_warmup=num_samples * thin,
            num_chains=2,
            thin=thin,
            key=index,
            progress=False,
        )
        probabilities = predictive(result.positions, x_test)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == y_test))
        ece = expected_calibration_error(probabilities, y_test)
        print(
            f"{name}: test accuracy {accuracy:.4f}, ECE {ece:.4f}, "
            f"{time.perf_counter() - start:.1f} s, "
            f"{float(result.stats['n_steps'].mean()):.0f} gradient passes per step"
        )
        trees[name] = result.to_arviz()

    print("\nSGLD, the output layer's biases and a few first-layer weights:")
    print(az.summary(trees["SGLD"], var_names=["b2"]))
    print(az.summary(trees["SGLD"].posterior["w1"].isel(w1_dim_0=slice(20, 22), w1_dim_1=0)))
    tree = trees["SGLD"]
    if "log_likelihood" in tree.children:
        tree = tree.drop_nodes("log_likelihood")
    tree.to_netcdf("sgmcmc_digits_sgld.nc", engine="h5netcdf")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
