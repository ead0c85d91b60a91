"""optimise skips a step whose loss or gradient is not finite: the parameters and the
optimiser state stay as they were, and the other steps are the plain optax steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayescore.core.optimise import guarded_update, optimise


def test_non_finite_steps_leave_parameters_and_state_unchanged():
    bad_steps = {2, 5}

    def loss(params, key, t):
        value = jnp.sum((params - 3.0) ** 2)
        poisoned = jnp.isin(t, jnp.asarray(sorted(bad_steps)))
        return jnp.where(poisoned, jnp.nan, value), value

    adam = optax.adam(0.1)
    start = jnp.array([0.0, 1.0])
    params, losses, _ = optimise(
        loss, start, adam, jax.random.key(0), 8, pass_step=True, progress=False
    )
    # the same run by hand: optax's step where the loss is finite, nothing elsewhere
    expected, state = start, adam.init(start)
    for t in range(8):
        if t in bad_steps:
            continue
        grads = jax.grad(lambda p: jnp.sum((p - 3.0) ** 2))(expected)
        updates, state = adam.update(grads, state, expected)
        expected = optax.apply_updates(expected, updates)
    np.testing.assert_allclose(np.asarray(params), np.asarray(expected), rtol=1e-6)
    assert np.isnan(np.asarray(losses)[sorted(bad_steps)]).all()


def test_a_non_finite_gradient_alone_skips_the_step():
    adam = optax.adam(0.1)
    params = jnp.ones(2)
    state = adam.init(params)
    grads = jnp.array([1.0, jnp.inf])
    new_params, new_state = guarded_update(adam, params, state, jnp.float32(1.0), grads)
    np.testing.assert_array_equal(np.asarray(new_params), np.asarray(params))
    for new, old in zip(jax.tree.leaves(new_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    moved, _ = guarded_update(adam, params, state, jnp.float32(1.0), jnp.ones(2))
    assert not np.array_equal(np.asarray(moved), np.asarray(params))
