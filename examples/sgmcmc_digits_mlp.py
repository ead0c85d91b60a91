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
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bayescore as bc

HIDDEN = 50


def mlp(x, y=None, batch_size=None):
    """One hidden layer (tanh), Normal(0, 1) priors, softmax likelihood on a subsampled plate."""
    num_data, num_inputs = x.shape
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([num_inputs, HIDDEN]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([HIDDEN]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([HIDDEN, 10]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
    with numpyro.plate("data", num_data, subsample_size=batch_size) as idx:
        logits = jnp.tanh(x[idx] @ w1 + b1) @ w2 + b2
        numpyro.sample("y", dist.Categorical(logits=logits), obs=None if y is None else y[idx])


def predictive(positions, x):
    """The Bayesian model average: class probabilities averaged over every draw."""

    def probabilities(w1, b1, w2, b2):
        return jax.nn.softmax(jnp.tanh(x @ w1 + b1) @ w2 + b2)

    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in positions.items()}
    per_draw = jax.lax.map(
        lambda p: probabilities(p["w1"], p["b1"], p["w2"], p["b2"]), flat, batch_size=64
    )
    return np.asarray(per_draw.mean(axis=0))


def expected_calibration_error(probabilities, labels, num_bins=10):
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins.

    Example:
        >>> import numpy as np
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
        0.45
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    error = 0.0
    for b in range(num_bins):
        inside = bins == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def main(quick: bool) -> None:
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train = ((x_train - mean) / sd).astype(np.float32)
    x_test = ((x_test - mean) / sd).astype(np.float32)
    target = bc.Target.from_numpyro(mlp, x_train, y=y_train.astype(np.int32), batch_size=100)
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
