"""Stochastic-gradient MCMC: SGLD, pSGLD, SGHMC, SGNHT; schedules; minibatch, control-variate
and structured (S-SGMCMC) gradient estimators.

Samplers and estimators combine freely: ``sgld(h, estimator=Structured(groups=...))`` is
S-SGMCMC on SGLD steps, ``sghmc(h, estimator=ControlVariates())`` is SGHMC-CV. Minibatches
come from the Target's subsampled plates, drawn epoch-wise on the device.

Example:
    >>> import bayescore as bc
    >>> method = bc.inference.sgld(bc.inference.sgmcmc.cyclical(1e-3, 1000, 4, 0.25))
    >>> type(method).__name__
    'SGLD'
"""

from bayescore.inference.sgmcmc.gradients import (
    ControlVariates,
    Estimate,
    Minibatch,
    Structured,
)
from bayescore.inference.sgmcmc.samplers import (
    PSGLD,
    SGHMC,
    SGLD,
    SGNHT,
    SGInfo,
    SGMethod,
    SGState,
    psgld,
    sghmc,
    sgld,
    sgnht,
)
from bayescore.inference.sgmcmc.schedules import cyclical, polynomial_decay

__all__ = [
    "PSGLD",
    "SGHMC",
    "SGLD",
    "SGNHT",
    "ControlVariates",
    "Estimate",
    "Minibatch",
    "SGInfo",
    "SGMethod",
    "SGState",
    "Structured",
    "cyclical",
    "polynomial_decay",
    "psgld",
    "sghmc",
    "sgld",
    "sgnht",
]
