"""Stochastic optimisation in one compiled loop: flows' reverse-KL training and ``bc.fit``.

:func:`optimise` runs ``num_steps`` optax steps of a stochastic loss inside one ``lax.scan``
(one dispatch, the progress bar ticked from the device); :func:`guarded_update` is the step
itself, which skips an update whose loss or gradient is not finite, so a bad draw never
poisons the parameters (:func:`keep_if_finite`). :func:`minimise_lbfgs` does the same for a
deterministic loss with ``optax.lbfgs`` (zoom line search), for full-batch polishing after Adam
(LightSB's, the PINN's, GP-HM's kernels).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.checkpoint import open_checkpoint
from bayescore.core.errors import ArgumentError, check_positive_int
from bayescore.core.prng import unrolled
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
    finite = _all_finite((loss, grads))

    def step(_: None) -> tuple[Any, Any]:
        updates, new_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), new_state

    # One branch taken, not a select per leaf: leaf-wise jnp.where over the parameters and
    # the optimiser state cost as much as the rest of a small flow's step on CPU.
    return jax.lax.cond(finite, step, lambda _: (params, opt_state), None)


def keep_if_finite[T](check: Any, new: T, old: T) -> T:
    """``new`` if every leaf of the pytree ``check`` is finite, else ``old`` (leaf by leaf
    ``jnp.where``, so it traces inside a compiled loop): the guard of a step that must not
    let a NaN or inf reach the parameters. :func:`guarded_update` checks the loss and the
    gradient; an optimiser that evaluates its own loss (L-BFGS) can check that value and the
    new parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.core.optimise import keep_if_finite
        >>> keep_if_finite(jnp.array([1.0, jnp.inf]), jnp.zeros(2), jnp.ones(2)).tolist()
        [1.0, 1.0]
    """
    return _select(_all_finite(check), new, old)


def _select[T](keep: Array, new: T, old: T) -> T:
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)


def _all_finite(tree: Any) -> Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def optimise(
    loss_fn: Callable[[Any, PRNGKeyArray], tuple[Array, Array]],
    params: Any,
    optimizer: optax.GradientTransformation,
    key: PRNGKeyArray,
    num_steps: int,
    *,
    average_from: int | None = None,
    pass_step: bool = False,
    progress: bool = True,
    description: str = "",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    resume: str | os.PathLike | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> tuple[Any, Array, Array]:
    """Minimise ``loss_fn(params, key) -> (loss, aux)`` for ``num_steps`` steps.

    Step ``t`` uses ``fold_in(key, t)``. Returns the final parameters, the loss and the
    scalar ``aux`` (e.g. the objective's value) of every step.

    Args:
        average_from: if given, return instead the uniform average of the iterates after
            steps ``average_from, ..., num_steps - 1`` (Polyak–Ruppert tail averaging: it
            cancels most of the minibatch noise that a stochastic optimiser leaves in its
            last iterate); its inexact-array leaves are averaged, the others are the last.
        pass_step: call ``loss_fn(params, key, t)`` with the step index ``t`` (a traced
            integer), e.g. for a minibatch size that changes during the run.
        checkpoint: a folder to write the run to every ``checkpoint_every`` steps
            (:class:`~bayescore.core.checkpoint.Checkpoint`: parameters, optimiser state and
            the chunk's losses), so that a crash loses at most one chunk.
        checkpoint_every: steps per chunk.
        resume: the folder of a checkpointed run with the same arguments: continue it from
            its last chunk; the result equals the uninterrupted run's.
        run_config: more JSON-serialisable settings that a resumed run must match (the
            number of steps, the key and the parameters' shapes are checked already).

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
    if average_from is not None and not 0 <= average_from < num_steps:
        raise ArgumentError(f"average_from must be in [0, {num_steps}), got {average_from}.")
    store = open_checkpoint(
        checkpoint,
        resume,
        checkpoint_every,
        ("step",),
        num_steps=num_steps,
        average_from=average_from,
        key=np.asarray(jax.random.key_data(key)).tolist(),
        params=[list(np.shape(leaf)) for leaf in jax.tree.leaves(params)],
        **(run_config or {}),
    )
    every = checkpoint_every if store else num_steps
    carry = (params, optimizer.init(params), None if average_from is None else params)
    done = store.steps_done if store else 0
    if done:
        carry = store.load_state(carry)
    outputs = [store.load_outputs()] if done else []
    with ProgressBar(num_steps, enabled=progress, description=description) as bar:
        for start in range(done, num_steps, every):
            length = min(every, num_steps - start)
            carry, losses, aux = _scan(
                loss_fn,
                carry,
                key,
                optimizer,
                num_steps,
                bar.every,
                average_from,
                pass_step,
                jnp.int32(start),
                length,
            )
            outputs.append({"loss": losses, "aux": aux})
            if store:
                store.commit(carry, outputs=outputs[-1])
    params, _, mean = carry
    losses, aux = (jnp.concatenate([jnp.asarray(o[n]) for o in outputs]) for n in ("loss", "aux"))
    return (params if average_from is None else mean), losses, aux


@eqx.filter_jit
def _scan(
    loss_fn: Callable,
    carry: tuple[Any, Any, Any],
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    every: int,
    average_from: int | None,
    pass_step: bool,
    start: Array,
    length: int,
) -> tuple[tuple[Any, Any, Any], Array, Array]:
    """Steps ``start, ..., start + length - 1`` of ``num_steps`` from ``carry = (params,
    optimiser state, running mean of the iterates or None)``."""
    key = unrolled(key)  # the same draws, hashed without JAX's rolled CPU loop

    def step(carry: tuple[Any, Any, Any], t: Array) -> tuple[tuple[Any, Any, Any], Any]:
        params, opt_state, mean = carry
        arguments = (params, jax.random.fold_in(key, t)) + ((t,) if pass_step else ())
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(*arguments)
        if every:
            tick(t, every, num_steps, 0, 1, True)
        params, opt_state = guarded_update(optimizer, params, opt_state, loss, grads)
        if average_from is not None:  # the running mean of the iterates from average_from on
            weight = 1.0 / jnp.maximum(t - average_from + 1, 1)  # 1 before: it tracks them

            def update(old: Any, new: Any) -> Any:
                if not eqx.is_inexact_array(new):
                    return new
                return old + weight.astype(new.dtype) * (new - old)

            mean = jax.tree.map(update, mean, params)
        return (params, opt_state, mean), (loss, aux)

    carry, (losses, aux) = jax.lax.scan(step, carry, start + jnp.arange(length))
    return carry, losses, aux


def minimise_lbfgs(
    loss_fn: Callable[[Any], Array],
    params: Any,
    num_steps: int,
    *,
    memory_size: int = 10,
    criterion: Callable[[Any], Array] | None = None,
    check_every: int = 1,
    loop_steps: int | None = None,
    stop_on_stall: bool = False,
    progress: bool = True,
    description: str = "",
) -> tuple[Any, Array]:
    """Minimise a deterministic ``loss_fn(params) -> loss`` by ``num_steps`` L-BFGS iterations.

    ``optax.lbfgs`` with its zoom line search, all iterations in one compiled ``lax.scan``;
    an iteration whose new loss or parameters are not finite is skipped (the parameters and
    the solver state stay). Pass ``loss_fn`` as an ``eqx.Module`` (or a module-level
    function) so that equal calls reuse the compiled loop. Returns the final parameters and
    the loss before each iteration.

    With ``criterion(params) -> scalar`` (a check that is not the loss, such as an error on
    held-out points), the starting point and every ``check_every``-th iterate (and the last)
    are scored, and the one with the smallest finite score is returned instead of the last.

    ``loop_steps`` (at least ``num_steps``) sets the compiled loop's length instead, and the
    iterations past ``num_steps`` are skipped: calls that differ only in ``num_steps`` then
    share one compiled loop (a continuation that runs 30 iterations, then 10 more at another
    setting, compiles once).

    ``stop_on_stall=True`` ends the run at the first iteration that does not lower the loss
    (its line search found no decrease, or the new loss is not finite), as SciPy's L-BFGS-B
    stops when its line search fails: that iteration's point is dropped (optax may accept
    a failed search's higher point), the remaining iterations are skipped (each would search
    its full 20 trial steps again, mostly in vain), and their entries in the returned losses
    repeat the final loss. Off by default, so that a loop whose later iterations recover
    (a noisy float32 loss) runs them.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.core.optimise import minimise_lbfgs
        >>> rosenbrock = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
        >>> x, losses = minimise_lbfgs(rosenbrock, jnp.zeros(2), 100, progress=False)
        >>> [round(float(v), 3) for v in x], losses.shape
        ([1.0, 1.0], (100,))
        >>> near_half = lambda p: jnp.sum((p - 0.5) ** 2)  # keep the iterate closest to 0.5
        >>> x, _ = minimise_lbfgs(rosenbrock, jnp.zeros(2), 100, criterion=near_half,
        ...                       progress=False)
        >>> bool(near_half(x) < 0.25)
        True
        >>> y, first = minimise_lbfgs(rosenbrock, jnp.zeros(2), 60, loop_steps=100,
        ...                           progress=False)
        >>> z, more = minimise_lbfgs(rosenbrock, y, 40, loop_steps=100,
        ...                          progress=False)  # runs the loop compiled for the first
        >>> first.shape, more.shape
        ((60,), (40,))
        >>> w, stalled = minimise_lbfgs(rosenbrock, jnp.zeros(2), 100, stop_on_stall=True,
        ...                             progress=False)  # stops at the minimum: no decrease
        >>> bool(stalled[-1] == stalled[-2]), [round(float(v), 3) for v in w]
        (True, [1.0, 1.0])
    """
    check_every = check_positive_int("check_every", check_every)
    if loop_steps is not None:
        loop_steps = check_positive_int("loop_steps", loop_steps)
        if loop_steps < num_steps:
            raise ArgumentError(
                f"loop_steps ({loop_steps}) must be at least num_steps ({num_steps}): it is "
                "the compiled loop's length, whose iterations past num_steps are skipped."
            )
    with ProgressBar(num_steps, enabled=progress, description=description) as bar:
        params, values = _lbfgs_scan(
            loss_fn, params, num_steps if loop_steps is None else jnp.int32(num_steps),
            num_steps if loop_steps is None else loop_steps, memory_size, bar.every,
            criterion, check_every, stop_on_stall,
        )  # fmt: skip
    return params, values[:num_steps]


@eqx.filter_jit
def _lbfgs_scan(
    loss_fn: Callable,
    params: Any,
    num_steps: int | Array,
    length: int,
    memory_size: int,
    every: int,
    criterion: Callable | None = None,
    check_every: int = 1,
    stop_on_stall: bool = False,
) -> tuple[Any, Array]:
    """``length`` iterations of which the first ``num_steps`` run (``num_steps`` traced: the
    rest are skipped by a ``lax.cond``; an int equal to ``length``: no cond); with
    ``stop_on_stall``, also every iteration after the first that did not lower the loss."""
    solver = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry: tuple[Any, ...], t: Array) -> tuple[tuple[Any, ...], Array]:
        run = None if isinstance(num_steps, int) else t < num_steps
        if stop_on_stall:
            run = ~carry[4] if run is None else run & ~carry[4]
        if run is None:
            return iteration(carry, t)
        return jax.lax.cond(run, iteration, skip, carry, t)

    def skip(carry: tuple[Any, ...], t: Array) -> tuple[tuple[Any, ...], Array]:
        value = jnp.asarray(optax.tree.get(carry[1], "value"), loss_dtype)
        return carry, value  # the loss at the parameters, which stay

    def iteration(carry: tuple[Any, ...], t: Array) -> tuple[tuple[Any, ...], Array]:
        params, state, best, best_score, stalled = carry
        value, grad = value_and_grad(params, state=state)
        updates, new_state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=loss_fn
        )
        new_params = optax.apply_updates(params, updates)
        if every:
            tick(t, every, num_steps, 0, 1, True)
        new_value = optax.tree.get(new_state, "value")
        keep = _all_finite((new_value, new_params))
        if stop_on_stall:  # no decrease (or not finite): keep the point before, and stop
            keep = keep & (new_value < value)
            stalled = ~keep
        params, state = _select(keep, (new_params, new_state), (params, state))
        if criterion is not None:
            due = ((t + 1) % check_every == 0) | (t == num_steps - 1) | stalled
            score = jax.lax.cond(
                due, lambda p: jnp.asarray(criterion(p), best_score.dtype),
                lambda p: jnp.asarray(jnp.inf, best_score.dtype), params,
            )  # fmt: skip
            better = score < best_score  # False for a NaN score
            best = jax.tree.map(lambda n, o: jnp.where(better, n, o), params, best)
            best_score = jnp.where(better, score, best_score)
        return (params, state, best, best_score, stalled), value

    loss_dtype = jax.eval_shape(loss_fn, params).dtype
    state = solver.init(params)
    score = jnp.asarray(jnp.inf) if criterion is None else jnp.asarray(criterion(params))
    score = jnp.where(jnp.isfinite(score), score, jnp.inf)
    carry = (params, state, params, score, jnp.zeros((), bool))
    (params, _, best, _, _), values = jax.lax.scan(step, carry, jnp.arange(length))
    return (params if criterion is None else best), values


__all__ = ["adam", "guarded_update", "keep_if_finite", "minimise_lbfgs", "optimise"]
