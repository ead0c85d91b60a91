"""Variational inference: families × objectives × gradient estimators, composed freely.

``bc.fit(target, family, objective=, estimator=, optimizer=, num_steps=, key=)`` fits any
family (mean-field, full-rank, low-rank, or a flow) by any objective (ELBO, IWELBO, Rényi-α,
forward KL, or a user's function of ``log_p`` and ``log_q``) with any gradient estimator
valid for it (reparameterisation, score function with a baseline, sticking the landing,
DReG); an invalid pairing raises an error that says why.
"""

from bayescore.inference.vi.estimators import (
    Estimator,
    check,
    dreg,
    fast_path,
    frozen,
    reparameterisation,
    score_function,
    sticking_the_landing,
)
from bayescore.inference.vi.families import (
    LowRankNormal,
    check_family,
    full_rank,
    low_rank,
    mean_field,
)
from bayescore.inference.vi.fit import Approximation, fit
from bayescore.inference.vi.objectives import (
    Objective,
    as_objective,
    elbo,
    forward_kl,
    iwelbo,
    renyi,
)
from bayescore.inference.vi.snf import LangevinBlock, StochasticFlow, stochastic_flow

__all__ = [
    "Approximation",
    "Estimator",
    "LangevinBlock",
    "LowRankNormal",
    "Objective",
    "StochasticFlow",
    "as_objective",
    "check",
    "check_family",
    "dreg",
    "fast_path",
    "elbo",
    "fit",
    "forward_kl",
    "frozen",
    "full_rank",
    "iwelbo",
    "low_rank",
    "mean_field",
    "renyi",
    "reparameterisation",
    "score_function",
    "sticking_the_landing",
    "stochastic_flow",
]
