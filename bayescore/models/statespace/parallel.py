r"""Parallel Kalman filter and RTS smoother by associative scans (``lax.associative_scan``).

Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers", IEEE
TAC 66(1), §IV (filter, Lemmas 7–8) and §V (smoother, Lemmas 9–10): the filtering and
smoothing distributions of a linear-Gaussian chain are prefix sums of an associative
operator over per-step elements, so both run in :math:`O(\log S)` depth.

**Filter element** :math:`s`: :math:`p(x_s \mid t_s, x_{s-1}) = N(A_s x_{s-1} + b_s, C_s)`
and :math:`p(t_s \mid x_{s-1}) \propto N_I(x_{s-1}; \eta_s, J_s)` (information form). For the
site :math:`(B, \xi)` of :mod:`~bayescore.models.statespace.sites` conditioned against
:math:`N(\bar A_s x_{s-1}, Q_s)`, with :math:`L_C, G, W` of
:func:`~bayescore.models.statespace.sites.site_terms` at :math:`P = Q_s` and
:math:`K = W^\top G`:

.. math::

    A_s = (I - KH)\bar A_s,\quad b_s = W^\top L_C^{-1}\xi,\quad
    C_s = (I - KH) Q_s (I - KH)^\top + V^\top V,

    J_s = (G H \bar A_s)^\top (G H \bar A_s),\quad
    \eta^J_s = (G H \bar A_s)^\top L_C^{-1}\xi.

With :math:`\bar A_0 = 0`, :math:`Q_0 = P_\infty` the first element is the paper's special
first element. **Combination** (:math:`i` before :math:`j`, Lemma 8):

.. math::

    A_{ij} = A_j M A_i,\ b_{ij} = A_j M(b_i + C_i\eta_j) + b_j,\
    C_{ij} = A_j M C_i A_j^\top + C_j,\ M = (I + C_i J_j)^{-1},

    \eta_{ij} = A_i^\top M^\top(\eta_j - J_j b_i) + \eta_i,\
    J_{ij} = A_i^\top M^\top J_j A_i + J_i,

the inverse applied by linear solves. The prefix :math:`(b, C)` are the filtering moments; the
evidence is then :math:`\sum_s \log Z_s` with each term conditioned in parallel on its
prediction from the previous filtering moments.

**Smoother element** :math:`s < S-1`: :math:`E_s = P_s\bar A_{s+1}^\top (P^-_{s+1})^{-1}`,
:math:`g_s = m_s - E_s \bar A_{s+1} m_s`, :math:`L_s = P_s - E_s \bar A_{s+1} P_s`; last:
:math:`(0, m_{S-1}, P_{S-1})`. Combination (suffix, :math:`i` before :math:`j`):
:math:`E_{ij} = E_i E_j`, :math:`g_{ij} = E_i g_j + g_i`, :math:`L_{ij} = E_i L_j E_i^\top
+ L_i`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array

from bayescore.models.statespace.kalman import Filtered, Smoothed, predict, smoothing_gain
from bayescore.models.statespace.sde import Transitions
from bayescore.models.statespace.sites import Sites, condition, joseph_covariance, site_terms


def _symmetric(matrix: Array) -> Array:
    return 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))


def _filter_element(transition, noise, observation, factor, shift):
    terms = site_terms(noise, observation, factor)
    observed_transition = terms.gain_factor @ observation @ transition  # G H Ā
    whitened = jsl.solve_triangular(terms.cholesky, shift, lower=True)  # L_C⁻¹ ξ
    mean_map = transition - terms.reduction.T @ observed_transition
    offset = terms.reduction.T @ whitened
    covariance = joseph_covariance(noise, observation, terms)
    information = observed_transition.T @ observed_transition
    information_shift = observed_transition.T @ whitened
    return mean_map, offset, covariance, information_shift, _symmetric(information)


def _combine_filter(earlier, later):
    a_i, b_i, c_i, eta_i, j_i = earlier
    a_j, b_j, c_j, eta_j, j_j = later
    eye = jnp.eye(a_i.shape[-1], dtype=a_i.dtype)
    system = jsl.lu_factor(eye + c_i @ j_j)  # I + C_i J_j, factorised once
    # A_j (I + C_i J_j)^{-1} = [ (I + C_i J_j)^{-T} A_j^T ]^T
    left = jsl.lu_solve(system, a_j.T, trans=1).T
    # A_i^T (I + J_j C_i)^{-1} = [ (I + C_i J_j)^{-1} A_i ]^T, as (I + J_j C_i)^T = I + C_i J_j
    right = jsl.lu_solve(system, a_i).T
    return (
        left @ a_i,
        left @ (b_i + c_i @ eta_j) + b_j,
        _symmetric(left @ c_i @ a_j.T + c_j),
        right @ (eta_j - j_j @ b_i) + eta_i,
        _symmetric(right @ j_j @ a_i + j_i),
    )


def parallel_filter(transitions: Transitions, observation: Array, sites: Sites) -> Filtered:
    r"""The Kalman filter by an associative scan (see the module docstring).

    Same inputs and outputs as :func:`~bayescore.models.statespace.kalman_filter`.

    Example:
        >>> import gpjax as gpx, jax, jax.numpy as jnp
        >>> from bayescore.models.statespace import (discretise, gaussian_observations,
        ...     kalman_filter, parallel_filter, state_space)
        >>> sde = state_space(gpx.kernels.Matern32())
        >>> grid = jnp.array([0.0, 0.4, 1.5])
        >>> sites = gaussian_observations(jnp.array([0.1, 0.5, -0.2]), jnp.full(3, 0.1))
        >>> chain = discretise(sde, grid)
        >>> a = jax.jit(parallel_filter)(chain, sde.observation, sites)
        >>> b = jax.jit(kalman_filter)(chain, sde.observation, sites)
        >>> bool(jnp.allclose(a.means, b.means, atol=1e-5))
        True
    """
    elements = jax.vmap(_filter_element, in_axes=(0, 0, None, 0, 0))(
        transitions.transition, transitions.process_noise, observation, *sites[:2]
    )
    _, means, covariances, _, _ = jax.lax.associative_scan(jax.vmap(_combine_filter), elements)
    # Evidence: each site conditioned on its prediction from the previous filtering moments.
    previous_means = jnp.concatenate([jnp.zeros_like(means[:1]), means[:-1]])
    previous_covariances = jnp.concatenate([jnp.zeros_like(covariances[:1]), covariances[:-1]])
    predicted = jax.vmap(predict)(*transitions, previous_means, previous_covariances)
    _, _, log_z = jax.vmap(condition, in_axes=(0, 0, None, 0, 0, 0))(
        *predicted, observation, *sites
    )
    return Filtered(means, covariances, jnp.sum(log_z))


def _smoother_element(transition, noise, mean, covariance):
    predicted_mean, predicted_covariance = predict(transition, noise, mean, covariance)
    gain = smoothing_gain(transition, covariance, predicted_covariance)
    return (
        gain,
        mean - gain @ predicted_mean,
        _symmetric(covariance - gain @ transition @ covariance),
    )


def _combine_smoother(earlier, later):
    e_i, g_i, l_i = earlier
    e_j, g_j, l_j = later
    return e_i @ e_j, e_i @ g_j + g_i, _symmetric(e_i @ l_j @ e_i.T + l_i)


def parallel_smoother(transitions: Transitions, filtered: Filtered) -> Smoothed:
    r"""The RTS smoother by a reverse associative scan (see the module docstring).

    Same inputs and outputs as :func:`~bayescore.models.statespace.rts_smoother`.

    Example:
        >>> import gpjax as gpx, jax, jax.numpy as jnp
        >>> from bayescore.models.statespace import (discretise, gaussian_observations,
        ...     kalman_filter, parallel_smoother, rts_smoother, state_space)
        >>> sde = state_space(gpx.kernels.Matern32())
        >>> chain = discretise(sde, jnp.array([0.0, 0.4, 1.5]))
        >>> sites = gaussian_observations(jnp.array([0.1, 0.5, -0.2]), jnp.full(3, 0.1))
        >>> filtered = jax.jit(kalman_filter)(chain, sde.observation, sites)
        >>> a = jax.jit(parallel_smoother)(chain, filtered).means
        >>> b = jax.jit(rts_smoother)(chain, filtered).means
        >>> bool(jnp.allclose(a, b, atol=1e-5))
        True
    """
    gains, offsets, covariances = jax.vmap(_smoother_element)(
        transitions.transition[1:],
        transitions.process_noise[1:],
        filtered.means[:-1],
        filtered.covariances[:-1],
    )
    elements = (
        jnp.concatenate([gains, jnp.zeros_like(filtered.covariances[-1:])]),
        jnp.concatenate([offsets, filtered.means[-1:]]),
        jnp.concatenate([covariances, filtered.covariances[-1:]]),
    )
    # reverse=True folds as fn(later suffix, earlier element).
    swap = jax.vmap(lambda later, earlier: _combine_smoother(earlier, later))
    _, means, smoothed_covariances = jax.lax.associative_scan(swap, elements, reverse=True)
    return Smoothed(means, smoothed_covariances, elements[0])
