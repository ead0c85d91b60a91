"""Langevin samplers: ULA, MALA, underdamped Langevin (BAOAB, OBABO) and MALT.

All are self-tuning Methods for ``bc.sample`` on any Target: preconditioned by a diagonal or
dense mass matrix, with the step size dual-averaged and the mass matrix estimated in Stan's
windows during warmup (:mod:`bayescore.inference.adaptation`).

Example:
    >>> import jax.numpy as jnp
    >>> import bayescore as bc
    >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] @ p["x"],
    ...                                    {"x": jnp.zeros(2)})
    >>> result = bc.sample(bc.inference.mala(dense_mass=True), target, num_samples=200,
    ...                    num_warmup=200, num_chains=2, key=0, progress=False)
    >>> result.parameters[1].inverse_mass_matrix.shape
    (2, 2, 2)
"""

from bayescore.inference.langevin.base import KineticState, LangevinInfo, LangevinState
from bayescore.inference.langevin.kinetic import MALT, Underdamped, malt, underdamped
from bayescore.inference.langevin.overdamped import MALA, ULA, mala, ula
from bayescore.inference.langevin.preconditioner import Preconditioner, preconditioner

__all__ = [
    "MALA",
    "MALT",
    "ULA",
    "KineticState",
    "LangevinInfo",
    "LangevinState",
    "Preconditioner",
    "Underdamped",
    "mala",
    "malt",
    "preconditioner",
    "ula",
    "underdamped",
]
