r"""Planar and radial flows (Rezende & Mohamed 2015), invertible both ways.

- **Planar**: :math:`f(z) = z + \hat u\,\tanh(w^\top z + b)`, with
  :math:`\hat u = u + [m(w^\top u) - w^\top u]\,w/\|w\|^2`, :math:`m(x) = -1 + \log(1 + e^x)`,
  so that :math:`w^\top \hat u > -1` and :math:`f` is invertible (paper, Appendix A.1;
  :math:`\hat u` is singular at :math:`w = 0`, so keep :math:`\|w\|` away from 0).
  :math:`\log|\det J| = \log(1 + \hat u^\top w\,\tanh'(w^\top z + b))`. The inverse has no
  closed form: with :math:`a = w^\top z + b`, :math:`y = f(z)` gives the scalar equation
  :math:`a + (w^\top \hat u)\tanh(a) = w^\top y + b`, strictly increasing in :math:`a` and
  bracketed by :math:`w^\top y + b \pm |w^\top \hat u|`; it is solved by bisection and
  Newton, and differentiated by the implicit-function theorem (``jax.lax.custom_root``), not
  through the solver's loop. Then :math:`z = y - \hat u \tanh(a)`.
- **Radial**: :math:`f(z) = z + \beta h(r)(z - z_0)`, :math:`r = \|z - z_0\|`,
  :math:`h(r) = 1/(\alpha + r)`, with :math:`\alpha = \mathrm{softplus}(\tilde\alpha) > 0` and
  :math:`\beta = -\alpha + \mathrm{softplus}(\tilde\beta) > -\alpha` (invertible; the paper's
  condition is :math:`\beta \ge -\alpha`). :math:`\log|\det J| = (D-1)\log(1 + \beta h) +
  \log(1 + \beta h + \beta h'(r)\,r)`. The inverse is closed-form: the radius solves
  :math:`r + \beta r/(\alpha + r) = \|y - z_0\|`, a quadratic with one non-negative root.

Written by hand: flowjax's planar flow inverts only with a leaky-ReLU activation (and uses a
different :math:`m`), and no JAX library has a radial flow.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flowjax.bijections import AbstractBijection
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from bayescore.core.errors import check_positive_float, check_positive_int

NEWTON_STEPS = 3  # after bisection has shrunk the bracket to the last few ulps
BISECTION_STEPS = 60


def _m(x: Array) -> Array:
    """Rezende & Mohamed's :math:`m(x) = -1 + \\log(1 + e^x)`, onto :math:`(-1, \\infty)`."""
    return -1.0 + jax.nn.softplus(x)


