r"""A flow's score at its own draws, carried through the layers while sampling: no inverse.

For a layer :math:`x_{l+1} = T_l(x_l)` with Jacobian :math:`J_l`,
:math:`\log q_{l+1}(x_{l+1}) = \log q_l(x_l) - \log|\det J_l(x_l)|`, so the score
:math:`g_l = \nabla_x \log q_l(x_l)` obeys

.. math:: g_{l+1} = \bigl(g_l - \nabla_x \log|\det J_l(x_l)|\bigr)\, J_l^{-1}

(Vaitl, Winkler, Richter & Kessel 2024, Algorithm 1). :func:`sample_with_score` runs this
recursion beside the sampling pass, from the base's score, so the path gradient of a
flow (:func:`bayescore.inference.vi.fast_path`) needs neither the inverse pass nor
``log_prob`` at the draws. The row-vector solve :math:`v J_l = w` is taken per layer from its
structure:

- permutations, flips, identities: the same permutation of :math:`w`;
- elementwise layers (affine, spline, exp, softplus, sigmoid, tanh, power, smooth
  mixtures): division by the diagonal, taken as one JVP;
- coupling layers (flowjax's ``Coupling``, :class:`~bayescore.models.flows.SmoothCoupling`):
  the transformed block by division, then the kept block by one VJP through the
  conditioner, so a coupling layer costs about one extra backward pass of its network;
- ``Chain``, ``Scan``, ``Invert`` and ``NumericalInverse`` of these: recursively (an
  inverted layer in its inverse direction);
- planar and radial layers (the identity plus a rank-one term): Sherman–Morrison in
  closed form; triangular affine layers: a triangular solve;
- any other layer taken in its inverse direction (a MAF or BNAF sampled through its
  sequential or root-found inverse, planar and radial layers inverted): no solve at all. For
  :math:`y = G^{-1}(x)` with :math:`G` the layer's explicit forward map,
  :math:`J_{G^{-1}}^{-1} = J_G(y)` and :math:`\nabla_x \log|\det J_{G^{-1}}|\,J_G =
  -\nabla_y \log|\det J_G(y)|`, so the new score is one VJP,
  :math:`g_{l+1} = g_l J_G(y) + \nabla_y \log|\det J_G(y)|`, at the point the inverse
  returned;
- autoregressive layers in their parallel direction (flowjax's ``MaskedAutoregressive``,
  ``BlockAutoregressiveNetwork``: the IAF direction): the lower-triangular Jacobian and
  :math:`\nabla\log|\det J|` from one forward-mode pass of :math:`d` tangents, then a
  triangular solve; :math:`O(d)` network passes, batched;
- any other layer: its dense Jacobian and :math:`\nabla\log|\det J|` by one ``jax.jacfwd``
  and a linear solve; exact, but not fast for large :math:`d`.

Written here: the reference implementation is PyTorch and hand-written per layer; no JAX
library propagates the score through flowjax bijections.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as linalg
import paramax
from flowjax.bijections import (
    Affine,
    BlockAutoregressiveNetwork,
    Chain,
    Coupling,
    Exp,
    Flip,
    Identity,
    Invert,
    LeakyTanh,
    Loc,
    MaskedAutoregressive,
    NumericalInverse,
    Permute,
    Power,
    RationalQuadraticSpline,
    Scale,
    Scan,
    Sigmoid,
    SoftPlus,
    Tanh,
    TriangularAffine,
)
from flowjax.distributions import AbstractDistribution, AbstractTransformed
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from bayescore.core.errors import ArgumentError, check_positive_int
from bayescore.models.flows.bijections import Planar, Radial
from bayescore.models.flows.smooth import SmoothCoupling, SmoothMixture

ELEMENTWISE = (
    Affine,
    Exp,
    LeakyTanh,
    Loc,
    Power,
    RationalQuadraticSpline,
    Scale,
    Sigmoid,
    SmoothMixture,
    SoftPlus,
    Tanh,
)
COUPLING = (Coupling, SmoothCoupling)
AUTOREGRESSIVE = (BlockAutoregressiveNetwork, MaskedAutoregressive)  # lower-triangular J


def sample_with_score(
    flow: AbstractDistribution,
    key: PRNGKeyArray,
    sample_shape: tuple[int, ...] = (),
    condition: ArrayLike | None = None,
) -> tuple[Array, Array, Array]:
    """Draws ``x`` of ``flow`` with :math:`\\log q(x)` and the score :math:`\\nabla_x \\log q(x)`.

    The draws equal ``flow.sample(key, sample_shape, condition)``. ``flow`` is a flowjax
    ``Transformed`` distribution (every flow in :mod:`bayescore.models.flows`, and the
    ``vi`` families); a distribution with no bijection gets its score from ``log_prob``. The
    score is not differentiated (it is behind ``stop_gradient``): it is what a path-gradient
    estimator holds fixed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import StandardNormal
        >>> from bayescore.models import flows
        >>> flow = flows.coupling_flow(jax.random.key(0), base_dist=StandardNormal((2,)))
        >>> x, log_q, score = flows.sample_with_score(flow, jax.random.key(1), (3,))
        >>> exact = jax.vmap(jax.grad(flow.log_prob))(x)
        >>> bool(jnp.allclose(score, exact, atol=1e-4)), score.shape
        (True, (3, 2))
    """
    flow = paramax.unwrap(flow)
    if not isinstance(flow, AbstractDistribution) or len(flow.shape) != 1:
        raise ArgumentError(
            "flow must be a flowjax distribution over vectors (shape (d,)), got "
            f"{type(flow).__name__} of shape {getattr(flow, 'shape', None)}."
        )
    if flow.cond_shape is not None:
        condition = jnp.asarray(condition)
        if condition.shape != flow.cond_shape:
            raise ArgumentError(
                f"condition must have shape {flow.cond_shape} (one condition for all draws), "
                f"got {condition.shape}."
            )
    elif condition is not None:
        raise ArgumentError(
            "condition must be None: the flow is unconditional (its cond_shape is None), got "
            f"an array of shape {jnp.shape(condition)}."
        )
    if not isinstance(sample_shape, (tuple, list)):
        raise ArgumentError(
            f"sample_shape must be a tuple of sizes, e.g. (100,), got {sample_shape!r}."
        )
    sample_shape = tuple(
        check_positive_int("sample_shape", size, allow_zero=True) for size in sample_shape
    )
    keys = flow._get_sample_keys(key, sample_shape, condition)
    x, log_q, score = _sample_many(flow, keys.reshape(-1), condition)
    shape = tuple(sample_shape)
    return (
        x.reshape(*shape, -1),
        log_q.reshape(shape),
        jax.lax.stop_gradient(score).reshape(*shape, -1),
    )


@eqx.filter_jit
def _sample_many(flow: AbstractDistribution, keys: Array, condition: Any) -> tuple:
    return jax.vmap(lambda key: _sample_one(flow, key, condition))(keys)


def _sample_one(flow: AbstractDistribution, key: PRNGKeyArray, condition: Any) -> tuple:
    if not isinstance(flow, AbstractTransformed):
        x = flow._sample(key, condition)
        log_q, score = jax.value_and_grad(lambda x: flow._log_prob(x, condition))(x)
        return x, log_q, score
    base = flow.base_dist
    base_condition = condition if base.cond_shape is not None else None
    x0 = base._sample(key, base_condition)
    log_q0, g0 = jax.value_and_grad(lambda x: base._log_prob(x, base_condition))(x0)
    bij_condition = condition if flow.bijection.cond_shape is not None else None
    x, log_det, g = push(flow.bijection, x0, g0, bij_condition)
    return x, log_q0 - log_det, g


def push(
    bijection: Any, x: Array, score: Array, condition: Any = None, inverse: bool = False
) -> tuple[Array, Array, Array]:
    """``(T(x), log|det J_T(x)|, score of the pushed density at T(x))`` for one point.

    ``T`` is ``bijection.transform`` (``inverse=False``) or ``bijection.inverse``;
    ``score`` is the score of the density at ``x``. See the module for the per-layer rules.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowjax.bijections import Affine
        >>> from bayescore.models.flows.score import push
        >>> y, log_det, g = push(Affine(jnp.ones(1), 2.0), jnp.array([0.5]), jnp.array([-0.5]))
        >>> float(y[0]), float(g[0])  # N(0, 1) pushed by 1 + 2x is N(1, 4): score (1 - y)/4
        (2.0, -0.25)
    """
    if isinstance(bijection, Chain):
        layers = bijection.bijections[::-1] if inverse else bijection.bijections
        log_det = jnp.zeros((), x.dtype)
        for layer in layers:
            x, layer_log_det, score = push(layer, x, score, condition, inverse)
            log_det = log_det + layer_log_det
        return x, log_det, score
    if isinstance(bijection, Scan):
        return _push_scan(bijection, x, score, condition, inverse)
    if isinstance(bijection, Invert):
        return push(bijection.bijection, x, score, condition, not inverse)
    if isinstance(bijection, NumericalInverse) and not inverse:  # the forward is its layer's
        return push(bijection.bijection, x, score, condition)
    if isinstance(bijection, Identity):
        return x, jnp.zeros((), x.dtype), score
    if isinstance(bijection, (Permute, Flip)):
        y, log_det = _map(bijection, inverse)(x, condition)
        moved, _ = _map(bijection, inverse)(score, condition)  # v_i = w_{p(i)}: same permutation
        return y, log_det, moved
    if not inverse and isinstance(bijection, (Planar, Radial, TriangularAffine)):
        return _RANK_ONE[type(bijection)](bijection, x, score)
    forward = _map(bijection, inverse)
    if isinstance(bijection, ELEMENTWISE):
        return _push_elementwise(lambda x: forward(x, condition), x, score)
    if isinstance(bijection, Coupling) and bijection.cond_shape is None:
        return _push_flowjax_coupling(bijection, x, score, inverse)
    if isinstance(bijection, COUPLING):
        return _push_coupling(forward, bijection.untransformed_dim, x, score, condition)
    if inverse:
        return _push_inverse(bijection, x, score, condition)
    if isinstance(bijection, AUTOREGRESSIVE):
        return _push_dense(lambda x: forward(x, condition), x, score, triangular=True)
    return _push_dense(lambda x: forward(x, condition), x, score)


def _map(bijection: Any, inverse: bool) -> Any:
    return bijection.inverse_and_log_det if inverse else bijection.transform_and_log_det


def _slopes(forward: Any, x: Array) -> tuple[Array, Array]:
    """Diagonal :math:`y'` and :math:`\\partial_x \\log y'` of an elementwise map, forward mode."""
    ones = jnp.ones_like(x)
    slope = lambda x: jax.jvp(lambda x: forward(x)[0], (x,), (ones,))[1]  # noqa: E731
    diagonal, curvature = jax.jvp(slope, (x,), (ones,))
    return jax.lax.stop_gradient(diagonal), jax.lax.stop_gradient(curvature / diagonal)


def _push_elementwise(forward: Any, x: Array, score: Array) -> tuple[Array, Array, Array]:
    y, log_det = forward(x)
    diagonal, grad_log_det = _slopes(forward, x)
    return y, log_det, (score - grad_log_det) / diagonal


def _push_coupling(
    forward: Any, kept_dim: int, x: Array, score: Array, condition: Any
) -> tuple[Array, Array, Array]:
    """``y = (x_k, τ(x_m; c(x_k)))``: solve the moved block by division, the kept by a VJP.

    One pass of the conditioner serves the draw, the slopes and the VJP.
    """
    kept, moved = x[:kept_dim], x[kept_dim:]

    def moved_part(kept: Array) -> tuple[Array, Array, tuple[Array, Array]]:
        def forward_moved(moved: Array) -> tuple[Array, Array]:
            y, log_det = forward(jnp.concatenate([kept, moved]), condition)
            return y[kept_dim:], log_det

        y_moved, log_det = forward_moved(moved)
        return y_moved, log_det, _slopes(forward_moved, moved)

    return _solve_coupling(moved_part, kept, score)


def _push_flowjax_coupling(
    layer: Coupling, x: Array, score: Array, inverse: bool
) -> tuple[Array, Array, Array]:
    """flowjax's coupling: the transformer is a ``Vmap`` of a scalar bijection, so one JVP per
    element gives both :math:`y'` and :math:`(\\log|y'|)'`."""
    kept_dim = layer.untransformed_dim
    kept, moved = x[:kept_dim], x[kept_dim:]

    def moved_part(kept: Array) -> tuple[Array, Array, tuple[Array, Array]]:
        transformer = layer._flat_params_to_transformer(layer.conditioner(kept))

        def one(scalar: Any, m: Array, _: None) -> tuple[Array, Array, Array, Array]:
            (y, log_det), (slope, d_log_det) = jax.jvp(
                _map(scalar, inverse), (m,), (jnp.ones_like(m),)
            )
            return y, log_det, slope, d_log_det

        y, log_dets, slope, d_log_det = transformer.vmap(one)(transformer.bijection, moved, None)
        slopes = jax.lax.stop_gradient((slope, d_log_det))
        return y, jnp.sum(log_dets), slopes

    return _solve_coupling(moved_part, kept, score)


def _solve_coupling(moved_part: Any, kept: Array, score: Array) -> tuple[Array, Array, Array]:
    kept_dim = kept.shape[0]
    (y_moved, log_det, (diagonal, grad_moved)), vjp = jax.vjp(moved_part, kept)
    v_moved = (score[kept_dim:] - grad_moved) / diagonal
    zeros = (jnp.zeros_like(diagonal), jnp.zeros_like(grad_moved))
    (through_kept,) = vjp((v_moved, jnp.ones_like(log_det), zeros))
    v_kept = score[:kept_dim] - through_kept
    return (
        jnp.concatenate([kept, y_moved]),
        log_det,
        jax.lax.stop_gradient(jnp.concatenate([v_kept, v_moved])),
    )


def _push_dense(
    forward: Any, x: Array, score: Array, triangular: bool = False
) -> tuple[Array, Array, Array]:
    """:math:`J` and :math:`\\nabla\\log|\\det J|` from one ``jacfwd``; ``triangular``: a lower
    :math:`J`, solved by back substitution, else a dense solve."""
    y, log_det = forward(x)
    jacobian, grad_log_det = jax.jacfwd(forward)(jax.lax.stop_gradient(x))
    if triangular:
        solved = linalg.solve_triangular(jacobian.T, score - grad_log_det, lower=False)
    else:
        solved = jnp.linalg.solve(jacobian.T, score - grad_log_det)
    return y, log_det, jax.lax.stop_gradient(solved)


def _push_inverse(
    bijection: Any, x: Array, score: Array, condition: Any
) -> tuple[Array, Array, Array]:
    """Through ``bijection.inverse``: one VJP of the explicit forward map at the result."""
    y, log_det = bijection.inverse_and_log_det(x, condition)
    _, vjp = jax.vjp(
        lambda y: bijection.transform_and_log_det(y, condition), jax.lax.stop_gradient(y)
    )
    (pushed,) = vjp((score, jnp.ones((), log_det.dtype)))
    return y, log_det, jax.lax.stop_gradient(pushed)


def _push_planar(layer: Planar, x: Array, score: Array) -> tuple[Array, Array, Array]:
    """:math:`J = I + \\hat u\\,h'\\,w^\\top`: Sherman–Morrison, :math:`O(d)`."""
    y, log_det = layer.transform_and_log_det(x)
    u, w = layer._u_hat(), layer.weight
    t = jnp.tanh(w @ x + layer.bias)
    slope = 1.0 - t**2
    denominator = 1.0 + slope * (w @ u)
    residual = score - (-2.0 * t * slope * (w @ u) / denominator) * w
    solved = residual - (residual @ u) * slope / denominator * w
    return y, log_det, jax.lax.stop_gradient(solved)


def _push_radial(layer: Radial, x: Array, score: Array) -> tuple[Array, Array, Array]:
    """:math:`J = (1 + \\beta h) I - \\beta h^2 r\\, e e^\\top`, :math:`e` the unit offset:
    Sherman–Morrison."""
    y, log_det = layer.transform_and_log_det(x)
    alpha, beta = layer._alpha_beta()
    offset = x - layer.centre
    r = jnp.sqrt(jnp.sum(offset**2))
    unit = offset / jnp.maximum(r, jnp.finfo(x.dtype).tiny)  # 0 at the centre
    h = 1.0 / (alpha + r)
    diagonal = 1.0 + beta * h
    rank_one = -beta * h**2 * r  # J = diagonal·I + rank_one·e eᵀ, e the unit offset
    residual = score - jax.grad(layer._log_det)(r, alpha, beta) * unit
    solved = (residual - rank_one * (residual @ unit) / (diagonal + rank_one) * unit) / diagonal
    return y, log_det, jax.lax.stop_gradient(solved)


def _push_triangular(layer: TriangularAffine, x: Array, score: Array) -> tuple:
    """:math:`v L = g`: one triangular solve (the log-determinant is constant)."""

    y, log_det = layer.transform_and_log_det(x)
    matrix = jax.lax.stop_gradient(layer.triangular)
    solved = linalg.solve_triangular(matrix.T, score, lower=not layer.lower)
    return y, log_det, jax.lax.stop_gradient(solved)


_RANK_ONE = {Planar: _push_planar, Radial: _push_radial, TriangularAffine: _push_triangular}


def _push_scan(
    bijection: Scan, x: Array, score: Array, condition: Any, inverse: bool
) -> tuple[Array, Array, Array]:
    params, static = eqx.partition(bijection.bijection, eqx.is_array)

    def step(carry: tuple, layer_params: Any) -> tuple[tuple, None]:
        x, log_det, score = carry
        layer = eqx.combine(layer_params, static)
        y, layer_log_det, score = push(layer, x, score, condition, inverse)
        return (y, log_det + layer_log_det, score), None

    init = (x, jnp.zeros((), x.dtype), score)
    (y, log_det, score), _ = jax.lax.scan(step, init, params, reverse=inverse)
    return y, log_det, score


__all__ = ["push", "sample_with_score"]
