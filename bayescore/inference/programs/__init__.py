"""Inference on higher-order programs, as transformers that compose as plain functions.

``enumerate`` (exact, finite discrete programs), ``importance``, ``resample``, ``collapse``,
``smc``, ``rmsmc`` (resample-move), ``trace_mh`` (kernels ``single_site``, ``lazy``,
``restart``, ``site_kernel``) and ``pmmh`` take :class:`bayescore.models.ho.Measure` programs;
``to_arviz`` stores their draws (random functions evaluated on a grid, pointwise
log-likelihoods) as an ArviZ ``DataTree``. Two tiers: with a key, ``importance`` and ``smc``
run a static program's particles vmapped in one compiled program, ``trace_mh`` and ``pmmh``
a static program's chain as one ``lax.scan``, ``rmsmc`` its stages as one ``lax.scan``, and
any other program by re-execution, choosing automatically (``tier=``;
:mod:`~bayescore.inference.programs.compiled`,
:mod:`~bayescore.inference.programs.compiled_mh`,
:mod:`~bayescore.inference.programs.compiled_rmsmc`);
``nuts`` hands a static continuous program to ``bc.sample``. The population transformers,
called without a key, are programs themselves whose random choices are sites, so
``enumerate(collapse(smc(m, 2, resampler="multinomial")))`` equals ``enumerate(m)`` exactly
(Ścibior et al., POPL 2018; monad-bayes).

Example:
    >>> import numpyro, numpyro.distributions as dist
    >>> from bayescore.models import ho
    >>> from bayescore.inference import programs
    >>> def coin():
    ...     x = numpyro.sample("x", dist.Bernoulli(0.3))
    ...     numpyro.sample("y", dist.Bernoulli(0.9 * x + 0.1 * (1 - x)), obs=1)
    ...     return int(x)
    >>> m = ho.from_model(coin)
    >>> exact = programs.enumerate(m).probability(lambda x: x == 1)
    >>> via_smc = programs.enumerate(
    ...     programs.collapse(programs.smc(m, 2, resampler="multinomial"))
    ... ).probability(lambda x: x == 1)
    >>> round(exact, 6), bool(abs(exact - via_smc) < 1e-6)
    (0.794118, True)
"""

from bayescore.inference.programs.arviz import to_arviz
from bayescore.inference.programs.compiled import DynamicProgramError
from bayescore.inference.programs.enumerate import NotEnumerableError, Table, enumerate
from bayescore.inference.programs.nuts import nuts
from bayescore.inference.programs.pmmh import pmmh
from bayescore.inference.programs.population import (
    Population,
    collapse,
    importance,
    resample,
)
from bayescore.inference.programs.smc import rmsmc, smc
from bayescore.inference.programs.trace_mh import (
    Chain,
    Lazy,
    Restart,
    SingleSite,
    SiteKernel,
    kernel_move,
    lazy,
    random_walk,
    restart,
    single_site,
    site_kernel,
    trace_mh,
)

__all__ = [
    "Chain",
    "DynamicProgramError",
    "Lazy",
    "NotEnumerableError",
    "Population",
    "Restart",
    "SingleSite",
    "SiteKernel",
    "Table",
    "collapse",
    "enumerate",
    "importance",
    "kernel_move",
    "lazy",
    "nuts",
    "pmmh",
    "random_walk",
    "resample",
    "restart",
    "rmsmc",
    "single_site",
    "site_kernel",
    "smc",
    "to_arviz",
    "trace_mh",
]
