"""A Bayesian MLP on scikit-learn's bundled digits: data, model and predictive.

Shared by ``examples/sgmcmc_digits_mlp.py`` and the SG-MCMC benchmark. The 1797 8x8 digit
images ship with scikit-learn (no download); :func:`digits_data` standardises them with the
training set's moments and splits them 80/20, stratified, with a fixed seed.

Example:
    >>> from bayescore.demo.digits import digits_data
    >>> x_train, x_test, y_train, y_test = digits_data()
    >>> x_train.shape, x_test.shape
    ((1437, 64), (360, 64))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

HIDDEN = 50
CLASSES = 10
INPUTS = 64  # 8 x 8 pixels
SITE_SHAPES = {"w1": (INPUTS, HIDDEN), "b1": (HIDDEN,), "w2": (HIDDEN, CLASSES), "b2": (CLASSES,)}


def digits_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, x_test, y_train, y_test)``: standardised float32 images, int32 labels.

    Needs scikit-learn (the ``dev`` or ``bench`` extra).

    Example:
        >>> from bayescore.demo.digits import digits_data
        >>> _, _, y_train, _ = digits_data()
        >>> sorted(set(y_train.tolist())) == list(range(10))
        True
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return (
        ((x_train - mean) / sd).astype(np.float32),
        ((x_test - mean) / sd).astype(np.float32),
        y_train.astype(np.int32),
        y_test.astype(np.int32),
    )


def mlp(x: Any, y: Any = None, batch_size: int | None = None) -> None:
    """One hidden layer (tanh, 50 units), Normal(0, 1) priors, softmax likelihood.

    Sites ``w1 (inputs, 50)``, ``b1 (50,)``, ``w2 (50, 10)``, ``b2 (10,)``; ``batch_size``
    subsamples the ``data`` plate for SG-MCMC.

    Example:
        >>> import jax.numpy as jnp
        >>> import bayescore as bc
        >>> from bayescore.demo.digits import mlp
        >>> bc.Target.from_numpyro(mlp, jnp.zeros((20, 64)), jnp.zeros(20, int), 10).dim
        3760
    """
    num_data, num_inputs = x.shape
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([num_inputs, HIDDEN]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([HIDDEN]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([HIDDEN, CLASSES]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0).expand([CLASSES]).to_event(1))
    with numpyro.plate("data", num_data, subsample_size=batch_size) as idx:
        logits = jnp.tanh(x[idx] @ w1 + b1) @ w2 + b2
        numpyro.sample("y", dist.Categorical(logits=logits), obs=None if y is None else y[idx])


def per_draw_probabilities(positions: dict[str, Any], x: Any) -> np.ndarray:
    """Class probabilities of every draw: ``(chain, draw, n, classes)``.

    Example:
        >>> import numpy as np
        >>> from bayescore.demo.digits import SITE_SHAPES, per_draw_probabilities
        >>> zeros = {name: np.zeros((1, 2, *shape)) for name, shape in SITE_SHAPES.items()}
        >>> per_draw_probabilities(zeros, np.zeros((3, 64))).shape
        (1, 2, 3, 10)
    """
    chains, draws = np.shape(positions["b2"])[:2]
    flat = {
        k: jnp.asarray(v).reshape(chains * draws, *np.shape(v)[2:]) for k, v in positions.items()
    }

    def probabilities(p: dict[str, Any]) -> Any:
        return jax.nn.softmax(jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])

    per_draw = jax.lax.map(probabilities, flat, batch_size=64)
    return np.asarray(per_draw).reshape(chains, draws, *per_draw.shape[1:])


def predictive(positions: dict[str, Any], x: Any) -> np.ndarray:
    """The Bayesian model average: class probabilities averaged over every draw, ``(n, 10)``.

    Example:
        >>> import numpy as np
        >>> from bayescore.demo.digits import SITE_SHAPES, predictive
        >>> zeros = {name: np.zeros((1, 2, *shape)) for name, shape in SITE_SHAPES.items()}
        >>> predictive(zeros, np.zeros((3, 64)))[0, 0].round(2)
        np.float32(0.1)
    """
    return per_draw_probabilities(positions, x).mean(axis=(0, 1))


__all__ = [
    "CLASSES",
    "HIDDEN",
    "INPUTS",
    "SITE_SHAPES",
    "digits_data",
    "mlp",
    "per_draw_probabilities",
    "predictive",
]
