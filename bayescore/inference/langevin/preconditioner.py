r"""Preconditioning for Langevin samplers: a mass matrix and its factor, computed once.

With inverse mass matrix :math:`\Sigma` (an estimate of the posterior covariance) and its
factor :math:`L` (:math:`L L^\top = \Sigma`; the square root for a diagonal
:math:`\Sigma`), the samplers need :math:`\Sigma g` (preconditioned gradient, velocity),
:math:`L \xi \sim N(0, \Sigma)` (position noise), :math:`L^{-\top} \xi \sim N(0, \Sigma^{-1})`
(momentum), and :math:`r^\top \Sigma^{-1} r` (proposal densities). BlackJAX's metrics rebuild
the factor whenever they are called; here it is computed once per chain when warmup ends
(:meth:`WindowAdapted.prepare <bayescore.inference.adaptation.WindowAdapted.prepare>`), with
its inverse :math:`L^{-1}`, so the tuned transition does no decomposition, no triangular solve
and no division: only products. Written by hand for that reason; everything works on
the flattened position (``jax.flatten_util.ravel_pytree`` order, as in BlackJAX).

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.inference.langevin import preconditioner
    >>> p = preconditioner(jnp.array([[4.0, 0.0], [0.0, 1.0]]))
    >>> p.velocity(jnp.array([1.0, 1.0])).tolist(), float(p.mahalanobis(jnp.array([2.0, 1.0])))
    ([4.0, 1.0], 2.0)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray


class Preconditioner(NamedTuple):
    """An inverse mass matrix ``Σ`` (diagonal ``(d,)`` or dense ``(d, d)``) and its factors.

    Attributes:
        inverse_mass_matrix: ``Σ``.
        factor: ``L`` with ``L Lᵀ = Σ`` (lower Cholesky factor; elementwise square root of a
            diagonal ``Σ``).
        inverse_factor: ``L⁻¹`` (elementwise reciprocal for a diagonal ``Σ``).
    """

    inverse_mass_matrix: Array
    factor: Array
    inverse_factor: Array

    @property
    def dense(self) -> bool:
        return self.inverse_mass_matrix.ndim == 2

    def velocity(self, vector: Array) -> Array:
        """``Σ v``: the preconditioned gradient, or the velocity of momentum ``v``."""
        if self.dense:
            return self.inverse_mass_matrix @ vector
        return self.inverse_mass_matrix * vector

    def scale(self, noise: Array) -> Array:
        """``L ξ``: maps a standard normal ``ξ`` to a draw of ``N(0, Σ)``."""
        return self.factor @ noise if self.dense else self.factor * noise

    def position_noise(self, key: PRNGKeyArray, like: Array) -> Array:
        """A draw of ``N(0, Σ)`` shaped like ``like``."""
        return self.scale(jax.random.normal(key, like.shape, like.dtype))

    def momentum(self, key: PRNGKeyArray, like: Array) -> Array:
        """A draw of ``N(0, M)``, ``M = Σ⁻¹``, shaped like ``like``."""
        noise = jax.random.normal(key, like.shape, like.dtype)
        if self.dense:
            return self.inverse_factor.T @ noise
        return self.inverse_factor * noise

    def mahalanobis(self, vector: Array) -> Array:
        """``vᵀ Σ⁻¹ v``."""
        whitened = self.inverse_factor @ vector if self.dense else self.inverse_factor * vector
        return jnp.sum(whitened**2)

    def kinetic_energy(self, momentum: Array) -> Array:
        """``½ pᵀ Σ p``."""
        return 0.5 * jnp.dot(momentum, self.velocity(momentum))


def preconditioner(inverse_mass_matrix: Array) -> Preconditioner:
    """A :class:`Preconditioner` from an inverse mass matrix (Cholesky factor if dense).

    The dense inverse factor is a triangular solve against the identity, done once here.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.langevin import preconditioner
        >>> preconditioner(jnp.array([4.0, 9.0])).factor.tolist()
        [2.0, 3.0]
    """
    inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
    if inverse_mass_matrix.ndim == 2:
        factor = jnp.linalg.cholesky(inverse_mass_matrix)
        identity = jnp.eye(factor.shape[-1], dtype=factor.dtype)
        inverse_factor = jax.scipy.linalg.solve_triangular(factor, identity, lower=True)
    else:
        factor = jnp.sqrt(inverse_mass_matrix)
        inverse_factor = 1.0 / factor
    return Preconditioner(inverse_mass_matrix, factor, inverse_factor)
