"""State-space GPs: Matérn kernels (and sums) as LTI-SDEs, Kalman filtering and smoothing.

A GP over a 1-D index with a Matérn-1/2, 3/2 or 5/2 kernel (or a sum of them) is a linear
SDE (:func:`state_space`, from GPJax's ``to_sde``; ``R`` independent components stack block
diagonally). On a sorted irregular grid it is a Gauss–Markov chain (:func:`discretise`), so
conditioning on per-point Gaussian sites (:func:`gaussian_observations` for data,
:func:`natural_sites` for EP messages) costs ``O(S D^3)``: :func:`smooth` runs the Kalman
filter and RTS smoother, sequential (:func:`kalman_filter`, :func:`rts_smoother`) or parallel
(:func:`parallel_filter`, :func:`parallel_smoother`, Särkkä & García-Fernández 2021), and
returns the log marginal likelihood; :func:`interpolate` predicts anywhere.

Example:
    >>> import gpjax as gpx, jax.numpy as jnp
    >>> from bayescore.models import statespace as ss
    >>> sde = ss.state_space(gpx.kernels.Matern52(lengthscale=0.3))
    >>> grid = jnp.linspace(0.0, 1.0, 20)
    >>> sites = ss.gaussian_observations(jnp.sin(6 * grid), jnp.full(20, 1e-4))
    >>> posterior = ss.smooth(sde, grid, sites)
    >>> mean, _ = ss.marginals(sde, *ss.interpolate(sde, posterior, jnp.array([0.525])))
    >>> round(float(mean[0, 0]), 2), round(float(jnp.sin(6 * 0.525)), 2)
    (-0.01, -0.01)
"""

from bayescore.models.statespace.kalman import Filtered, Smoothed, kalman_filter, rts_smoother
from bayescore.models.statespace.parallel import parallel_filter, parallel_smoother
from bayescore.models.statespace.posterior import (
    StateSpacePosterior,
    interpolate,
    log_marginal_likelihood,
    marginals,
    smooth,
)
from bayescore.models.statespace.sde import StateSpace, Transitions, discretise, state_space
from bayescore.models.statespace.sites import Sites, condition, gaussian_observations, natural_sites

__all__ = [
    "Filtered",
    "Sites",
    "Smoothed",
    "StateSpace",
    "StateSpacePosterior",
    "Transitions",
    "condition",
    "discretise",
    "gaussian_observations",
    "interpolate",
    "kalman_filter",
    "log_marginal_likelihood",
    "marginals",
    "natural_sites",
    "parallel_filter",
    "parallel_smoother",
    "rts_smoother",
    "smooth",
    "state_space",
]
