r"""Moment errors in Monte Carlo standard errors: how far draws are from exact moments.

For draws :math:`x^{(c,s)} \in \mathbb{R}^d` from ``C`` chains and an exact mean :math:`\mu`
and covariance :math:`\Sigma`, the z-scores are

.. math::

    z_i = \frac{\bar x_i - \mu_i}{\mathrm{MCSE}(\bar x_i)}, \qquad
    z_{ij} = \frac{\overline{(x_i-\mu_i)(x_j-\mu_j)} - \Sigma_{ij}}
                  {\mathrm{MCSE}\big(\overline{(x_i-\mu_i)(x_j-\mu_j)}\big)},

with MCSEs from ArviZ's ESS-based estimator (autocorrelation and several chains accounted for).
A correct sampler gives z-scores that are roughly standard normal, so tests assert
``|z| < 4`` (probability of a false alarm below 1e-4 per moment).

Example:
    >>> import numpy as np
    >>> from bayescore.metrics import mean_zscores
    >>> draws = np.random.default_rng(0).normal(size=(4, 1000, 2))
    >>> bool(np.all(np.abs(mean_zscores(draws, np.zeros(2))) < 4))
    True
"""

from __future__ import annotations

import numpy as np
from arviz_stats.base import array_stats

from bayescore.core.errors import ShapeError, check_array, check_positive_float, check_positive_int


def _as_draws(draws: np.ndarray) -> np.ndarray:
    draws = np.asarray(
        check_array("draws", draws, ndim=(2, 3), hint="Pass draws of shape (chain, draw, dim)."),
        dtype=np.float64,
    )
    if draws.ndim == 2:
        draws = draws[..., None]
    return draws


def _exact(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An exact moment as a finite float64 array broadcast to ``shape``, or an error."""
    array = np.asarray(check_array(name, value), dtype=np.float64)
    try:
        return np.broadcast_to(array, shape)
    except ValueError as error:
        raise ShapeError(f"{name} must broadcast to shape {shape}, got {array.shape}.") from error


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """ESS-based Monte Carlo standard error of the mean of each coordinate.

    Example:
        >>> import numpy as np
        >>> from bayescore.metrics import mcse_mean
        >>> mcse_mean(np.ones((2, 10, 3)) + np.arange(20).reshape(2, 10, 1)).shape
        (3,)
    """
    draws = _as_draws(draws)
    return np.asarray(array_stats.mcse(np.moveaxis(draws, -1, 0), chain_axis=-2, draw_axis=-1))


def mean_zscores(draws: np.ndarray, exact_mean: np.ndarray) -> np.ndarray:
    """``(mean(draws) - exact_mean) / MCSE`` per coordinate.

    Example:
        >>> import numpy as np
        >>> from bayescore.metrics import mean_zscores
        >>> draws = np.random.default_rng(1).normal(3.0, 1.0, size=(2, 500))
        >>> bool(abs(mean_zscores(draws, 3.0)[0]) < 4)
        True
    """
    draws = _as_draws(draws)
    exact_mean = _exact("exact_mean", exact_mean, draws.shape[-1:])
    return (draws.mean(axis=(0, 1)) - exact_mean) / mcse_mean(draws)


def covariance_zscores(
    draws: np.ndarray, exact_mean: np.ndarray, exact_covariance: np.ndarray
) -> np.ndarray:
    """z-scores of every second central moment around the exact mean, ``(dim, dim)``.

    Example:
        >>> import numpy as np
        >>> from bayescore.metrics import covariance_zscores
        >>> draws = np.random.default_rng(2).normal(size=(4, 2000, 2))
        >>> bool(np.all(np.abs(covariance_zscores(draws, np.zeros(2), np.eye(2))) < 4))
        True
    """
    draws = _as_draws(draws)
    dim = draws.shape[-1]
    centred = draws - _exact("exact_mean", exact_mean, (dim,))
    products = centred[..., :, None] * centred[..., None, :]
    flat = products.reshape(*draws.shape[:2], dim * dim)
    errors = (
        flat.mean(axis=(0, 1)) - _exact("exact_covariance", exact_covariance, (dim, dim)).ravel()
    )
    return (errors / mcse_mean(flat)).reshape(dim, dim)


def zscore_bound(num_moments: int, single: float = 4.0) -> float:
    """The ``|z|`` bound for ``num_moments`` moments with the false-alarm rate of one at ``single``.

    ``P(|z| > 4) ≈ 6.3e-5`` for one standard normal z-score; checking ``m`` moments at 4 would
    raise that about ``m``-fold (a 50×50 covariance has 1275 distinct entries: ~8 %). The
    Bonferroni bound :math:`\\Phi^{-1}(1 - p/(2m))`, with :math:`p = P(|z| > \\text{single})`,
    keeps the family-wise false-alarm probability at ``p``. It equals ``single`` for one moment.

    Example:
        >>> from bayescore.metrics import zscore_bound
        >>> zscore_bound(1), round(zscore_bound(1275), 2)
        (4.0, 5.45)
    """
    from scipy.stats import norm

    num_moments = check_positive_int("num_moments", num_moments)
    single = check_positive_float("single", single)
    if num_moments <= 1:
        return float(single)
    false_alarm = 2.0 * norm.sf(single)
    return float(norm.isf(false_alarm / (2.0 * num_moments)))
