r"""Gradient estimators: how an objective's gradient is estimated from draws of the family.

An estimator turns (family, log density, objective, key) into a surrogate loss whose
gradient with respect to the family's parameters is the estimate, and reports the
objective's value. Each checks that it is valid for the objective (:func:`check`):

- :func:`reparameterisation`: through :math:`z = T_\theta(\epsilon)` and
  :math:`\log q_\theta`; valid for every objective but the forward KL.
- :func:`sticking_the_landing`: the path only, :math:`\log q` with :math:`\theta` held
  fixed (Roeder et al. 2017), zero variance at :math:`q = p`; valid for the ELBO.
- :func:`score_function`: REINFORCE, :math:`(f - b)\nabla\log q`, with a leave-one-out
  baseline :math:`b` over the groups; valid for every objective (for the forward KL, its
  wake update).
- :func:`dreg`: doubly reparameterised,
  :math:`\sum_k \tilde w_k^2\,\partial_z\log w_k\,\partial_\theta z_k` (Tucker et al.
  2019); valid for the IWELBO.
- :func:`fast_path`: the path gradients of STL (ELBO) and DReG (IWELBO), with the score
  :math:`\nabla_z\log q` carried through the flow's layers while sampling (Vaitl et al.
  2024) instead of an inverse pass and a second ``log_prob``.

Written here: NumPyro's ELBOs fix the estimator per objective, and no JAX library composes
them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.errors import ArgumentError
from bayescore.inference.vi.objectives import Objective, _log_mean_exp

Surrogate = Callable[[Any, Callable, Objective, PRNGKeyArray, int], tuple[Array, Array]]


class Estimator(NamedTuple):
    """A gradient estimator: ``surrogate(family, log_density, objective, key, num_groups)``
    returns ``(loss to minimise, objective value)``; ``valid`` lists the objective kinds.

    Example:
        >>> from bayescore.inference import vi
        >>> vi.dreg().valid
        ('iwelbo',)
    """

    name: str
    surrogate: Surrogate
    valid: tuple[str, ...]
    why: str


def reparameterisation() -> Estimator:
    """The reparameterisation (pathwise) gradient of any differentiable objective.

    Example:
        >>> from bayescore.inference import vi
        >>> vi.reparameterisation().name
        'reparameterisation'
    """

    return Estimator(
        "reparameterisation",
        _reparameterisation,
        ("elbo", "iwelbo", "renyi", "custom"),
        "the forward-KL update is taken at fixed draws; use vi.score_function()",
    )


def sticking_the_landing() -> Estimator:
    """The path gradient: :math:`\\log q` evaluated with the parameters held fixed.

    Drops the score term :math:`\\mathbb E_q[\\nabla_\\theta\\log q_\\theta]`, which is zero
    only for the ELBO; its variance vanishes when :math:`q = p`. Costs the family's inverse.

    Example:
        >>> from bayescore.inference import vi
        >>> vi.sticking_the_landing().valid
        ('elbo',)
    """

    return Estimator(
        "sticking the landing",
        _sticking_the_landing,
        ("elbo",),
        "dropping the score term is unbiased only for the ELBO (for the IWELBO use vi.dreg())",
    )


def score_function(baseline: bool = True) -> Estimator:
    """REINFORCE: :math:`\\frac1G\\sum_g [\\nabla f_g + (f_g - b_g)\\nabla\\sum_k\\log q(z_{gk})]`.

    :math:`f_g` is the objective on group ``g`` at fixed draws, and :math:`b_g` the mean of
    the other groups' :math:`f` (leave-one-out, so the estimate stays unbiased; it needs
    ``num_groups >= 2``). Needs only ``log_prob`` at the draws, not a reparameterisable
    sampler. With the forward-KL objective it is the wake update (no REINFORCE term: that
    objective's expectation is not under q).

    Example:
        >>> from bayescore.inference import vi
        >>> vi.score_function().name
        'score function'
    """

    return Estimator(
        "score function",
        _ScoreFunction(bool(baseline)),
        ("elbo", "iwelbo", "renyi", "forward_kl", "custom"),
        "",
    )


def dreg() -> Estimator:
    """Doubly reparameterised gradient of the IWELBO (Tucker, Lawson, Gu & Maddison 2019).

    With :math:`\\tilde w_k = w_k / \\sum_j w_j` per group, the estimate is
    :math:`\\sum_k \\tilde w_k^2\\,\\partial_z \\log w_k\\,\\partial_\\theta z_k`, with
    :math:`\\log q` inside :math:`\\log w` held fixed: unbiased for the IWELBO's gradient and,
    unlike the reparameterisation gradient, its signal-to-noise ratio does not fall with K.

    Example:
        >>> from bayescore.inference import vi
        >>> vi.dreg().name
        'DReG'
    """

    return Estimator(
        "DReG",
        _dreg,
        ("iwelbo",),
        "the doubly reparameterised estimator is derived for the IWELBO only",
    )


def fast_path() -> Estimator:
    r"""The path gradient with the score carried through the layers (Vaitl et al. 2024).

    The same estimate as :func:`sticking_the_landing` for the ELBO and :func:`dreg` for the
    IWELBO, to rounding, but :math:`\partial_z \log q` comes from
    :func:`bayescore.models.flows.sample_with_score`, computed beside the sampling pass, and
    :math:`\partial_z \log \tilde p` from the target's gradient; the surrogate is
    :math:`\sum_k c_k \langle z_k, \operatorname{sg}(\partial_z \log w_k)\rangle` with
    :math:`c_k = 1/K` (ELBO) or :math:`\tilde w_k^2` (IWELBO). No inverse is evaluated, so it
    suits flows whose inverse is slow or root-found (IAF, planar, smooth flows); for coupling,
    elementwise and affine layers the score costs one extra backward pass of each
    conditioner, for other layers a dense Jacobian (see
    :mod:`bayescore.models.flows.score`).

    Example:
        >>> from bayescore.inference import vi
        >>> vi.fast_path().valid
        ('elbo', 'iwelbo')
    """
    return Estimator(
        "fast path",
        _fast_path,
        ("elbo", "iwelbo"),
        "it is the path gradient of the ELBO (sticking the landing) and of the IWELBO (DReG) only",
    )


def check(estimator: Estimator, objective: Objective, family: Any = None) -> None:
    """Raise :class:`ArgumentError` when ``estimator`` is not valid for ``objective``
    (or for ``family``: a stochastic flow has path weights only, no density at a point).

    Example:
        >>> from bayescore.inference import vi
        >>> vi.check(vi.dreg(), vi.elbo())
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ArgumentError: estimator DReG does not apply to ELBO: the doubly reparameterised estimator is derived for the IWELBO only.
    """  # noqa: E501
    if not isinstance(estimator, Estimator):
        raise ArgumentError(
            "estimator must be a vi estimator (vi.reparameterisation(), vi.score_function(), "
            "vi.sticking_the_landing(), vi.dreg(), vi.fast_path()), got "
            f"{type(estimator).__name__}."
        )
    if objective.kind not in estimator.valid:
        raise ArgumentError(
            f"estimator {estimator.name} does not apply to {objective.name}: {estimator.why}."
        )
    from bayescore.inference.vi.snf import StochasticFlow

    if isinstance(family, StochasticFlow) and estimator.name != "reparameterisation":
        raise ArgumentError(
            f"estimator {estimator.name} needs the family's density at given points; a "
            "stochastic flow has only path weights: use vi.reparameterisation()."
        )


def frozen(family: Any) -> Any:
    """``family`` with its parameters behind ``stop_gradient``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.inference import vi
        >>> q = vi.mean_field(1)
        >>> import equinox as eqx
        >>> grad = eqx.filter_grad(lambda q: vi.frozen(q).log_prob(jnp.ones(1)))(q)
        >>> float(grad.loc[0])
        0.0
    """
    params, static = eqx.partition(family, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(params), static)


# The surrogates live at module level (score_function's is a frozen dataclass) so that two
# calls of ``vi.dreg()`` compare equal: ``bc.fit`` then reuses its compiled loop.


def _reparameterisation(
    family: Any, log_density: Callable, objective: Objective, key: Any, groups: int
) -> tuple[Array, Array]:
    z, log_q = family.sample_and_log_prob(key, (groups, objective.num_particles))
    value = objective.fn(_log_p(log_density, z), log_q)
    return -value, value


def _sticking_the_landing(
    family: Any, log_density: Callable, objective: Objective, key: Any, groups: int
) -> tuple[Array, Array]:
    z = family.sample(key, (groups, objective.num_particles))
    value = objective.fn(_log_p(log_density, z), frozen(family).log_prob(z))
    return -value, value


@dataclasses.dataclass(frozen=True)
class _ScoreFunction:
    baseline: bool

    def __call__(
        self, family: Any, log_density: Callable, objective: Objective, key: Any, groups: int
    ) -> tuple[Array, Array]:
        z = jax.lax.stop_gradient(family.sample(key, (groups, objective.num_particles)))
        log_q = family.log_prob(z)
        log_p = _log_p(log_density, z)
        if objective.kind == "forward_kl":
            value = objective.fn(log_p, log_q)
            return -value, value
        per_group = jax.vmap(lambda p, q: objective.fn(p[None], q[None]))(log_p, log_q)
        if self.baseline:
            if groups < 2:
                raise ArgumentError(
                    "the score-function baseline is the mean over the other groups: pass "
                    "num_groups >= 2, or score_function(baseline=False)."
                )
            base = (jnp.sum(per_group) - per_group) / (groups - 1)
        else:
            base = jnp.zeros_like(per_group)
        advantage = jax.lax.stop_gradient(per_group - base)
        value = jnp.mean(per_group)
        return -(value + jnp.mean(advantage * jnp.sum(log_q, axis=-1))), value


def _dreg(
    family: Any, log_density: Callable, objective: Objective, key: Any, groups: int
) -> tuple[Array, Array]:
    z = family.sample(key, (groups, objective.num_particles))
    log_w = _log_p(log_density, z) - frozen(family).log_prob(z)
    weights = jax.lax.stop_gradient(jax.nn.softmax(log_w, axis=-1))
    value = jax.lax.stop_gradient(jnp.mean(_log_mean_exp(log_w)))
    return -jnp.mean(jnp.sum(weights**2 * log_w, axis=-1)), value


def _fast_path(
    family: Any, log_density: Callable, objective: Objective, key: Any, groups: int
) -> tuple[Array, Array]:
    from bayescore.models.flows.score import sample_with_score

    shape = (groups, objective.num_particles)
    z, log_q, score = sample_with_score(family, key, shape)
    log_q = jax.lax.stop_gradient(log_q)
    flat = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1])
    log_p, grad_p = jax.vmap(jax.value_and_grad(log_density))(flat)
    log_p, grad_p = log_p.reshape(shape), grad_p.reshape(z.shape)
    value = jax.lax.stop_gradient(objective.fn(log_p, log_q))
    if objective.kind == "iwelbo":
        coefficient = jax.nn.softmax(log_p - log_q, axis=-1) ** 2
    else:
        coefficient = jnp.full(shape, 1.0 / objective.num_particles, z.dtype)
    force = jax.lax.stop_gradient(coefficient[..., None] * (grad_p - score))
    path = jnp.mean(jnp.sum(force * z, axis=(-2, -1)))
    return -(path - jax.lax.stop_gradient(path)) - value, value


def _log_p(log_density: Callable, z: Array) -> Array:
    flat = z.reshape(-1, z.shape[-1])
    return jax.vmap(log_density)(flat).reshape(z.shape[:-1])


__all__ = [
    "Estimator",
    "check",
    "dreg",
    "fast_path",
    "frozen",
    "reparameterisation",
    "score_function",
    "sticking_the_landing",
]
