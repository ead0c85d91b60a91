r"""Step-size schedules for SG-MCMC: constant, polynomial decay, cyclical (cSGLD/cSGHMC).

A schedule is any function ``count -> step size`` of the (traced) step counter, so every optax
schedule works (``optax.exponential_decay(...)``, ``optax.join_schedules(...)``). A schedule
that also has ``exploring(count) -> bool`` marks exploration steps, in which the samplers drop
their injected noise (an SGD or SGD-with-momentum step) and ``sample_stats`` records
``exploring = True``; draws from those steps are not posterior draws.

- :func:`polynomial_decay`: Welling & Teh's :math:`h_t = a (b + t)^{-\gamma}`, with
  :math:`\gamma \in (0.5, 1]` for the decreasing-step-size convergence guarantee.
- :func:`cyclical` (Zhang et al., ICLR 2020): :math:`M` cycles of
  :math:`h_k = \tfrac{h_0}{2}[\cos(\pi\,\mathrm{mod}(k, L)/L) + 1]`, :math:`L = \lceil K/M
  \rceil`, built from ``optax.cosine_decay_schedule``; the first ``exploration`` fraction of
  each cycle explores, the rest samples.

Example:
    >>> from bayescore.inference.sgmcmc.schedules import cyclical
    >>> schedule = cyclical(0.1, num_steps=100, num_cycles=4, exploration=0.5)
    >>> float(schedule(0)), bool(schedule.exploring(0)), bool(schedule.exploring(20))
    (0.1, True, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from bayescore.core.errors import (
    ArgumentError,
    check_interval,
    check_positive_float,
    check_positive_int,
)


class Constant(eqx.Module):
    """A constant step size (what a plain float becomes)."""

    value: float

    def __call__(self, count: Any) -> Array:
        return jnp.asarray(self.value, jnp.float32)


class PolynomialDecay(eqx.Module):
    """:math:`a (b + t)^{-\\gamma}` (see :func:`polynomial_decay`)."""

    a: float
    b: float
    gamma: float

    def __call__(self, count: Any) -> Array:
        return self.a * (self.b + jnp.asarray(count, jnp.float32)) ** (-self.gamma)


class Cyclical(eqx.Module):
    """Cosine cycles with an exploration phase at the start of each (see :func:`cyclical`)."""

    step_size: float
    cycle_length: int = eqx.field(static=True)
    exploration: float

    def __call__(self, count: Any) -> Array:
        within = jnp.asarray(count) % self.cycle_length
        return optax.cosine_decay_schedule(self.step_size, self.cycle_length)(within)

    def exploring(self, count: Any) -> Array:
        """Whether step ``count`` explores (no noise): the first part of its cycle."""
        within = jnp.asarray(count) % self.cycle_length
        return within < self.exploration * self.cycle_length


def polynomial_decay(a: float, b: float = 1.0, gamma: float = 0.55) -> PolynomialDecay:
    """Welling & Teh's decreasing step size :math:`h_t = a (b + t)^{-\\gamma}`.

    Example:
        >>> from bayescore.inference.sgmcmc.schedules import polynomial_decay
        >>> round(float(polynomial_decay(1.0, 1.0, 1.0)(3)), 3)
        0.25
    """
    a = check_positive_float("a", a)
    b = check_positive_float("b", b)
    gamma = check_positive_float("gamma", gamma)
    return PolynomialDecay(a, b, gamma)


def cyclical(
    step_size: float, num_steps: int, num_cycles: int, exploration: float = 0.0
) -> Cyclical:
    """cSG-MCMC's cosine cycles: ``num_cycles`` cycles over ``num_steps`` steps.

    Args:
        step_size: :math:`h_0`, the step size at the start of each cycle.
        num_steps: :math:`K`, the total steps the cycles span (warmup plus draws in
            ``bc.sample``: the step counter runs through both).
        num_cycles: :math:`M`.
        exploration: the fraction of each cycle, at its start, spent exploring (noise off);
            Zhang et al. use 0.8 to 0.95 for deep networks and, on small models, 0 to 0.25.

    Example:
        >>> from bayescore.inference.sgmcmc.schedules import cyclical
        >>> cyclical(0.5, num_steps=1000, num_cycles=4).cycle_length
        250
    """
    step_size = check_positive_float("step_size", step_size)
    num_steps = check_positive_int("num_steps", num_steps)
    num_cycles = check_positive_int("num_cycles", num_cycles)
    if num_cycles > num_steps:
        raise ArgumentError(f"num_cycles={num_cycles} exceeds num_steps={num_steps}.")
    exploration = check_interval("exploration", exploration, 0.0, 1.0, closed="left")
    return Cyclical(step_size, math.ceil(num_steps / num_cycles), exploration)


def as_schedule(step_size: Any) -> Callable[[Any], Array]:
    """A float becomes :class:`Constant`; a callable (any optax schedule) is kept.

    Raises:
        ArgumentError: a non-positive or non-finite float, or neither a number nor a callable.
    """
    if callable(step_size):
        return step_size
    if isinstance(step_size, (int, float, complex, str)) or np.ndim(step_size) == 0:
        return Constant(check_positive_float("step_size", step_size))
    raise ArgumentError(
        f"step_size must be a positive float or a schedule (a function of the step count, "
        f"e.g. an optax schedule), got {type(step_size).__name__}."
    )


def exploring(schedule: Any, count: Any) -> Array:
    """``schedule.exploring(count)`` when the schedule has it, else ``False``."""
    if hasattr(schedule, "exploring"):
        return jnp.asarray(schedule.exploring(count))
    return jnp.zeros((), bool)


__all__ = [
    "Constant",
    "Cyclical",
    "PolynomialDecay",
    "as_schedule",
    "cyclical",
    "exploring",
    "polynomial_decay",
]
