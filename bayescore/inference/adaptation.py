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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.staged_adaptation import build_schedule
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.util import pytree_size
from jaxtyping import Array


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
) -> tuple[Callable, Callable, Callable]:
    """``(init, update, final)`` of Stan's windowed adaptation over ``num_steps`` steps.

    ``init(position, initial_step_size)``, ``update(state, position, acceptance_rate)`` after
    each kernel step, ``final(state) -> (step_size, inverse_mass_matrix)`` with the step size
    the dual-averaging iterate average :math:`\\bar\\epsilon` of the last window.

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

    def init(position: Any, initial_step_size: float) -> WindowAdaptationState:
        mass_state = mass_init(pytree_size(position))
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
        if schedule.shape[0] == 0:
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
        return WindowAdaptationState(
            state.step + 1,
            step_size_state,
            mass_state,
            jnp.exp(step_size_state.log_step_size),
            mass_state.inverse_mass_matrix,
        )

    def final(state: WindowAdaptationState) -> tuple[Array, Array]:
        # With no warmup the dual-averaging average is undefined: keep the initial step size.
        averaged = jnp.exp(state.step_size_state.log_step_size_avg)
        step_size = jnp.where(state.step > 0, averaged, state.step_size)
        return step_size, state.mass_matrix_state.inverse_mass_matrix

    return init, update, final
