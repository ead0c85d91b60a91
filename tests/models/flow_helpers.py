"""Helpers shared by the flow and VI tests."""

import equinox as eqx
import jax


def perturbed(module, scale: float = 0.3, seed: int = 1):
    """``module`` with ``scale`` standard normal noise added to every array of weights (not to
    scalars): away from the identity a flow starts near, so every layer's Jacobian matters."""
    key = jax.random.key(seed)
    return jax.tree.map(
        lambda a: (
            a + scale * jax.random.normal(key, a.shape, a.dtype)
            if eqx.is_inexact_array(a) and a.ndim
            else a
        ),
        module,
    )
