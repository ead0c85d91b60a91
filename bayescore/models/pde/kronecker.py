r"""Kronecker algebra on tensor grids: covariance solves, log-determinants, derivative operators.

On a grid :math:`X = X_1 \times \dots \times X_D` with :math:`M = \prod_j M_j` points, a
product kernel :math:`k(x, x') = \prod_j k_j(x_j, x_j')` has the covariance
:math:`C = K_1 \otimes \dots \otimes K_D`. With lower Cholesky factors
:math:`K_j + \epsilon I = L_j L_j^\top` (computed once per kernel update, :math:`O(\sum_j
M_j^3)`), and :math:`\mathcal U` the grid values as a ``(M_1, ..., M_D)`` array:

- :math:`C^{-1}\operatorname{vec}\mathcal U = \operatorname{vec}(\mathcal U \times_1 K_1^{-1}
  \dots \times_D K_D^{-1})`, where :math:`\times_j` is the mode-:math:`j` product (a matrix
  applied along axis :math:`j`), :math:`O(M \sum_j M_j)`;
- :math:`\log|C| = \sum_j (M / M_j) \log|K_j|`;
- :math:`\operatorname{vec}(\mathcal U)^\top C^{-1}\operatorname{vec}\mathcal U =
  \|\mathcal U \times_1 L_1^{-1} \dots \times_D L_D^{-1}\|^2`;
- derivatives of the GP conditional mean on the grid, e.g.
  :math:`\partial_{x_j}^n u = \mathcal U \times_j (K_j^{(n)} K_j^{-1})` with
  :math:`[K_j^{(n)}]_{ab} = \partial^n k_j(x_a, x_b)/\partial x_a^n`.

The dense :math:`M \times M` matrix is never formed (except by :meth:`KroneckerCholesky.dense`,
for tests). Fang et al. (2024), Sec. 4 and poster panel 3; Saatçi (2012), Ch. 5.

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.models.pde import kronecker_cholesky
    >>> grams = [jnp.array([[2.0, 0.5], [0.5, 1.0]]), jnp.array([[1.0, 0.2], [0.2, 3.0]])]
    >>> gram = kronecker_cholesky(grams)
    >>> dense = jnp.kron(grams[0], grams[1])
    >>> bool(jnp.allclose(gram.logdet(), jnp.linalg.slogdet(dense)[1], atol=1e-5))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from bayescore.core.errors import ShapeError


def mode_product(matrix: Float[Array, "n m"], tensor: Array, axis: int) -> Array:
    r"""The mode-``axis`` product :math:`\mathcal T \times_j A`: ``matrix`` applied along ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde.kronecker import mode_product
        >>> mode_product(2 * jnp.eye(3), jnp.ones((2, 3)), axis=1).tolist()
        [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """
    return jnp.moveaxis(jnp.tensordot(matrix, tensor, axes=(1, axis)), 0, axis)


def kronecker_apply(matrices: Sequence[Array | None], tensor: Array) -> Array:
    r""":math:`(A_1 \otimes \dots \otimes A_D)\operatorname{vec}\mathcal T`, reshaped; ``None``
    stands for the identity.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde.kronecker import kronecker_apply
        >>> a, b, t = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.eye(3), jnp.ones((2, 3))
        >>> bool(jnp.allclose(kronecker_apply([a, b], t).ravel(), jnp.kron(a, b) @ t.ravel()))
        True
    """
    for axis, matrix in enumerate(matrices):
        if matrix is not None:
            tensor = mode_product(matrix, tensor, axis)
    return tensor


class KroneckerCholesky(eqx.Module):
    r"""The covariance :math:`C = \bigotimes_j L_j L_j^\top` through its per-dimension factors.

    Attributes:
        factors: lower-triangular :math:`L_j`, one ``(M_j, M_j)`` matrix per dimension.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import kronecker_cholesky
        >>> gram = kronecker_cholesky([4.0 * jnp.eye(2), jnp.eye(3)])
        >>> gram.solve(jnp.ones((2, 3)))[0, 0].item(), gram.quadratic(jnp.ones((2, 3))).item()
        (0.25, 1.5)
    """

    factors: tuple[Float[Array, "m m"], ...]

    @property
    def shape(self) -> tuple[int, ...]:
        r"""The grid shape :math:`(M_1, \dots, M_D)`."""
        return tuple(factor.shape[0] for factor in self.factors)

    def _check(self, values: Array) -> None:
        if values.shape != self.shape:
            raise ShapeError(
                f"values have shape {values.shape}, but the grid has shape {self.shape}. Pass "
                "an array with one entry per grid point, axes in the grid's dimension order."
            )

    def solve(self, values: Float[Array, "*grid"]) -> Float[Array, "*grid"]:
        r""":math:`C^{-1}\operatorname{vec}\mathcal U`, by triangular solves along each axis."""
        return self.backsolve(self.whiten(values))

    def backsolve(self, whitened: Float[Array, "*grid"]) -> Float[Array, "*grid"]:
        r""":math:`(\bigotimes_j L_j)^{-\top}\operatorname{vec}\mathcal Z`, so that
        ``backsolve(whiten(U))`` is :math:`C^{-1}\operatorname{vec}\mathcal U`."""
        self._check(whitened)
        for axis, factor in enumerate(self.factors):
            whitened = _along(
                lambda b, f=factor: jsl.solve_triangular(f, b, lower=True, trans=1), whitened, axis
            )
        return whitened

    def whiten(self, values: Float[Array, "*grid"]) -> Float[Array, "*grid"]:
        r""":math:`(\bigotimes_j L_j)^{-1}\operatorname{vec}\mathcal U`."""
        self._check(values)
        for axis, factor in enumerate(self.factors):
            values = _along(
                lambda b, f=factor: jsl.solve_triangular(f, b, lower=True), values, axis
            )
        return values

    def color(self, whitened: Float[Array, "*grid"]) -> Float[Array, "*grid"]:
        r""":math:`(\bigotimes_j L_j)\operatorname{vec}\mathcal Z`: white noise to a prior draw."""
        self._check(whitened)
        return kronecker_apply(self.factors, whitened)

    def logdet(self) -> Float[Array, ""]:
        r""":math:`\log|C| = \sum_j (M/M_j)\cdot 2\sum_a \log [L_j]_{aa}`."""
        size = 1
        for m in self.shape:
            size *= m
        return sum(
            (size // factor.shape[0]) * 2.0 * jnp.sum(jnp.log(jnp.diagonal(factor)))
            for factor in self.factors
        )

    def quadratic(self, values: Float[Array, "*grid"]) -> Float[Array, ""]:
        r""":math:`\operatorname{vec}(\mathcal U)^\top C^{-1}\operatorname{vec}\mathcal U`."""
        return jnp.sum(self.whiten(values) ** 2)

    def dense(self) -> Float[Array, "M M"]:
        r"""The dense :math:`M \times M` covariance (for tests on small grids only)."""
        out = jnp.ones((1, 1))
        for factor in self.factors:
            out = jnp.kron(out, factor @ factor.T)
        return out

    def derivative_operator(
        self, axis: int, gram_derivative: Float[Array, "m m"]
    ) -> Float[Array, "m m"]:
        r""":math:`K_j^{(n)} K_j^{-1}` for the dimension ``axis``, given :math:`K_j^{(n)}`.

        Applied along ``axis`` (:func:`mode_product`) it maps grid values to the
        :math:`n`-th derivative of the GP conditional mean at the grid points.
        """
        factor = self.factors[axis]
        return jsl.cho_solve((factor, True), gram_derivative.T).T


def _along(solve: object, values: Array, axis: int) -> Array:
    """Apply a linear solve ``(m, k) -> (m, k)`` to every fibre of ``values`` along ``axis``."""
    moved = jnp.moveaxis(values, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    return jnp.moveaxis(solve(flat).reshape(moved.shape), 0, axis)  # type: ignore[operator]


def kronecker_cholesky(
    grams: Sequence[Float[Array, "m m"]], jitter: float = 0.0
) -> KroneckerCholesky:
    r"""Factor :math:`K_j + \epsilon I = L_j L_j^\top` for each dimension.

    Args:
        grams: the per-dimension covariance matrices :math:`K_j`.
        jitter: :math:`\epsilon` added to each diagonal (GP-HM uses ``1e-6`` in float64).

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import kronecker_cholesky
        >>> kronecker_cholesky([jnp.eye(2), jnp.eye(4)]).shape
        (2, 4)
    """
    factors = []
    for gram in grams:
        gram = jnp.asarray(gram)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ShapeError(
                f"each gram matrix must be square (M_j, M_j), got shape {gram.shape}. Pass one "
                "kernel matrix per grid dimension."
            )
        eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
        factors.append(jnp.linalg.cholesky(0.5 * (gram + gram.T) + jitter * eye))
    return KroneckerCholesky(tuple(factors))


__all__ = ["KroneckerCholesky", "kronecker_apply", "kronecker_cholesky", "mode_product"]
