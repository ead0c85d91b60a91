r"""A state-space GP posterior on a grid: smoothing, evidence, and prediction anywhere.

:func:`smooth` checks its inputs, discretises the SDE on the sorted grid, and runs the filter
and smoother, sequential (``lax.scan``) or parallel (``lax.associative_scan``, Särkkä &
García-Fernández 2021). The result holds the filtering and smoothing moments and
:math:`\log p(\text{sites})`.

:func:`interpolate` gives the exact posterior at any index :math:`t_*` (Särkkä 2013, §10.2:
a query is a grid point with a missing observation, which leaves the filter downstream
unchanged, so one local RTS step suffices). With :math:`t_k \le t_* < t_{k+1}`:

.. math::

    m^-_* = \bar A(t_* - t_k)\,m_k,\quad
    P^-_* = \bar A(t_* - t_k) P_k \bar A(t_* - t_k)^\top + Q(t_* - t_k),

from the *filtering* moments at :math:`t_k` (the stationary prior :math:`N(0, P_\infty)`
left of the grid), then one RTS step against the *smoothed* moments at :math:`t_{k+1}`,

.. math::

    E_* = P^-_* \bar A_2^\top (\bar A_2 P^-_* \bar A_2^\top + Q_2)^{-1},\quad
    m_* = m^-_* + E_*(m^s_{k+1} - \bar A_2 m^-_*),\quad
    P_* = P^-_* + E_*(P^s_{k+1} - \bar A_2 P^-_* \bar A_2^\top - Q_2)E_*^\top,

:math:`\bar A_2 = \bar A(t_{k+1} - t_*)`. Right of the grid there is no next point and the
prediction from :math:`t_{S-1}`, whose filtering and smoothing moments coincide, is the
answer. At a grid point the formulas return the smoothed moments.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.errors import ArgumentError, DataError, ShapeError, check_array
from bayescore.models.statespace.kalman import (
    Filtered,
    Smoothed,
    kalman_filter,
    predict,
    rts_smoother,
    smoothing_gain,
)
from bayescore.models.statespace.parallel import parallel_filter, parallel_smoother
from bayescore.models.statespace.sde import StateSpace, discretise
from bayescore.models.statespace.sites import Sites, _concrete


class StateSpacePosterior(NamedTuple):
    """What :func:`smooth` returns.

    Attributes:
        grid: the sorted grid, ``(S,)``.
        filtered: filtering moments and the evidence.
        smoothed: smoothing moments and RTS gains.
    """

    grid: Float[Array, " grid"]
    filtered: Filtered
    smoothed: Smoothed

    @property
    def log_marginal_likelihood(self) -> Float[Array, ""]:
        r""":math:`\log \int p(x)\prod_s t_s(Hx_s)\,\mathrm dx` (:math:`\log p(y)` for data)."""
        return self.filtered.log_marginal_likelihood


def check_grid(grid: ArrayLike, name: str = "grid") -> Array:
    """Return ``grid`` as a 1-D float array; raise if it is not finite and sorted ascending.

    Example:
        >>> from bayescore.models.statespace.posterior import check_grid
        >>> check_grid([0.0, 2.0, 1.0])
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ArgumentError: grid must be sorted ascending, but grid[2] = 1.0 < ...
    """
    check_array(name, grid, finite=False, allow_empty=True)  # strings, complex, objects
    grid = jnp.asarray(grid)
    if grid.ndim != 1 or grid.shape[0] == 0:
        raise ShapeError(
            f"{name} must be a non-empty 1-D array of indexes, got shape {grid.shape}."
        )
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.result_type(float))
    if _concrete(grid):
        values = np.asarray(grid)
        if not np.all(np.isfinite(values)):
            positions = np.nonzero(~np.isfinite(values))[0][:5].tolist()
            raise DataError(
                f"{name} has NaN or inf at positions {positions}. Drop those points or replace "
                "them with finite indexes."
            )
        decreasing = np.nonzero(np.diff(values) < 0)[0]
        if decreasing.size:
            i = int(decreasing[0])
            raise ArgumentError(
                f"{name} must be sorted ascending, but {name}[{i + 1}] = {values[i + 1]} < "
                f"{name}[{i}] = {values[i]}. Sort the grid (order = jnp.argsort(grid)) and "
                "reorder the observations the same way."
            )
    return grid


def _check(sde: StateSpace, grid: ArrayLike, sites: Sites) -> tuple[StateSpace, Array, Sites]:
    if not isinstance(sde, StateSpace):
        raise ArgumentError(
            f"sde must be a StateSpace (from bayescore.models.statespace.state_space), got "
            f"{type(sde).__name__}."
        )
    if not isinstance(sites, Sites):
        raise ArgumentError(
            f"sites must be Sites (from gaussian_observations or natural_sites), got "
            f"{type(sites).__name__}."
        )
    grid = check_grid(grid)
    expected = (grid.shape[0], sde.num_components)
    if sites.shift.shape != expected or sites.precision_factor.shape != (*expected, expected[1]):
        raise ShapeError(
            f"sites must have {expected[0]} points (the grid's length) of dimension "
            f"{expected[1]} (the SDE's components); got shift {sites.shift.shape} and "
            f"precision_factor {sites.precision_factor.shape}."
        )
    dtype = jnp.result_type(grid, sde.dtype, *sites)
    return sde.astype(dtype), grid.astype(dtype), sites.astype(dtype)


def smooth(
    sde: StateSpace, grid: Float[ArrayLike, " grid"], sites: Sites, *, parallel: bool = False
) -> StateSpacePosterior:
    r"""Filter and smooth a state-space GP on a sorted grid; also return the evidence.

    Args:
        sde: the stacked LTI-SDE (:func:`~bayescore.models.statespace.state_space`).
        grid: ``(S,)`` indexes, sorted ascending (ties allowed).
        sites: one site per grid point (:func:`~bayescore.models.statespace.
            gaussian_observations` or :func:`~bayescore.models.statespace.natural_sites`).
        parallel: ``True`` for the associative-scan filter and smoother (``O(log S)``
            depth; faster on accelerators for long grids), ``False`` for ``lax.scan``.

    Returns:
        :class:`StateSpacePosterior`.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import gaussian_observations, smooth, state_space
        >>> sde = state_space(gpx.kernels.Matern32(lengthscale=0.5))
        >>> grid = jnp.array([0.0, 0.3, 0.7, 1.0])
        >>> sites = gaussian_observations(jnp.sin(3 * grid), jnp.full(4, 0.01))
        >>> posterior = smooth(sde, grid, sites)
        >>> posterior.smoothed.means.shape, bool(jnp.isfinite(posterior.log_marginal_likelihood))
        ((4, 2), True)
    """
    sde, grid, sites = _check(sde, grid, sites)
    return _smooth(sde, grid, sites, parallel)


@eqx.filter_jit
def _smooth(sde: StateSpace, grid: Array, sites: Sites, parallel: bool) -> StateSpacePosterior:
    chain = discretise(sde, grid)
    if parallel:
        filtered = parallel_filter(chain, sde.observation, sites)
        return StateSpacePosterior(grid, filtered, parallel_smoother(chain, filtered))
    filtered = kalman_filter(chain, sde.observation, sites)
    return StateSpacePosterior(grid, filtered, rts_smoother(chain, filtered))


def log_marginal_likelihood(
    sde: StateSpace, grid: Float[ArrayLike, " grid"], sites: Sites, *, parallel: bool = False
) -> Float[Array, ""]:
    r""":math:`\log\int p(x)\prod_s t_s(H x_s)\,\mathrm dx` by the filter alone; differentiable.

    For observations (:func:`~bayescore.models.statespace.gaussian_observations`) this is
    :math:`\log p(y \mid \theta)`, the type-II likelihood of the kernel hyperparameters.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import (gaussian_observations,
        ...     log_marginal_likelihood, state_space)
        >>> sites = gaussian_observations(jnp.array([1.0]), jnp.array([1.0]))
        >>> sde = state_space(gpx.kernels.Matern12())
        >>> value = log_marginal_likelihood(sde, jnp.zeros(1), sites)
        >>> round(float(value), 4)  # log N(1 | 0, 1 + 1)
        -1.5155
    """
    sde, grid, sites = _check(sde, grid, sites)
    return _evidence(sde, grid, sites, parallel)


@eqx.filter_jit
def _evidence(sde: StateSpace, grid: Array, sites: Sites, parallel: bool) -> Array:
    run = parallel_filter if parallel else kalman_filter
    return run(discretise(sde, grid), sde.observation, sites).log_marginal_likelihood


def interpolate(
    sde: StateSpace, posterior: StateSpacePosterior, query: Float[ArrayLike, " query"]
) -> tuple[Float[Array, "query state"], Float[Array, "query state state"]]:
    r"""Posterior state moments at any indexes: between, beyond or on the grid points.

    See the module docstring for the equations; vectorised over the queries.

    Args:
        sde: the SDE ``posterior`` was computed with.
        posterior: from :func:`smooth`.
        query: ``(Q,)`` indexes, in any order.

    Returns:
        ``(means (Q, D), covariances (Q, D, D))`` of the state; :func:`marginals` projects
        them to the components.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import (gaussian_observations, interpolate,
        ...     smooth, state_space)
        >>> sde = state_space(gpx.kernels.Matern12())
        >>> grid = jnp.array([0.0, 1.0])
        >>> posterior = smooth(sde, grid, gaussian_observations(jnp.ones(2), jnp.full(2, 1e-6)))
        >>> means, _ = interpolate(sde, posterior, jnp.array([0.0, 0.5, 50.0]))
        >>> tuple(round(float(v), 3) for v in means[:, 0])
        (1.0, 0.887, 0.0)
    """
    check_array("query", query, finite=False, allow_empty=True)
    query = jnp.asarray(query)
    if query.ndim != 1:
        raise ShapeError(f"query must be a 1-D array of indexes, got shape {query.shape}.")
    if _concrete(query) and not np.all(np.isfinite(np.asarray(query))):
        raise DataError("query has NaN or inf values. Pass finite indexes.")
    sde = sde.astype(posterior.grid.dtype)
    return _interpolate(sde, posterior, query.astype(posterior.grid.dtype))


@eqx.filter_jit
def _interpolate(sde: StateSpace, posterior: StateSpacePosterior, query: Array):
    grid, filtered, smoothed = posterior
    last = grid.shape[0] - 1
    left = jnp.searchsorted(grid, query, side="right") - 1  # -1 left of the grid
    has_left, has_right = left >= 0, left < last
    left_index = jnp.clip(left, 0, last)
    right_index = jnp.clip(left + 1, 0, last)
    gap_in = jnp.where(has_left, query - grid[left_index], 0.0)
    gap_out = jnp.where(has_right, grid[right_index] - query, 0.0)
    transition_in, noise_in = sde.discretise(gap_in)
    transition_in = jnp.where(has_left[:, None, None], transition_in, 0.0)
    noise_in = jnp.where(has_left[:, None, None], noise_in, sde.stationary_covariance)
    transition_out, noise_out = sde.discretise(gap_out)

    def one(transition_in, noise_in, transition_out, noise_out, left_index, right_index, right):
        mean, covariance = predict(
            transition_in, noise_in, filtered.means[left_index], filtered.covariances[left_index]
        )
        next_mean, next_covariance = predict(transition_out, noise_out, mean, covariance)
        gain = smoothing_gain(transition_out, covariance, next_covariance)
        smoothed_mean = mean + gain @ (smoothed.means[right_index] - next_mean)
        smoothed_covariance = (
            covariance + gain @ (smoothed.covariances[right_index] - next_covariance) @ gain.T
        )
        smoothed_covariance = 0.5 * (smoothed_covariance + smoothed_covariance.T)
        return jnp.where(right, smoothed_mean, mean), jnp.where(
            right, smoothed_covariance, covariance
        )

    return jax.vmap(one)(
        transition_in, noise_in, transition_out, noise_out, left_index, right_index, has_right
    )


def marginals(
    sde: StateSpace,
    means: Float[Array, "*batch state"],
    covariances: Float[Array, "*batch state state"],
) -> tuple[Float[Array, "*batch component"], Float[Array, "*batch component component"]]:
    r"""Project state moments to the components: :math:`(H m,\ H P H^\top)`.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import marginals, state_space
        >>> sde = state_space(gpx.kernels.Matern32(), num_components=2)
        >>> mean, cov = marginals(sde, jnp.ones(4), jnp.eye(4))
        >>> mean.tolist(), cov.shape
        ([1.0, 1.0], (2, 2))
    """
    observation = sde.observation.astype(means.dtype)
    mean = means @ observation.T
    covariance = observation @ covariances @ observation.T
    return mean, covariance
