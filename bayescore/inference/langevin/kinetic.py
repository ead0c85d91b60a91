r"""Underdamped (kinetic) Langevin samplers: BAOAB, OBABO, and Metropolis-adjusted MALT.

They discretise the kinetic Langevin diffusion with friction :math:`\gamma` and mass
:math:`M = \Sigma^{-1}`,

.. math::

    dx = \Sigma p\,dt, \qquad dp = \nabla\log\pi(x)\,dt - \gamma p\,dt + \sqrt{2\gamma}\,
    M^{1/2} dW,

by splitting it into **B** (kick, :math:`p \mathrel{+}= \tfrac h2 \nabla\log\pi(x)`), **A**
(drift, :math:`x \mathrel{+}= h' \Sigma p`) and **O** (the exact Ornstein–Uhlenbeck step
:math:`p \leftarrow c\,p + \sqrt{1-c^2}\,M^{1/2}\xi`):

- **BAOAB** (Leimkuhler & Matthews 2013): B(h/2) A(h/2) O(h) A(h/2) B(h/2),
  :math:`c = e^{-\gamma h}`. Its configurational (position) marginal is *exact* for Gaussian
  targets at every stable step size; the momentum variance is biased by
  :math:`1/(1 - h^2\omega^2/4)` for frequency :math:`\omega`.
- **OBABO** (Bussi & Parrinello 2007): O(h/2) B(h/2) A(h) B(h/2) O(h/2),
  :math:`c = e^{-\gamma h/2}`. The reverse: exact momenta, positions biased on Gaussians.
- **MALT**, Metropolis-adjusted Langevin trajectories (Riou-Durand & Vogrinc 2023), the
  adjusted kinetic sampler: draw :math:`p \sim N(0, M)`, run ``num_steps`` OBABO steps, and
  accept the end point with probability :math:`\min(1, e^{-W})`, where :math:`W` sums the
  energy errors of the deterministic BAB parts (the O steps preserve the Gaussian momentum
  law and drop out). Exact for any step size; :math:`\gamma = 0` is HMC with ``num_steps``
  leapfrog steps.

Each step costs one gradient evaluation (MALT: ``num_steps``). ``friction`` is per unit of
time in the preconditioned scale (with :math:`\Sigma` the posterior covariance, the slowest
Gaussian mode has unit frequency, so :math:`\gamma \approx 1`–2 is near critical damping).
The unadjusted samplers report the shadow work :math:`W` (total energy change minus the heat
exchanged in the O steps; Sivak, Chodera & Crooks 2013) as ``energy_error`` and
:math:`\min(1, e^{-W})` as ``acceptance_rate``, and adapt the step size to it (default 0.9).
During warmup they reject a step with probability :math:`1 - \min(1, e^{-W})` (keeping the
position, redrawing the momentum), so a trial step size past the stability limit cannot send
the chain and the mass-matrix estimate to infinity; the draws are unadjusted.
BlackJAX has no released underdamped or MALT kernel, so the splittings are written here.

Example:
    >>> import jax.numpy as jnp
    >>> import bayescore as bc
    >>> target = bc.Target.from_logdensity(
    ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(3)})
    >>> result = bc.sample(bc.inference.malt(num_steps=5), target, num_samples=300,
    ...                    num_warmup=300, num_chains=2, key=0, progress=False)
    >>> int(result.stats["n_steps"].max())
    5
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int
from bayescore.inference.checks import check_sampler_arguments
from bayescore.inference.langevin.base import (
    KineticState,
    LangevinInfo,
    LangevinMethod,
    LangevinState,
    energy_statistics,
    flat_logdensity,
    initial_flat_state,
    select,
)
from bayescore.inference.langevin.preconditioner import Preconditioner

SPLITTINGS = ("baoab", "obabo")


def _ornstein_uhlenbeck(
    key: PRNGKeyArray, momentum: Array, decay: Array, precond: Preconditioner
) -> Array:
    """O: the exact OU step ``p ← c p + sqrt(1 - c²) M^{1/2} ξ``."""
    return decay * momentum + jnp.sqrt(1.0 - decay**2) * precond.momentum(key, momentum)


def _leapfrog(
    value_and_grad: Any, x: Array, p: Array, grad: Array, step_size: Array, precond: Preconditioner
) -> tuple[Array, Array, Array, Array]:
    """B(h/2) A(h) B(h/2): one velocity-Verlet step; returns ``(x, p, log π(x), ∇ log π(x))``."""
    p = p + 0.5 * step_size * grad
    x = x + step_size * precond.velocity(p)
    logdensity, grad = value_and_grad(x)
    p = p + 0.5 * step_size * grad
    return x, p, logdensity, grad


def _obabo(
    keys: Array,
    value_and_grad: Any,
    x: Array,
    p: Array,
    logdensity: Array,
    grad: Array,
    step_size: Array,
    friction: Array,
    precond: Preconditioner,
) -> tuple[Array, Array, Array, Array, Array]:
    """One OBABO step; also returns the energy error of its BAB part."""
    decay = jnp.exp(-0.5 * friction * step_size)
    p = _ornstein_uhlenbeck(keys[0], p, decay, precond)
    energy = -logdensity + precond.kinetic_energy(p)
    x, p, logdensity, grad = _leapfrog(value_and_grad, x, p, grad, step_size, precond)
    energy_error = -logdensity + precond.kinetic_energy(p) - energy
    p = _ornstein_uhlenbeck(keys[1], p, decay, precond)
    return x, p, logdensity, grad, energy_error


class Underdamped(LangevinMethod):
    """Unadjusted underdamped Langevin with the BAOAB or OBABO splitting (module docstring).

    Attributes:
        friction: :math:`\\gamma`, per unit of (preconditioned) time.
        splitting: ``"baoab"`` or ``"obabo"``.
        step_size: initial leapfrog step size (the fixed one with ``adapt_step_size=False``).
        adapt_step_size: dual-average the step size during warmup.
        adapt_mass_matrix: estimate the inverse mass matrix in Stan's windows during warmup.
        dense_mass: a dense (full) inverse mass matrix rather than a diagonal one.
        inverse_mass_matrix: the initial (or, unadapted, fixed) inverse mass matrix;
            ``None`` is the identity.
        target_acceptance_rate: the would-be acceptance rate ``min(1, e^{-W})`` of the
            shadow work ``W`` that the step size is adapted to (0.9).
        divergence_threshold: shadow work above which a step counts as divergent.
    """

    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    dense_mass: bool = False
    inverse_mass_matrix: Any = None
    target_acceptance_rate: float = 0.9
    divergence_threshold: float = 1000.0
    friction: float = 1.0
    splitting: str = eqx.field(static=True, default="baoab")

    def init_chain(
        self, target: Any, position: Any, key: PRNGKeyArray | None, parameters: tuple
    ) -> KineticState:
        _, precond = parameters
        start = initial_flat_state(target, position)
        flat = ravel_pytree(position)[0]
        momentum = (
            jnp.zeros_like(flat) if key is None else precond.momentum(key, flat)
        )  # BlackJAX algorithms may call init without a key; O steps then fill in momentum
        return KineticState(position, momentum, start.logdensity, start.logdensity_grad)

    def transition(
        self, target: Any, key: PRNGKeyArray, state: KineticState, parameters: tuple
    ) -> tuple[KineticState, LangevinInfo]:
        step_size, precond = parameters
        x, unravel = ravel_pytree(state.position)
        grad = ravel_pytree(state.logdensity_grad)[0]
        value_and_grad = flat_logdensity(target, unravel)
        p, logdensity = state.momentum, state.logdensity
        if self.splitting == "obabo":
            keys = jax.random.split(key)
            x, p, logdensity, grad, work = _obabo(
                keys, value_and_grad, x, p, logdensity, grad, step_size, self.friction, precond
            )
        else:
            start = -logdensity + precond.kinetic_energy(p)
            p = p + 0.5 * step_size * grad
            x = x + 0.5 * step_size * precond.velocity(p)
            before = precond.kinetic_energy(p)
            p = _ornstein_uhlenbeck(key, p, jnp.exp(-self.friction * step_size), precond)
            heat = precond.kinetic_energy(p) - before
            x = x + 0.5 * step_size * precond.velocity(p)
            logdensity, grad = value_and_grad(x)
            p = p + 0.5 * step_size * grad
            work = -logdensity + precond.kinetic_energy(p) - start - heat
        rate, diverging, work = energy_statistics(work, self.divergence_threshold)
        diverging = diverging | ~jnp.isfinite(logdensity)
        info = LangevinInfo(
            rate, jnp.ones((), bool), diverging, work, step_size, jnp.ones((), jnp.int32)
        )
        return KineticState(unravel(x), p, logdensity, unravel(grad)), info

    def warmup_transition(
        self, target: Any, key: PRNGKeyArray, state: KineticState, parameters: tuple
    ) -> tuple[KineticState, LangevinInfo]:
        # Warmup rejects steps with probability 1 - min(1, e^{-W}) (keeping the position and
        # redrawing the momentum), so a trial step size past the stability limit cannot send
        # the chain and the mass-matrix estimate to infinity.
        new_state, info = self.transition(target, key, state, parameters)
        accept_key, momentum_key = jax.random.split(jax.random.fold_in(key, 1))
        accept = jax.random.bernoulli(accept_key, info.acceptance_rate)
        momentum = parameters[1].momentum(momentum_key, state.momentum)
        rejected = state._replace(momentum=momentum)
        return select(accept, new_state, rejected), info._replace(is_accepted=accept)


class MALT(LangevinMethod):
    """Metropolis-adjusted Langevin trajectories (see the module docstring).

    Attributes:
        num_steps: OBABO steps (gradient evaluations) per trajectory.
        friction: :math:`\\gamma`; 0 gives HMC.
        step_size: initial leapfrog step size (the fixed one with ``adapt_step_size=False``).
        adapt_step_size: dual-average the step size during warmup.
        adapt_mass_matrix: estimate the inverse mass matrix in Stan's windows during warmup.
        dense_mass: a dense (full) inverse mass matrix rather than a diagonal one.
        inverse_mass_matrix: the initial (or, unadapted, fixed) inverse mass matrix;
            ``None`` is the identity.
        target_acceptance_rate: the acceptance rate the step size is adapted to (0.65, the
            asymptotically optimal rate of HMC-type proposals).
        divergence_threshold: energy error above which a trajectory counts as divergent.
    """

    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    dense_mass: bool = False
    inverse_mass_matrix: Any = None
    target_acceptance_rate: float = 0.65
    divergence_threshold: float = 1000.0
    friction: float = 1.0
    num_steps: int = eqx.field(static=True, default=10)

    def init_chain(
        self, target: Any, position: Any, key: PRNGKeyArray | None, parameters: tuple
    ) -> LangevinState:
        return initial_flat_state(target, position)

    def transition(
        self, target: Any, key: PRNGKeyArray, state: LangevinState, parameters: tuple
    ) -> tuple[LangevinState, LangevinInfo]:
        step_size, precond = parameters
        x0, unravel = ravel_pytree(state.position)
        grad0 = ravel_pytree(state.logdensity_grad)[0]
        value_and_grad = flat_logdensity(target, unravel)
        momentum_key, accept_key, trajectory_key = jax.random.split(key, 3)

        def one_step(carry: tuple, keys: Array) -> tuple[tuple, None]:
            x, p, logdensity, grad, work = carry
            x, p, logdensity, grad, error = _obabo(
                keys, value_and_grad, x, p, logdensity, grad, step_size, self.friction, precond
            )
            return (x, p, logdensity, grad, work + error), None

        start = (x0, precond.momentum(momentum_key, x0), state.logdensity, grad0, 0.0)
        keys = jax.random.split(trajectory_key, (self.num_steps, 2))
        (x, _, logdensity, grad, work), _ = jax.lax.scan(one_step, start, keys)
        rate, diverging, work = energy_statistics(work, self.divergence_threshold)
        accept = jax.random.bernoulli(accept_key, rate)
        proposal = LangevinState(unravel(x), logdensity, unravel(grad))
        info = LangevinInfo(
            rate,
            accept,
            diverging,
            work,
            step_size,
            jnp.asarray(self.num_steps, jnp.int32),
        )
        return select(accept, proposal, state), info


def _friction(friction: Any) -> float:
    return check_positive_float(
        "friction", friction, allow_zero=True, hint="Values near 1 (critical damping) suit most."
    )


def underdamped(
    *,
    splitting: str = "baoab",
    friction: float = 1.0,
    step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    inverse_mass_matrix: Any = None,
    target_acceptance_rate: float = 0.9,
    divergence_threshold: float = 1000.0,
) -> Underdamped:
    """Unadjusted underdamped Langevin (BAOAB or OBABO) for ``bc.sample``.

    See :class:`Underdamped`; the other arguments are as in :func:`bayescore.inference.mala`.

    Raises:
        ArgumentError: an unknown splitting, a negative friction, or a bad common argument.

    Example:
        >>> import jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] @ p["x"],
        ...                                    {"x": jnp.zeros(2)})
        >>> method = bc.inference.underdamped(splitting="obabo", friction=2.0)
        >>> result = bc.sample(method, target, num_samples=200, num_warmup=200,
        ...                    num_chains=2, key=2, progress=False)
        >>> result.positions["x"].shape
        (2, 200, 2)
    """
    if splitting not in SPLITTINGS:
        raise ArgumentError(f"splitting must be one of {SPLITTINGS}, got {splitting!r}.")
    friction = _friction(friction)
    if friction == 0.0:
        raise ArgumentError(
            "friction must be positive for an underdamped sampler (0 is Hamiltonian dynamics "
            "with no noise, which does not sample). Use bc.inference.malt(friction=0.0) for HMC."
        )
    return Underdamped(
        adapt_step_size=bool(adapt_step_size),
        adapt_mass_matrix=bool(adapt_mass_matrix),
        friction=friction,
        splitting=splitting,
        **check_sampler_arguments(
            step_size=step_size,
            target_acceptance_rate=target_acceptance_rate,
            inverse_mass_matrix=inverse_mass_matrix,
            dense_mass=dense_mass,
            divergence_threshold=divergence_threshold,
        ),
    )


def malt(
    *,
    num_steps: int = 10,
    friction: float = 1.0,
    step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    inverse_mass_matrix: Any = None,
    target_acceptance_rate: float = 0.65,
    divergence_threshold: float = 1000.0,
) -> MALT:
    """Metropolis-adjusted Langevin trajectories for ``bc.sample`` (see :class:`MALT`).

    Raises:
        ArgumentError: a non-positive ``num_steps``, a negative friction, or a bad common
            argument (see :func:`bayescore.inference.mala`).

    Example:
        >>> import bayescore as bc
        >>> bc.inference.malt(num_steps=20, friction=0.5).num_steps
        20
    """
    return MALT(
        adapt_step_size=bool(adapt_step_size),
        adapt_mass_matrix=bool(adapt_mass_matrix),
        friction=_friction(friction),
        num_steps=check_positive_int("num_steps", num_steps),
        **check_sampler_arguments(
            step_size=step_size,
            target_acceptance_rate=target_acceptance_rate,
            inverse_mass_matrix=inverse_mass_matrix,
            dense_mass=dense_mass,
            divergence_threshold=divergence_threshold,
        ),
    )
