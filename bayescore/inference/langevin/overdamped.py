r"""Overdamped Langevin samplers: ULA and MALA, preconditioned and self-tuning.

Both propose the Euler–Maruyama step of the preconditioned Langevin diffusion
:math:`dx = \Sigma \nabla \log\pi(x)\,dt + \sqrt{2}\,\Sigma^{1/2} dW`,

.. math::

    y = x + h\,\Sigma \nabla \log \pi(x) + \sqrt{2h}\,\Sigma^{1/2}\xi, \qquad \xi \sim N(0, I),

with step size :math:`h` (BlackJAX's convention: ``step_size`` is :math:`h`, not
:math:`h^2/2`) and inverse mass matrix :math:`\Sigma`. **MALA** (Roberts & Tweedie 1996)
accepts :math:`y` with probability :math:`\min\{1, \pi(y) q(x|y) / \pi(x) q(y|x)\}`,
:math:`q(y|x) = N(y; x + h\Sigma\nabla\log\pi(x), 2h\Sigma)`; **ULA** always moves and is
biased by :math:`O(h)` (for :math:`N(0, s^2)` its stationary variance is
:math:`s^2 / (1 - h / (2 s^2))`).

The transition is written here rather than taken from ``blackjax.mala`` because BlackJAX's MALA
has no preconditioner; with the identity it makes the same draws as ``blackjax.mala`` from the
same key (tested). One gradient evaluation per step. Warmup dual-averages :math:`h` towards
``target_acceptance_rate`` (0.574, Roberts & Rosenthal 1998, for MALA) and estimates
:math:`\Sigma` in Stan's windows. ULA has no accept step; it adapts :math:`h` to the acceptance
rate MALA *would* have had (default 0.9), a direct measure of its discretisation error, and
reports that rate in ``sample_stats``. ULA's warmup is Metropolis-adjusted (it runs MALA), so a
trial step size beyond ULA's stability limit is rejected rather than sending the chain, and the
mass-matrix estimate, to infinity; its draws are unadjusted.

Example:
    >>> import jax.numpy as jnp
    >>> import bayescore as bc
    >>> target = bc.Target.from_logdensity(
    ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(3)})
    >>> result = bc.sample(bc.inference.mala(), target, num_samples=500, num_warmup=500,
    ...                    num_chains=2, key=0, progress=False)
    >>> sorted(result.stats)
    ['acceptance_rate', 'diverging', 'energy_error', 'is_accepted', 'lp', 'n_steps',
     'nonfinite', 'step_size']
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from bayescore.inference.checks import check_sampler_arguments
from bayescore.inference.langevin.base import (
    LangevinInfo,
    LangevinMethod,
    LangevinState,
    energy_statistics,
    flat_logdensity,
    initial_flat_state,
    select,
)


class _Overdamped(LangevinMethod):
    """Shared by :class:`MALA` and :class:`ULA` (fields as in :class:`WindowAdapted`)."""

    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    dense_mass: bool = False
    inverse_mass_matrix: Any = None
    target_acceptance_rate: float = 0.574
    divergence_threshold: float = 1000.0

    adjusted: ClassVar[bool] = True

    def init_chain(
        self, target: Any, position: Any, key: PRNGKeyArray | None, parameters: Any
    ) -> LangevinState:
        return initial_flat_state(target, position)

    def transition(
        self, target: Any, key: PRNGKeyArray, state: LangevinState, parameters: tuple
    ) -> tuple[LangevinState, LangevinInfo]:
        return self._move(target, key, state, parameters, self.adjusted)

    def warmup_transition(
        self, target: Any, key: PRNGKeyArray, state: LangevinState, parameters: tuple
    ) -> tuple[LangevinState, LangevinInfo]:
        # Warmup is always Metropolis-adjusted: a trial step size too large for ULA's stability
        # is rejected instead of blowing the chain (and the mass-matrix estimate) up.
        return self._move(target, key, state, parameters, True)

    def _move(
        self,
        target: Any,
        key: PRNGKeyArray,
        state: LangevinState,
        parameters: tuple,
        adjusted: bool,
    ) -> tuple[LangevinState, LangevinInfo]:
        step_size, precond = parameters
        x, unravel = ravel_pytree(state.position)
        grad_x = ravel_pytree(state.logdensity_grad)[0]
        noise_key, accept_key = jax.random.split(key)

        drift = step_size * precond.velocity(grad_x)
        y = x + drift + jnp.sqrt(2.0 * step_size) * precond.position_noise(noise_key, x)
        logdensity_y, grad_y = flat_logdensity(target, unravel)(y)

        # minus the log MH ratio: -log π(y) q(x|y) + log π(x) q(y|x), computed as BlackJAX
        # does (the forward term from y - x - drift, not from the noise), so that with the
        # identity metric the same key gives blackjax.mala's accept decisions.
        forward = precond.mahalanobis(y - x - drift)
        backward = precond.mahalanobis(x - y - step_size * precond.velocity(grad_y))
        energy_error = (state.logdensity - logdensity_y) + (backward - forward) / (4.0 * step_size)
        rate, diverging, energy_error = energy_statistics(energy_error, self.divergence_threshold)
        accept = jax.random.bernoulli(accept_key, rate)
        proposal = LangevinState(unravel(y), logdensity_y, unravel(grad_y))
        if adjusted:
            new_state = select(accept, proposal, state)
        else:
            new_state, accept = proposal, jnp.ones_like(accept)
            diverging = diverging | ~jnp.isfinite(logdensity_y)
        info = LangevinInfo(
            rate, accept, diverging, energy_error, step_size, jnp.ones((), jnp.int32)
        )
        return new_state, info


class MALA(_Overdamped):
    """Metropolis-adjusted Langevin algorithm (see the module docstring).

    Attributes:
        step_size: initial step size :math:`h` (the fixed one with ``adapt_step_size=False``).
        adapt_step_size: dual-average the step size during warmup.
        adapt_mass_matrix: estimate the inverse mass matrix in Stan's windows during warmup.
        dense_mass: a dense (full) inverse mass matrix rather than a diagonal one.
        inverse_mass_matrix: the initial (or, unadapted, fixed) inverse mass matrix;
            ``None`` is the identity.
        target_acceptance_rate: the acceptance rate the step size is adapted to (0.574).
        divergence_threshold: energy error above which a step counts as divergent.
    """

    adjusted: ClassVar[bool] = True


class ULA(_Overdamped):
    """Unadjusted Langevin algorithm (see the module docstring); biased by O(h).

    ``target_acceptance_rate`` (default 0.9) is the acceptance rate MALA would have had: the
    step size is adapted to it when ``adapt_step_size`` is true.
    """

    target_acceptance_rate: float = 0.9
    adjusted: ClassVar[bool] = False


def _build(cls: type, **kwargs: Any) -> Any:
    adapt = {k: bool(kwargs.pop(k)) for k in ("adapt_step_size", "adapt_mass_matrix")}
    return cls(**adapt, **check_sampler_arguments(**kwargs))


def mala(
    *,
    step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    inverse_mass_matrix: Any = None,
    target_acceptance_rate: float = 0.574,
    divergence_threshold: float = 1000.0,
) -> MALA:
    """Preconditioned MALA with step-size and mass-matrix adaptation, for ``bc.sample``.

    Arguments are named as in ``numpyro.infer.NUTS``; ``step_size`` is the initial step size
    unless ``adapt_step_size=False``. See :class:`MALA` and the module docstring.

    Raises:
        ArgumentError: a non-positive step size, a target acceptance rate outside (0, 1), an
            inverse mass matrix that is not positive definite.
        ShapeError: an inverse mass matrix of the wrong rank (or, at sampling, size).

    Example:
        >>> import jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] @ p["x"],
        ...                                    {"x": jnp.zeros(2)})
        >>> fixed = bc.inference.mala(step_size=0.5, adapt_step_size=False,
        ...                           adapt_mass_matrix=False)
        >>> result = bc.sample(fixed, target, num_samples=100, num_warmup=0, num_chains=2,
        ...                    key=1, progress=False)
        >>> float(result.stats["step_size"].max())
        0.5
    """
    return _build(
        MALA,
        step_size=step_size,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        dense_mass=dense_mass,
        inverse_mass_matrix=inverse_mass_matrix,
        target_acceptance_rate=target_acceptance_rate,
        divergence_threshold=divergence_threshold,
    )


def ula(
    *,
    step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    inverse_mass_matrix: Any = None,
    target_acceptance_rate: float = 0.9,
    divergence_threshold: float = 1000.0,
) -> ULA:
    """Preconditioned ULA for ``bc.sample``; arguments as in :func:`mala`.

    With ``adapt_step_size=True`` (the default) the step size is tuned so that the acceptance
    rate MALA would have had is ``target_acceptance_rate``; pass ``adapt_step_size=False`` to
    keep ``step_size``.

    Example:
        >>> import jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] @ p["x"],
        ...                                    {"x": jnp.zeros(2)})
        >>> result = bc.sample(bc.inference.ula(step_size=0.1, adapt_step_size=False),
        ...                    target, num_samples=100, num_warmup=100, num_chains=2, key=1,
        ...                    progress=False)
        >>> bool(result.stats["is_accepted"].all())
        True
    """
    return _build(
        ULA,
        step_size=step_size,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        dense_mass=dense_mass,
        inverse_mass_matrix=inverse_mass_matrix,
        target_acceptance_rate=target_acceptance_rate,
        divergence_threshold=divergence_threshold,
    )
