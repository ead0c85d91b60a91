r"""Sequential Kalman filter and Rauch–Tung–Striebel smoother (``lax.scan``), vector sites.

Filter, for :math:`s = 0, \dots, S-1` (Särkkä 2013, *Bayesian Filtering and Smoothing*,
Thm 4.2), with the chain of :func:`~bayescore.models.statespace.discretise`
(:math:`\bar A_0 = 0`, :math:`Q_0 = P_\infty`, so the first prediction is the stationary
prior):

.. math::

    m_s^- = \bar A_s m_{s-1},\quad P_s^- = \bar A_s P_{s-1} \bar A_s^\top + Q_s,\quad
    (m_s, P_s, \log Z_s) = \mathrm{condition}(m_s^-, P_s^-, t_s),

with :func:`~bayescore.models.statespace.sites.condition`, and
:math:`\log p(\text{sites}) = \sum_s \log Z_s`. RTS smoother, backwards from
:math:`(m^s_{S-1}, P^s_{S-1}) = (m_{S-1}, P_{S-1})` (Särkkä 2013, Thm 8.2):

.. math::

    E_s = P_s \bar A_{s+1}^\top (P_{s+1}^-)^{-1},\quad
    m^s_s = m_s + E_s(m^s_{s+1} - m^-_{s+1}),\quad
    P^s_s = P_s + E_s(P^s_{s+1} - P^-_{s+1})E_s^\top,

:math:`E_s` by a linear solve. The gains give the smoothed cross-covariances
:math:`\operatorname{Cov}(x_s, x_{s+1} \mid \text{all}) = E_s P^s_{s+1}`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from bayescore.models.statespace.sde import Transitions
from bayescore.models.statespace.sites import Sites, condition


class Filtered(NamedTuple):
    """Filtering distributions :math:`p(x_s \\mid t_{0:s})` and the evidence.

    Attributes:
        means: ``(S, D)``.
        covariances: ``(S, D, D)``.
        log_marginal_likelihood: :math:`\\sum_s \\log Z_s`, a scalar.
    """

    means: Float[Array, "grid state"]
    covariances: Float[Array, "grid state state"]
    log_marginal_likelihood: Float[Array, ""]


class Smoothed(NamedTuple):
    """Smoothing distributions :math:`p(x_s \\mid t_{0:S-1})`.

    Attributes:
        means: ``(S, D)``.
        covariances: ``(S, D, D)``.
        gains: RTS gains :math:`E_s`, ``(S, D, D)``, the last one zero;
            :math:`\\operatorname{Cov}(x_s, x_{s+1}) = E_s P^s_{s+1}`.
    """

    means: Float[Array, "grid state"]
    covariances: Float[Array, "grid state state"]
    gains: Float[Array, "grid state state"]

    def cross_covariances(self) -> Float[Array, "gap state state"]:
        r""":math:`\operatorname{Cov}(x_s, x_{s+1} \mid \text{all})` for :math:`s < S-1`."""
        return self.gains[:-1] @ self.covariances[1:]


def predict(
    transition: Array, process_noise: Array, mean: Array, covariance: Array
) -> tuple[Array, Array]:
    r""":math:`(\bar A m,\ \bar A P \bar A^\top + Q)`, symmetrised.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace.kalman import predict
        >>> mean, cov = predict(2 * jnp.eye(1), jnp.eye(1), jnp.ones(1), jnp.eye(1))
        >>> float(mean[0]), float(cov[0, 0])
        (2.0, 5.0)
    """
    predicted = transition @ covariance @ transition.T + process_noise
    return transition @ mean, 0.5 * (predicted + predicted.T)


def smoothing_gain(transition: Array, covariance: Array, predicted_covariance: Array) -> Array:
    r""":math:`E = P \bar A^\top (P^-)^{-1}`, by an LU solve with :math:`P^-`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace.kalman import smoothing_gain
        >>> float(smoothing_gain(jnp.eye(1), jnp.eye(1), 4 * jnp.eye(1))[0, 0])
        0.25
    """
    return jsl.lu_solve(jsl.lu_factor(predicted_covariance), transition @ covariance).T


def kalman_filter(transitions: Transitions, observation: Array, sites: Sites) -> Filtered:
    r"""Run the filter forward with ``lax.scan`` (see the module docstring).

    Args:
        transitions: the chain from :func:`~bayescore.models.statespace.discretise`.
        observation: :math:`H`, ``(M, D)``.
        sites: one site per grid point.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import (discretise, gaussian_observations,
        ...     kalman_filter, state_space)
        >>> sde = state_space(gpx.kernels.Matern12())
        >>> sites = gaussian_observations(jnp.array([0.5]), jnp.array([1.0]))
        >>> filtered = kalman_filter(discretise(sde, jnp.zeros(1)), sde.observation, sites)
        >>> float(filtered.means[0, 0])
        0.25
    """
    dim = transitions.transition.shape[-1]
    dtype = transitions.transition.dtype

    def step(carry, inputs):
        mean, covariance = carry
        transition, noise, factor, shift, log_normaliser = inputs
        mean, covariance = predict(transition, noise, mean, covariance)
        mean, covariance, log_z = condition(
            mean, covariance, observation, factor, shift, log_normaliser
        )
        return (mean, covariance), (mean, covariance, log_z)

    start = (jnp.zeros(dim, dtype), jnp.zeros((dim, dim), dtype))
    _, (means, covariances, log_z) = jax.lax.scan(step, start, (*transitions, *sites))
    return Filtered(means, covariances, jnp.sum(log_z))


def rts_smoother(transitions: Transitions, filtered: Filtered) -> Smoothed:
    r"""Run the RTS smoother backward with ``lax.scan`` (see the module docstring).

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import (discretise, gaussian_observations,
        ...     kalman_filter, rts_smoother, state_space)
        >>> sde = state_space(gpx.kernels.Matern12())
        >>> chain = discretise(sde, jnp.array([0.0, 1.0]))
        >>> sites = gaussian_observations(jnp.array([0.0, 1.0]), jnp.array([0.1, 0.1]))
        >>> smoothed = rts_smoother(chain, kalman_filter(chain, sde.observation, sites))
        >>> smoothed.means.shape
        (2, 1)
    """

    def step(carry, inputs):
        next_mean, next_covariance = carry
        transition, noise, mean, covariance = inputs
        predicted_mean, predicted_covariance = predict(transition, noise, mean, covariance)
        gain = smoothing_gain(transition, covariance, predicted_covariance)
        mean = mean + gain @ (next_mean - predicted_mean)
        covariance = covariance + gain @ (next_covariance - predicted_covariance) @ gain.T
        covariance = 0.5 * (covariance + covariance.T)
        return (mean, covariance), (mean, covariance, gain)

    last = (filtered.means[-1], filtered.covariances[-1])
    inputs = (
        transitions.transition[1:],
        transitions.process_noise[1:],
        filtered.means[:-1],
        filtered.covariances[:-1],
    )
    _, (means, covariances, gains) = jax.lax.scan(step, last, inputs, reverse=True)
    return Smoothed(
        jnp.concatenate([means, last[0][None]]),
        jnp.concatenate([covariances, last[1][None]]),
        jnp.concatenate([gains, jnp.zeros_like(last[1])[None]]),
    )
