"""Stochastic optimisation in one compiled loop: flows' reverse-KL training and ``bc.fit``.

:func:`optimise` runs ``num_steps`` optax steps of a stochastic loss inside one ``lax.scan``
(one dispatch, the progress bar ticked from the device); :func:`guarded_update` is the step
itself, which skips an update whose loss or gradient is not finite, so a bad draw never
poisons the parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.progress import ProgressBar, tick


@functools.cache
def adam(learning_rate: float) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, one object per step size.

    optax builds new closures on every call, and a compiled loop is keyed on them; sharing
    one Adam per step size lets repeated fits (``bc.fit``, ``fit_lightsb``) reuse the loop.

    Example:
        >>> from bayescore.core.optimise import adam
        >>> adam(1e-2) is adam(1e-2)
        True
    """
    return optax.adam(learning_rate)


def guarded_update(
    optimizer: optax.GradientTransformation, params: Any, opt_state: Any, loss: Array, grads: Any
) -> tuple[Any, Any]:
    """One optax step, or none when the loss or a gradient is not finite.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from bayescore.core.optimise import guarded_update
        >>> sgd, x = optax.sgd(0.1), jnp.ones(2)
        >>> params, _ = guarded_update(sgd, x, sgd.init(x), jnp.nan, jnp.ones(2))
        >>> tuple(params.tolist())
        (1.0, 1.0)
    """
    updates, new_state = optimizer.update(grads, opt_state, params)
    new_params = eqx.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_state, opt_state)


def optimise(
    loss_fn: Callable[[Any, PRNGKeyArray], tuple[Array, Array]],
    params: Any,
    optimizer: optax.GradientTransformation,
    key: PRNGKeyArray,
    num_steps: int,
    *,
    progress: bool = True,
    description: str = "",
) -> tuple[Any, Array, Array]:
    """Minimise ``loss_fn(params, key) -> (loss, aux)`` for ``num_steps`` steps.

    Step ``t`` uses ``fold_in(key, t)``. Returns the final parameters, the loss and the
    scalar ``aux`` (e.g. the objective's value) of every step.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from bayescore.core.optimise import optimise
        >>> def loss(x, key):
        ...     value = jnp.sum((x - 3.0) ** 2)
        ...     return value, value
        >>> x, losses, _ = optimise(loss, jnp.zeros(2), optax.adam(0.1), jax.random.key(0),
        ...                         500, progress=False)
        >>> [round(float(v), 2) for v in x] == [3.0, 3.0], losses.shape
        (True, (500,))
    """
    with ProgressBar(num_steps, enabled=progress, description=description) as bar:
        return _scan(loss_fn, params, optimizer.init(params), key, optimizer, num_steps, bar.every)


@eqx.filter_jit
def _scan(
    loss_fn: Callable,
    params: Any,
    opt_state: Any,
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    every: int,
) -> tuple[Any, Array, Array]:
    def step(carry: tuple[Any, Any], t: Array) -> tuple[tuple[Any, Any], tuple[Array, Array]]:
        params, opt_state = carry
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, jax.random.fold_in(key, t)
        )
        if every:
            tick(t, every, num_steps, 0, 1, True)
        return guarded_update(optimizer, params, opt_state, loss, grads), (loss, aux)

    (params, _), (losses, aux) = jax.lax.scan(step, (params, opt_state), jnp.arange(num_steps))
    return params, losses, aux


__all__ = ["adam", "guarded_update", "optimise"]
