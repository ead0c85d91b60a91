"""Stan's windowed warmup as a step-by-step state machine, from BlackJAX's pieces.

BlackJAX's ``window_adaptation`` runs its own loop; bayescore's driver owns the loop (chains,
devices, progress, checkpoints), so this module exposes the same adaptation one step at a time:
dual averaging of the step size towards a target acceptance rate (Hoffman & Gelman 2014,
Alg. 5) in every window, and Welford estimates of the (diagonal or dense) posterior covariance
as the inverse mass matrix in the slow windows of Stan's schedule (75 fast / doubling slow
windows from 25 / 50 fast). The pieces (``dual_averaging_adaptation``,
``mass_matrix_adaptation``, ``build_schedule``) are BlackJAX's; only the stepping is written
here, for any kernel that reports an acceptance rate (NUTS, HMC, MALA, adjusted Langevin).

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.inference.adaptation import window_adaptation
    >>> init, update, final = window_adaptation(num_steps=200)
    >>> state = init(jnp.zeros(3), initial_step_size=1.0)
    >>> state = update(state, jnp.ones(3), acceptance_rate=0.9)
    >>> step_size, inverse_mass_matrix = final(state)
    >>> inverse_mass_matrix.shape
    (3,)
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.staged_adaptation import build_schedule
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.util import pytree_size
from jaxtyping import Array

from bayescore.core.errors import ShapeError
from bayescore.core.kernel import Kernel


class WindowAdaptationState(NamedTuple):
    """Adaptation state carried through warmup.

    Attributes:
        step: index of the next warmup step (selects the schedule's window).
        step_size_state: BlackJAX dual-averaging state.
        mass_matrix_state: BlackJAX Welford mass-matrix state.
        step_size: step size the kernel uses now.
        inverse_mass_matrix: inverse mass matrix the kernel uses now.
    """

    step: Array
    step_size_state: Any
    mass_matrix_state: Any
    step_size: Array
    inverse_mass_matrix: Array


def window_adaptation(
    num_steps: int,
    *,
    dense_mass: bool = False,
    target_acceptance_rate: float = 0.8,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
) -> tuple[Callable, Callable, Callable]:
    """``(init, update, final)`` of Stan's windowed adaptation over ``num_steps`` steps.

    ``init(position, initial_step_size, inverse_mass_matrix=None)``,
    ``update(state, position, acceptance_rate)`` after each kernel step,
    ``final(state) -> (step_size, inverse_mass_matrix)`` with the step size the dual-averaging
    iterate average :math:`\\bar\\epsilon` of the last window. With ``adapt_step_size=False``
    the step size stays the initial one; with ``adapt_mass_matrix=False`` the inverse mass
    matrix stays the initial one (the identity unless ``init`` is given one).

    Example:
        >>> from bayescore.inference.adaptation import window_adaptation
        >>> init, update, final = window_adaptation(100, dense_mass=True)
        >>> import jax.numpy as jnp
        >>> final(init(jnp.zeros(2), 0.5))[1].shape
        (2, 2)
    """
    step_size_init, step_size_update, step_size_final = dual_averaging_adaptation(
        target_acceptance_rate
    )
    mass_init, mass_update, mass_final = mass_matrix_adaptation(not dense_mass)
    schedule = jnp.asarray(build_schedule(num_steps), dtype=jnp.int32).reshape(-1, 2)

    def init(
        position: Any, initial_step_size: float, inverse_mass_matrix: Array | None = None
    ) -> WindowAdaptationState:
        mass_state = mass_init(pytree_size(position))
        if inverse_mass_matrix is not None:
            mass_state = mass_state._replace(
                inverse_mass_matrix=jnp.asarray(
                    inverse_mass_matrix, dtype=mass_state.inverse_mass_matrix.dtype
                )
            )
        return WindowAdaptationState(
            jnp.zeros((), jnp.int32),
            step_size_init(initial_step_size),
            mass_state,
            jnp.asarray(initial_step_size, dtype=jnp.result_type(float)),
            mass_state.inverse_mass_matrix,
        )

    def update(
        state: WindowAdaptationState, position: Any, acceptance_rate: Array
    ) -> WindowAdaptationState:
        if schedule.shape[0] == 0 or not (adapt_step_size or adapt_mass_matrix):
            return state
        stage, window_end = schedule[jnp.minimum(state.step, schedule.shape[0] - 1)]
        step_size_state = step_size_update(state.step_size_state, acceptance_rate)
        mass_state = jax.lax.cond(
            stage == 1,
            lambda m: mass_update(m, jax.flatten_util.ravel_pytree(position)[0]),
            lambda m: m,
            state.mass_matrix_state,
        )

        def close_window(carry: tuple) -> tuple:
            step_state, mass = carry
            mass = mass_final(mass)
            return step_size_init(step_size_final(step_state)), mass

        step_size_state, mass_state = jax.lax.cond(
            window_end.astype(bool),
            close_window,
            lambda carry: carry,
            (step_size_state, mass_state),
        )
        if not adapt_step_size:
            step_size_state = state.step_size_state
        if not adapt_mass_matrix:
            mass_state = state.mass_matrix_state
        return WindowAdaptationState(
            state.step + 1,
            step_size_state,
            mass_state,
            jnp.exp(step_size_state.log_step_size) if adapt_step_size else state.step_size,
            mass_state.inverse_mass_matrix,
        )

    def final(state: WindowAdaptationState) -> tuple[Array, Array]:
        # With no warmup the dual-averaging average is undefined: keep the initial step size.
        if not adapt_step_size:
            return state.step_size, state.mass_matrix_state.inverse_mass_matrix
        averaged = jnp.exp(state.step_size_state.log_step_size_avg)
        step_size = jnp.where(state.step > 0, averaged, state.step_size)
        return step_size, state.mass_matrix_state.inverse_mass_matrix

    return init, update, final


class AdaptedParameters(NamedTuple):
    """What warmup tunes: the step size and the inverse mass matrix (flattened positions)."""

    step_size: Array
    inverse_mass_matrix: Array


class AdaptiveWarmupState(NamedTuple):
    """A chain's state and its adaptation state during warmup."""

    chain: Any
    adaptation: WindowAdaptationState

    @property
    def position(self) -> Any:
        return self.chain.position

    @property
    def logdensity(self) -> Array:
        return self.chain.logdensity


class WindowAdapted(eqx.Module):
    """Base of the samplers tuned by :func:`window_adaptation` (NUTS, MALA, MALT, ...).

    A subclass declares the fields below (as NumPyro's NUTS names them) and implements two
    functions of a chain; this class turns them into a bayescore ``Method``:

    - ``init_chain(target, position, key, parameters) -> state`` (``state.position``);
    - ``transition(target, key, state, parameters) -> (state, info)`` with
      ``info.acceptance_rate`` (what dual averaging drives to ``target_acceptance_rate``);
      ``warmup_transition`` (the same by default) is what warmup runs.

    ``parameters`` is whatever ``prepare(step_size, inverse_mass_matrix)`` returns
    (:class:`AdaptedParameters` unless a subclass precomputes factors there once per chain).

    Fields every subclass has:
        step_size: the initial step size, or the step size when ``adapt_step_size=False``.
        adapt_step_size: dual-average the step size during warmup.
        adapt_mass_matrix: estimate the inverse mass matrix in Stan's slow windows.
        dense_mass: a dense inverse mass matrix instead of a diagonal one.
        inverse_mass_matrix: the initial (or, without adaptation, fixed) inverse mass matrix,
            shape ``(dim,)`` or ``(dim, dim)`` over the flattened unconstrained position;
            ``None`` is the identity.
        target_acceptance_rate: dual averaging's target mean acceptance rate.
    """

    step_size: eqx.AbstractVar[float]
    adapt_step_size: eqx.AbstractVar[bool]
    adapt_mass_matrix: eqx.AbstractVar[bool]
    dense_mass: eqx.AbstractVar[bool]
    inverse_mass_matrix: eqx.AbstractVar[Any]
    target_acceptance_rate: eqx.AbstractVar[float]

    @abc.abstractmethod
    def init_chain(self, target: Any, position: Any, key: Any, parameters: Any) -> Any:
        """The chain state at ``position``."""

    @abc.abstractmethod
    def transition(self, target: Any, key: Any, state: Any, parameters: Any) -> tuple[Any, Any]:
        """One step of the chain with the given parameters."""

    def warmup_transition(
        self, target: Any, key: Any, state: Any, parameters: Any
    ) -> tuple[Any, Any]:
        """The transition during warmup: the tuned one unless a subclass needs a safer one."""
        return self.transition(target, key, state, parameters)

    def prepare(self, step_size: Array, inverse_mass_matrix: Array) -> Any:
        """The ``parameters`` the transition takes (override to precompute factors)."""
        return AdaptedParameters(step_size, inverse_mass_matrix)

    def _adaptation(self, num_warmup: int) -> tuple[Callable, Callable, Callable]:
        return window_adaptation(
            num_warmup,
            dense_mass=self.dense_mass,
            target_acceptance_rate=self.target_acceptance_rate,
            adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix,
        )

    def warmup(self, target: Any, num_warmup: int) -> Any:
        check_inverse_mass_matrix(self.inverse_mass_matrix, target.dim, self.dense_mass)
        init_adaptation, update_adaptation, _ = self._adaptation(num_warmup)

        def init(position: Any, key: Any = None) -> AdaptiveWarmupState:
            adaptation = init_adaptation(position, self.step_size, self.inverse_mass_matrix)
            parameters = self.prepare(adaptation.step_size, adaptation.inverse_mass_matrix)
            return AdaptiveWarmupState(
                self.init_chain(target, position, key, parameters), adaptation
            )

        def step(key: Any, state: AdaptiveWarmupState) -> tuple[AdaptiveWarmupState, Any]:
            adaptation = state.adaptation
            parameters = self.prepare(adaptation.step_size, adaptation.inverse_mass_matrix)
            chain, info = self.warmup_transition(target, key, state.chain, parameters)
            adaptation = update_adaptation(adaptation, chain.position, info.acceptance_rate)
            return AdaptiveWarmupState(chain, adaptation), info

        return Kernel(init, step)

    def tune(self, target: Any, warmup_state: AdaptiveWarmupState) -> tuple[Any, Any]:
        _, _, final = self._adaptation(1)
        return self.prepare(*final(warmup_state.adaptation)), warmup_state.chain

    def kernel(self, target: Any, parameters: Any) -> Any:
        def init(position: Any, key: Any = None) -> Any:
            return self.init_chain(target, position, key, parameters)

        def step(key: Any, state: Any) -> tuple[Any, Any]:
            return self.transition(target, key, state, parameters)

        return Kernel(init, step)


def check_inverse_mass_matrix(inverse_mass_matrix: Any, dim: int, dense_mass: bool) -> None:
    """Raise a ``ShapeError`` unless ``inverse_mass_matrix`` is ``None`` or fits ``dim``.

    Example:
        >>> import numpy as np
        >>> from bayescore.inference.adaptation import check_inverse_mass_matrix
        >>> check_inverse_mass_matrix(np.ones(3), 3, dense_mass=False)
        >>> check_inverse_mass_matrix(np.ones(3), 2, dense_mass=False)
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ShapeError: inverse_mass_matrix has shape (3,), but the target ...
    """
    if inverse_mass_matrix is None:
        return
    expected = (dim, dim) if dense_mass else (dim,)
    shape = tuple(jnp.shape(inverse_mass_matrix))
    if shape != expected:
        raise ShapeError(
            f"inverse_mass_matrix has shape {shape}, but the target has {dim} unconstrained "
            f"dimensions: pass shape {expected} (dense_mass={dense_mass})."
        )
