"""Higher-order probabilistic programs on quasi-Borel semantics.

Programs are NumPyro models (which may return functions) or the combinators of
:class:`Random` (a distribution, no scoring) and :class:`Measure` (an unnormalised measure).
Every site draws with a key derived from its address (:mod:`~bayescore.models.ho.keys`), so
traces are stable under edits and memoized random functions (:func:`mem`) need no key table;
:func:`crp` gives an untruncated Chinese restaurant process. Random functions on continuous
domains (:func:`gp_fn`, :func:`wiener`, :func:`linear_basis`) and non-parametric objects
(:func:`dp`, :func:`poisson_process`, :func:`stream`) draw their sites lazily, when queried.
Inference on these programs lives in :mod:`bayescore.inference.programs`.

Example:
    >>> import jax, numpyro, numpyro.distributions as dist
    >>> from bayescore.models import ho
    >>> def regression():
    ...     slope = numpyro.sample("slope", dist.Normal(0.0, 3.0))
    ...     f = lambda x: slope * x
    ...     numpyro.sample("y", dist.Normal(f(1.0), 0.5), obs=1.2)
    ...     return f
    >>> f, log_weight, trace = ho.from_model(regression).run(jax.random.key(0))
    >>> sorted(trace)
    ['slope', 'y']
"""

from bayescore.models.ho.crp import Restaurant, crp
from bayescore.models.ho.functions import (
    LazyGaussianProcess,
    LinearBasis,
    Wiener,
    gp_fn,
    linear_basis,
    wiener,
)
from bayescore.models.ho.kernels import Matern, SquaredExponential
from bayescore.models.ho.keys import Address, address_hash, key_at
from bayescore.models.ho.measure import Measure, Random, call
from bayescore.models.ho.mem import MemFn, mem
from bayescore.models.ho.nonparametric import (
    DirichletProcess,
    Stream,
    dp,
    poisson_process,
    stream,
)
from bayescore.models.ho.runtime import AddressError, ScoreInRandomError, Site

from_model = Measure.from_model

__all__ = [
    "Address",
    "AddressError",
    "DirichletProcess",
    "LazyGaussianProcess",
    "LinearBasis",
    "Matern",
    "Measure",
    "MemFn",
    "Random",
    "Restaurant",
    "ScoreInRandomError",
    "Site",
    "SquaredExponential",
    "Stream",
    "Wiener",
    "address_hash",
    "call",
    "crp",
    "dp",
    "from_model",
    "gp_fn",
    "key_at",
    "linear_basis",
    "mem",
    "poisson_process",
    "stream",
    "wiener",
]
