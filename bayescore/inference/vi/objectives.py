r"""Variational objectives: plain functions of log densities at draws from the family.

An objective is a function ``objective(log_p, log_q) -> scalar`` to **maximise**, where
``log_p`` and ``log_q`` are ``(num_groups, num_particles)`` arrays: :math:`\log\tilde p(z)`
and :math:`\log q(z)` at ``num_groups`` independent groups of ``num_particles`` draws. Every
objective here averages a per-group value over the groups; a user's own objective must too
(the score-function estimator's baseline relies on it). :class:`Objective` pairs the function
with its particle count and its kind (which estimators are valid for it).

With :math:`\log w = \log\tilde p - \log q` and :math:`K` particles per group:

- :func:`elbo`: :math:`\frac1K\sum_k \log w_k` (Jordan et al. 1999);
- :func:`iwelbo`: :math:`\log\frac1K\sum_k w_k` (Burda et al. 2016), increasing in
  :math:`K`, tending to :math:`\log Z`;
- :func:`renyi`: :math:`\frac1{1-\alpha}\log\frac1K\sum_k w_k^{1-\alpha}` (the VR bound, Li &
  Turner 2016; :math:`\alpha \to 1` is the ELBO, :math:`\alpha = 0` the IWELBO);
- :func:`forward_kl`: the reweighted wake-sleep q-update (Bornschein & Bengio 2015),
  :math:`\sum_k \bar w_k \log q(z_k)` with self-normalised, stopped weights
  :math:`\bar w_k`, whose gradient at fixed draws estimates :math:`-\nabla\mathrm{KL}(p\|q)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from bayescore.core.errors import ArgumentError, check_positive_int


class Objective(NamedTuple):
    """A variational objective and what the estimators need to know about it.

    Attributes:
        fn: ``fn(log_p, log_q) -> scalar``, to maximise (arrays of shape
            ``(num_groups, num_particles)``).
        num_particles: :math:`K`, draws per group.
        kind: ``"elbo"``, ``"iwelbo"``, ``"renyi"``, ``"forward_kl"`` or ``"custom"``; it
            decides which gradient estimators are valid.
        name: for tables and errors.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.vi import Objective
        >>> def tempered_elbo(log_p, log_q):  # a user's own objective
        ...     return jnp.mean(0.5 * log_p - log_q)
        >>> Objective(tempered_elbo).fn(jnp.zeros((2, 1)), jnp.ones((2, 1))).item()
        -1.0
    """

    fn: Callable[[Array, Array], Array]
    num_particles: int = 1
    kind: str = "custom"
    name: str = "custom"


def elbo() -> Objective:
    """The evidence lower bound, :math:`\\mathbb E_q[\\log\\tilde p - \\log q]`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.vi import elbo
        >>> elbo().fn(jnp.array([[1.0], [3.0]]), jnp.zeros((2, 1))).item()
        2.0
    """

    return Objective(_elbo, 1, "elbo", "ELBO")


def iwelbo(num_particles: int) -> Objective:
    """The importance-weighted bound with ``num_particles`` draws per group.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.vi import iwelbo
        >>> round(iwelbo(2).fn(jnp.log(jnp.array([[1.0, 3.0]])), jnp.zeros((1, 2))).item(), 4)
        0.6931
    """
    num_particles = check_positive_int("num_particles", num_particles)

    return Objective(_iwelbo, num_particles, "iwelbo", f"IWELBO(K={num_particles})")


def renyi(alpha: float, num_particles: int) -> Objective:
    """The Rényi-α variational bound (VR bound) with ``num_particles`` draws per group.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.vi import iwelbo, renyi
        >>> log_w = jnp.array([[0.0, 1.0]])
        >>> bool(jnp.isclose(renyi(0.0, 2).fn(log_w, 0 * log_w), iwelbo(2).fn(log_w, 0 * log_w)))
        True
    """
    num_particles = check_positive_int("num_particles", num_particles)
    given = alpha
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        alpha = float("nan")
    if isinstance(given, bool) or not jnp.isfinite(alpha) or alpha == 1.0:
        raise ArgumentError(
            f"alpha must be a finite number other than 1 (alpha -> 1 is the ELBO: use "
            f"vi.elbo()), got {given!r}."
        )

    return Objective(
        _Renyi(alpha), num_particles, "renyi", f"Rényi(α={alpha:g}, K={num_particles})"
    )


def forward_kl(num_particles: int) -> Objective:
    """The reweighted wake-sleep q-update: :math:`\\sum_k \\bar w_k \\log q(z_k)`.

    Its gradient, taken at fixed draws (``vi.score_function()``), is the self-normalised
    importance-sampling estimate of :math:`\\nabla_\\theta\\,\\mathbb E_p[\\log q_\\theta]
    = -\\nabla_\\theta \\mathrm{KL}(p\\|q_\\theta)`, mass-covering where the ELBO is
    mode-seeking. Its value is the IWELBO's, for monitoring.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.vi import forward_kl
        >>> forward_kl(4).kind
        'forward_kl'
    """
    num_particles = check_positive_int("num_particles", num_particles)

    return Objective(_forward_kl, num_particles, "forward_kl", f"forward KL (K={num_particles})")


def as_objective(objective: Objective | Callable) -> Objective:
    """``objective`` as an :class:`Objective` (a plain function gets ``K = 1``, kind custom).

    Example:
        >>> from bayescore.inference.vi import as_objective
        >>> as_objective(lambda log_p, log_q: (log_p - log_q).mean()).num_particles
        1
    """
    if isinstance(objective, Objective):
        return objective
    if callable(objective):
        return Objective(objective)
    raise ArgumentError(
        f"objective must be a vi objective (vi.elbo(), vi.iwelbo(K), ...) or a function "
        f"(log_p, log_q) -> scalar, got {type(objective).__name__}."
    )


# The objectives' functions live at module level (and Rényi's is a frozen dataclass) so that
# two calls of ``vi.iwelbo(8)`` compare equal: ``bc.fit`` then reuses its compiled loop.


def _elbo(log_p: Array, log_q: Array) -> Array:
    return jnp.mean(log_p - log_q)


def _iwelbo(log_p: Array, log_q: Array) -> Array:
    return jnp.mean(_log_mean_exp(log_p - log_q))


@dataclasses.dataclass(frozen=True)
class _Renyi:
    alpha: float

    def __call__(self, log_p: Array, log_q: Array) -> Array:
        scaled = (1.0 - self.alpha) * (log_p - log_q)
        return jnp.mean(_log_mean_exp(scaled) / (1.0 - self.alpha))


def _forward_kl(log_p: Array, log_q: Array) -> Array:
    weights = jax.lax.stop_gradient(jax.nn.softmax(log_p - log_q, axis=-1))
    value = jax.lax.stop_gradient(jnp.mean(_log_mean_exp(log_p - log_q)))
    surrogate = jnp.mean(jnp.sum(weights * log_q, axis=-1))
    return value + surrogate - jax.lax.stop_gradient(surrogate)


def _log_mean_exp(values: Array) -> Array:
    """:math:`\\log\\frac1K\\sum_k e^{v_k}` over the last axis."""
    return jax.scipy.special.logsumexp(values, axis=-1) - jnp.log(values.shape[-1])


__all__ = ["Objective", "as_objective", "elbo", "forward_kl", "iwelbo", "renyi"]
