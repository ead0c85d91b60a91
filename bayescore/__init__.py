"""bayescore: probabilistic programming and Bayesian inference on JAX.

Models are NumPyro functions (or bayescore primitives); a :class:`Target` wraps one; a backend
from :mod:`bayescore.inference` samples it through :func:`sample`; the :class:`Result` becomes
an ArviZ ``DataTree``.

Example:
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> import bayescore as bc
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> target = bc.Target.from_numpyro(model, jnp.array([1.0, 2.0, 3.0]))
    >>> result = bc.sample(bc.inference.nuts(), target, num_samples=200, num_warmup=200,
    ...                    num_chains=2, key=jax.random.key(0), progress=False)
    >>> round(float(result.to_arviz().posterior["mu"].mean()), 0)
    2.0
"""

from importlib.metadata import PackageNotFoundError, version

from bayescore import core, inference, metrics, models
from bayescore.core import distributed
from bayescore.core.driver import sample
from bayescore.core.errors import BayescoreError
from bayescore.core.kernel import Kernel
from bayescore.core.result import Result, predict
from bayescore.core.target import Target
from bayescore.inference.vi import fit

try:
    __version__ = version("bayescore")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BayescoreError",
    "Kernel",
    "Result",
    "Target",
    "core",
    "distributed",
    "fit",
    "inference",
    "metrics",
    "models",
    "predict",
    "sample",
]