class Planar(AbstractBijection):
    """The planar flow (see the module docstring); parameters unconstrained.

    Attributes:
        weight: :math:`w`, shape ``(dim,)``.
        scale: :math:`u` before the invertibility reparameterisation, shape ``(dim,)``.
        bias: :math:`b`, a scalar.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.flows import planar
        >>> flow = planar(jax.random.key(0), 3)
        >>> y, log_det = flow.transform_and_log_det(jnp.ones(3))
        >>> bool(jnp.allclose(flow.inverse(y), jnp.ones(3), atol=1e-5))
        True
    """

    weight: Array
    scale: Array
    bias: Array
    shape: tuple[int, ...]
    cond_shape: ClassVar[None] = None

    def _u_hat(self) -> Array:
        wu = self.weight @ self.scale
        norm = jnp.maximum(self.weight @ self.weight, jnp.finfo(self.weight.dtype).tiny)
        return self.scale + (_m(wu) - wu) * self.weight / norm

    def transform_and_log_det(self, x: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        u = self._u_hat()
        activation = jnp.tanh(self.weight @ x + self.bias)
        derivative = 1.0 - activation**2
        return x + u * activation, jnp.log1p(derivative * (u @ self.weight))

    def inverse_and_log_det(self, y: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        u = self._u_hat()
        wu = self.weight @ u  # > -1
        target = self.weight @ y + self.bias
        a = increasing_root(
            lambda a, wu, target: a + wu * jnp.tanh(a) - target,
            target - jnp.abs(wu),
            target + jnp.abs(wu),
            wu,
            target,
        )
        activation = jnp.tanh(a)
        x = y - u * activation
        return x, -jnp.log1p((1.0 - activation**2) * wu)


class Radial(AbstractBijection):
    """The radial flow (see the module docstring); parameters unconstrained.

    Attributes:
        centre: :math:`z_0`, shape ``(dim,)``.
        log_alpha: :math:`\\tilde\\alpha` (``alpha = softplus(log_alpha)``), a scalar.
        beta: :math:`\\tilde\\beta` (``beta = -alpha + softplus(beta)``), a scalar.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.flows import radial
        >>> flow = radial(jax.random.key(0), 2)
        >>> y, log_det = flow.transform_and_log_det(jnp.array([0.5, -1.0]))
        >>> bool(jnp.allclose(flow.inverse(y), jnp.array([0.5, -1.0]), atol=1e-5))
        True
    """

    centre: Array
    log_alpha: Array
    beta: Array
    shape: tuple[int, ...]
    cond_shape: ClassVar[None] = None

    def _alpha_beta(self) -> tuple[Array, Array]:
        alpha = jax.nn.softplus(self.log_alpha)
        return alpha, -alpha + jax.nn.softplus(self.beta)

    def _log_det(self, r: Array, alpha: Array, beta: Array) -> Array:
        h = 1.0 / (alpha + r)
        dim = self.shape[0]
        # 1 + βh + βh'r = 1 + βα/(α + r)²
        return (dim - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * alpha * h**2)

    def transform_and_log_det(self, x: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        alpha, beta = self._alpha_beta()
        offset = x - self.centre
        r = jnp.sqrt(jnp.sum(offset**2))
        return x + beta / (alpha + r) * offset, self._log_det(r, alpha, beta)

    def inverse_and_log_det(self, y: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        alpha, beta = self._alpha_beta()
        offset = y - self.centre
        r_y = jnp.sqrt(jnp.sum(offset**2))
        # r² + (α + β - r_y) r - α r_y = 0: the non-negative root, written without cancellation
        c = alpha + beta - r_y
        root = jnp.sqrt(c**2 + 4.0 * alpha * r_y)
        r = jnp.where(c < 0, (root - c) / 2.0, 2.0 * alpha * r_y / (root + c))
        x = self.centre + offset / (1.0 + beta / (alpha + r))
        return x, -self._log_det(r, alpha, beta)


def increasing_root(fn: Any, low: Array, high: Array, *args: Array) -> Array:
    """The root of ``fn(a, *args)``, increasing in ``a`` on ``[low, high]`` where it changes sign.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.flows.bijections import increasing_root
        >>> round(float(increasing_root(lambda a, c: a**3 - c, 0.0, 2.0, jnp.asarray(2.0))), 5)
        1.25992

    Bisection then Newton, inside ``jax.lax.custom_root``: derivatives with respect to
    ``args`` come from the implicit-function theorem, ``∂a = -∂fn/∂args / ∂fn/∂a``.
    """

    def solve(f: Any, guess: Array) -> Array:
        def bisect(_: int, bracket: tuple[Array, Array]) -> tuple[Array, Array]:
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            above = f(mid) > 0
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, bisect, (low, high))
        a = 0.5 * (lo + hi)
        for _ in range(NEWTON_STEPS):
            value, slope = jax.jvp(f, (a,), (jnp.ones_like(a),))
            a = jnp.clip(a - value / slope, lo, hi)
        return a

    def tangent_solve(g: Any, y: Array) -> Array:
        return y / g(1.0)

    return jax.lax.custom_root(lambda a: fn(a, *args), 0.5 * (low + high), solve, tangent_solve)


def planar(key: PRNGKeyArray, dim: int, *, init_scale: float = 0.1) -> Planar:
    """A planar flow on ``R^dim``: ``w`` of norm about 1, ``u`` of scale ``init_scale``.

    Example:
        >>> import jax
        >>> from bayescore.models.flows import planar
        >>> planar(jax.random.key(0), 4).shape
        (4,)
    """
    dim = check_positive_int("dim", dim)
    init_scale = check_positive_float("init_scale", init_scale, allow_zero=True)
    w_key, u_key = jax.random.split(key)
    # |w| near 1: the reparameterisation adds m(w·u) - w·u ≈ -0.31 times w/|w|², which
    # grows without bound as w -> 0.
    return Planar(
        weight=jax.random.normal(w_key, (dim,)) / jnp.sqrt(dim),
        scale=init_scale * jax.random.normal(u_key, (dim,)),
        bias=jnp.zeros(()),
        shape=(dim,),
    )


def radial(key: PRNGKeyArray, dim: int, *, init_scale: float = 0.1) -> Radial:
    """A radial flow on ``R^dim`` centred at a small random point.

    Example:
        >>> import jax
        >>> from bayescore.models.flows import radial
        >>> radial(jax.random.key(0), 2).shape
        (2,)
    """
    dim = check_positive_int("dim", dim)
    init_scale = check_positive_float("init_scale", init_scale, allow_zero=True)
    return Radial(
        centre=init_scale * jax.random.normal(key, (dim,)),
        log_alpha=jnp.zeros(()),
        beta=jnp.zeros(()),
        shape=(dim,),
    )


__all__ = ["Planar", "Radial", "increasing_root", "planar", "radial"]
