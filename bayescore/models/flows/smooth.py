r"""Smooth (C^∞) mixture transformations on intervals and circles (Köhler, Krämer & Noé 2021).

Each coordinate of ``[0, 1]^d`` is mapped by its own monotone mixture of ``K`` components
(written here from the paper's construction; no JAX library ships it):

- smooth ramp :math:`\rho_\alpha(t) = \exp(-\alpha t^{-p})` for :math:`t > 0`, else 0
  (infinitely differentiable, all derivatives 0 at 0);
- generalised sigmoid :math:`\sigma(t) = \rho(t) / (\rho(t) + \rho(1 - t))`, a C^∞ bijection
  of ``[0, 1]`` (0 below, 1 above), evaluated stably as
  :math:`\mathrm{logistic}(\alpha[(1-t)^{-p} - t^{-p}])`;
- component :math:`g(x) = c\,\sigma(s(x - \mu)) + (1 - c)x`, strictly increasing for
  :math:`c < 1`;
- mixture :math:`f(x) = \sum_k \mathrm{softmax}(w)_k\, g_k(x)`, rescaled to
  :math:`(f(x) - f(0)) / (f(1) - f(0))` so that ``0 ↦ 0`` and ``1 ↦ 1``.

On the **circle** (``[0, 1)`` with its ends joined; an angle :math:`\theta` is
:math:`\theta / 2\pi`) each component is summed over the shifts :math:`\mu + k`,
:math:`k \in \{-1, 0, 1\}`. With the slope kept at :math:`s \ge 1` (a step no wider than the
circle) and :math:`\mu \in (0, 1)`, the derivative is the periodic sum
:math:`(1 - c) + cs\sum_{k \in \mathbb Z} \sigma'(s(x - \mu - k))`, so the map and all its
derivatives agree at 0 and 1: a diffeomorphism of the circle.

Parameters (per coordinate and component, unconstrained): ``weights`` (:math:`w`),
``shift`` (:math:`\mu = \mathrm{logistic}`), ``slope`` (:math:`s = e^{\cdot}`, on the circle
:math:`1 + \mathrm{softplus}`), ``mix`` (:math:`c = \epsilon + (1 - \epsilon)
\mathrm{logistic}`), ``log_alpha`` (:math:`\alpha = e^{\cdot}`); ``power`` :math:`p` is fixed.

The inverse has no closed form: each coordinate is found by bisection and Newton on
``[0, 1]``, and differentiated by the implicit-function theorem (``jax.lax.custom_root``),
never through the solver's loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from flowjax.bijections import AbstractBijection
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int
from bayescore.models.flows.bijections import increasing_root

MIX_FLOOR = 1e-3  # c <= 1 - MIX_FLOOR keeps every component strictly increasing
SHIFTS = (-1.0, 0.0, 1.0)  # the circle's copies of each component
PARAMETERS = ("weights", "shift", "slope", "mix", "log_alpha")


def generalised_sigmoid(t: Array, alpha: Array, power: int) -> Array:
    """:math:`\\rho(t)/(\\rho(t)+\\rho(1-t))` for the ramp :math:`\\exp(-\\alpha t^{-p})`.

    0 for ``t <= 0``, 1 for ``t >= 1``, C^∞ in between and at the ends (gradients are finite
    everywhere: the ends use the double-``where`` guard).

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.flows.smooth import generalised_sigmoid
        >>> generalised_sigmoid(jnp.array([-1.0, 0.5, 2.0]), 1.0, 1).tolist()
        [0.0, 0.5, 1.0]
    """
    inside = (t > 0.0) & (t < 1.0)
    safe = jnp.where(inside, t, 0.5)
    value = jax.nn.sigmoid(alpha * ((1.0 - safe) ** -power - safe**-power))
    return jnp.where(inside, value, jnp.where(t >= 1.0, 1.0, 0.0))


def spread_shifts(num_components: int) -> Array:
    """Unconstrained shifts placing component ``k`` at :math:`(k + 1/2)/K` (logit of it).

    Example:
        >>> from bayescore.models.flows.smooth import spread_shifts
        >>> tuple(round(float(s), 3) for s in spread_shifts(2))
        (-1.099, 1.099)
    """
    centres = (jnp.arange(num_components) + 0.5) / num_components
    return jnp.log(centres) - jnp.log1p(-centres)


class SmoothMixture(AbstractBijection):
    """Elementwise smooth mixture transformation of ``[0, 1]^d`` or the torus (see module).

    Attributes:
        weights, shift, slope, mix, log_alpha: unconstrained parameters, shape
            ``(dim, num_components)``.
        power: the ramp's exponent :math:`p` (static).
        circular: ``True`` for the torus (angles in ``[0, 1)``), ``False`` for the cube.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.flows import smooth_mixture
        >>> flow = smooth_mixture(jax.random.key(0), 2, num_components=4, circular=True)
        >>> y, log_det = flow.transform_and_log_det(jnp.array([0.1, 0.9]))
        >>> bool(jnp.allclose(flow.inverse(y), jnp.array([0.1, 0.9]), atol=1e-5))
        True
    """

    weights: Array
    shift: Array
    slope: Array
    mix: Array
    log_alpha: Array
    power: int = eqx.field(static=True)
    circular: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def _unit_map(self, x: Array, params: tuple[Array, ...]) -> Array:
        """One coordinate's mixture at ``x`` (before rescaling), parameters of shape (K,)."""
        weights, shift, slope, mix, log_alpha = params
        centre = jax.nn.sigmoid(shift)
        width = 1.0 + jax.nn.softplus(slope) if self.circular else jnp.exp(slope)
        c = MIX_FLOOR + (1.0 - 2.0 * MIX_FLOOR) * jax.nn.sigmoid(mix)
        alpha = jnp.exp(log_alpha)
        offsets = jnp.asarray(SHIFTS if self.circular else (0.0,), x.dtype)
        steps = generalised_sigmoid(
            width[:, None] * (x - centre[:, None] - offsets[None, :]), alpha[:, None], self.power
        )
        component = c * jnp.sum(steps, axis=1) + (1.0 - c) * x  # one step per period
        return jnp.sum(jax.nn.softmax(weights) * component)

    def _scalar(self, x: Array, params: tuple[Array, ...]) -> Array:
        """One coordinate's map, rescaled so that 0 ↦ 0 and 1 ↦ 1."""
        low = self._unit_map(jnp.zeros_like(x), params)
        high = self._unit_map(jnp.ones_like(x), params)
        return (self._unit_map(x, params) - low) / (high - low)

    def _params(self) -> tuple[Array, ...]:
        return (self.weights, self.shift, self.slope, self.mix, self.log_alpha)

    def _forward_one(self, x: Array, *params: Array) -> tuple[Array, Array]:
        y, slope = jax.jvp(lambda x: self._scalar(x, params), (x,), (jnp.ones_like(x),))
        return y, jnp.log(slope)

    def transform_and_log_det(self, x: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        y, log_slopes = jax.vmap(self._forward_one)(x, *self._params())
        return y, jnp.sum(log_slopes)

    def inverse_and_log_det(self, y: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        def one(y: Array, *params: Array) -> tuple[Array, Array]:
            x = increasing_root(
                lambda x, y, *params: self._scalar(x, params) - y,
                jnp.zeros_like(y),
                jnp.ones_like(y),
                y,
                *params,
            )
            return x, -self._forward_one(x, *params)[1]

        x, log_dets = jax.vmap(one)(y, *self._params())
        return x, jnp.sum(log_dets)


def smooth_mixture(
    key: PRNGKeyArray,
    dim: int,
    *,
    num_components: int = 8,
    circular: bool = False,
    power: int = 1,
    init_scale: float = 0.1,
) -> SmoothMixture:
    """A smooth mixture transformation of ``[0, 1]^dim`` (or the torus), near the identity.

    Args:
        key: draws the small random initial parameters.
        dim: coordinates.
        num_components: ``K`` mixture components per coordinate.
        circular: ``True`` for angles on the circle (in ``[0, 1)``; divide radians by
            :math:`2\\pi`).
        power: the ramp exponent ``p`` (a positive integer).
        init_scale: the scale of the random initial parameters.

    Example:
        >>> import jax
        >>> from bayescore.models.flows import smooth_mixture
        >>> smooth_mixture(jax.random.key(0), 3, num_components=5).weights.shape
        (3, 5)
    """
    dim = check_positive_int("dim", dim)
    num_components = check_positive_int("num_components", num_components)
    power = check_positive_int("power", power)
    init_scale = check_positive_float("init_scale", init_scale, allow_zero=True)
    if not isinstance(circular, bool):
        raise ArgumentError(f"circular must be True or False, got {circular!r}.")
    keys = jax.random.split(key, 5)
    shape = (dim, num_components)
    noise = [init_scale * jax.random.normal(k, shape) for k in keys]
    noise[PARAMETERS.index("shift")] += spread_shifts(num_components)
    return SmoothMixture(
        *noise,
        power=power,
        circular=circular,
        shape=(dim,),
    )


class SmoothCoupling(AbstractBijection):
    r"""A coupling layer whose transformer is a :class:`SmoothMixture` (Köhler et al. 2021).

    The first ``untransformed_dim`` coordinates :math:`x_{1:k}` pass through; the rest are
    mapped by a smooth mixture whose parameters an MLP computes from features of
    :math:`x_{1:k}` (and the context ``condition``, if any):
    :math:`(\cos 2\pi x, \sin 2\pi x)` on the torus, so the map is smooth across the seam,
    :math:`2x - 1` on the cube. :math:`\log|\det J|` is the transformer's. The inverse root-finds
    each transformed coordinate (see :class:`SmoothMixture`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.flows import SmoothCoupling
        >>> layer = SmoothCoupling(jax.random.key(0), dim=2, untransformed_dim=1, circular=True)
        >>> y, log_det = layer.transform_and_log_det(jnp.array([0.3, 0.7]))
        >>> bool(jnp.allclose(layer.inverse(y), jnp.array([0.3, 0.7]), atol=1e-5))
        True
    """

    conditioner: eqx.nn.MLP
    untransformed_dim: int = eqx.field(static=True)
    num_components: int = eqx.field(static=True)
    power: int = eqx.field(static=True)
    circular: bool = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        key: PRNGKeyArray,
        *,
        dim: int,
        untransformed_dim: int,
        cond_dim: int | None = None,
        circular: bool = False,
        num_components: int = 8,
        power: int = 1,
        nn_width: int = 64,
        nn_depth: int = 2,
        nn_activation: Any = jax.nn.gelu,
        init_scale: float = 0.1,
    ) -> None:
        dim = check_positive_int("dim", dim)
        untransformed_dim = check_positive_int(
            "untransformed_dim", untransformed_dim, allow_zero=True
        )
        if untransformed_dim >= dim:
            raise ArgumentError(
                f"untransformed_dim must be below dim={dim}, got {untransformed_dim}: at least "
                "one coordinate has to be transformed."
            )
        if untransformed_dim == 0 and cond_dim is None:
            raise ArgumentError(
                "a coupling layer with untransformed_dim=0 needs a condition (cond_dim); use "
                "smooth_mixture for an unconditional elementwise map."
            )
        if cond_dim is not None:
            cond_dim = check_positive_int("cond_dim", cond_dim)
        self.untransformed_dim = untransformed_dim
        self.num_components = check_positive_int("num_components", num_components)
        self.power = check_positive_int("power", power)
        self.circular = bool(circular)
        self.shape = (dim,)
        self.cond_shape = None if cond_dim is None else (cond_dim,)
        features = untransformed_dim * (2 if self.circular else 1) + (cond_dim or 0)
        mlp = eqx.nn.MLP(
            in_size=features,
            out_size=len(PARAMETERS) * (dim - untransformed_dim) * self.num_components,
            width_size=check_positive_int("nn_width", nn_width),
            depth=check_positive_int("nn_depth", nn_depth),
            activation=nn_activation,
            key=key,
        )
        # A small last layer starts every layer near one fixed mixture, whose components
        # are spread evenly over the interval, so that their sum is close to the identity.
        last = mlp.layers[-1]
        moved = dim - untransformed_dim
        offset = jnp.zeros((len(PARAMETERS), moved, self.num_components))
        offset = offset.at[PARAMETERS.index("shift")].set(spread_shifts(self.num_components))
        self.conditioner = eqx.tree_at(
            lambda m: (m.layers[-1].weight, m.layers[-1].bias),
            mlp,
            (init_scale * last.weight, init_scale * last.bias + offset.reshape(-1)),
        )

    def _transformer(self, kept: Array, condition: Array | None) -> SmoothMixture:
        if self.circular:
            angle = 2.0 * jnp.pi * kept
            features = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)])
        else:
            features = 2.0 * kept - 1.0
        if condition is not None:
            features = jnp.concatenate([features, condition])
        moved = self.shape[0] - self.untransformed_dim
        params = self.conditioner(features).reshape(len(PARAMETERS), moved, self.num_components)
        return SmoothMixture(*params, power=self.power, circular=self.circular, shape=(moved,))

    def transform_and_log_det(self, x: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        kept, moved = x[: self.untransformed_dim], x[self.untransformed_dim :]
        y, log_det = self._transformer(kept, condition).transform_and_log_det(moved)
        return jnp.concatenate([kept, y]), log_det

    def inverse_and_log_det(self, y: ArrayLike, condition: Any = None) -> tuple[Array, Array]:
        kept, moved = y[: self.untransformed_dim], y[self.untransformed_dim :]
        x, log_det = self._transformer(kept, condition).inverse_and_log_det(moved)
        return jnp.concatenate([kept, x]), log_det


__all__ = [
    "SmoothCoupling",
    "SmoothMixture",
    "generalised_sigmoid",
    "smooth_mixture",
    "spread_shifts",
]
