r"""Gaussian sites (pseudo-observations) on a state-space GP, and conditioning on one.

A site at grid point :math:`s` is an unnormalised Gaussian factor on the observed components
:math:`u_s = H x_s \in \mathbb R^M`, held in whitened square-root form,

.. math::

    t_s(u) = \exp\big(c_s - \tfrac12 \|B_s^\top u - \xi_s\|^2\big),
    \qquad \Lambda_s = B_s B_s^\top \succeq 0,\quad \eta_s = B_s \xi_s,

stored as :class:`Sites` (:math:`B`, :math:`\xi`, :math:`c`). An observation
:math:`y_s \sim N(u_s, R_s)` is the site with :math:`B_s = L_s^{-\top}` (:math:`R_s = L_s
L_s^\top`), :math:`\xi_s = L_s^{-1} y_s` and :math:`c_s = -\frac M2 \log 2\pi - \log|L_s|`,
so :math:`t_s(u) = N(y_s \mid u, R_s)` (:func:`gaussian_observations`); an EP or CEP message
in natural parameters :math:`\exp(-\frac12 u^\top\Lambda_s u + \eta_s^\top u)` has
:math:`B_s = V\operatorname{diag}(\lambda)^{1/2}`, :math:`\xi_s = B_s^+\eta_s`,
:math:`c_s = \frac12\|\xi_s\|^2` (:func:`natural_sites`); a missing point is
:math:`B_s = 0,\ \xi_s = 0,\ c_s = 0`, which conditions on nothing.

:func:`condition` multiplies a Gaussian state :math:`N(m, P)` by a site. With
:math:`\Sigma = H P H^\top`, :math:`C = I + B^\top \Sigma B = L_C L_C^\top` (eigenvalues
:math:`\ge 1`, so its Cholesky factor is well conditioned even when :math:`\Lambda` is
singular), :math:`G = L_C^{-1} B^\top`, :math:`W = G H P` and the whitened residual
:math:`r = L_C^{-1}(\xi - B^\top H m)`:

.. math::

    m^+ = m + W^\top r,\qquad
    P^+ = (I - W^\top G H)\,P\,(I - W^\top G H)^\top + V^\top V,\quad V = L_C^{-\top} W,

    \log \int t(Hx)\,N(x \mid m, P)\,\mathrm dx = c - \tfrac12\log|C| - \tfrac12\|r\|^2 .

For an observation this is the Kalman update in Joseph form (gain
:math:`K = P H^\top (\Sigma + R)^{-1} = W^\top G`) and the evidence
:math:`\log N(y \mid Hm, \Sigma + R)`. Only :math:`C` is factorised, nothing is inverted,
and no large terms cancel, so precise observations are handled in float32 too (Särkkä 2013,
*Bayesian Filtering and Smoothing*, Thm 4.2; Rasmussen & Williams 2006, §3.6 for sites).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from bayescore.core.errors import DataError, ShapeError, check_array


class Sites(NamedTuple):
    r"""Gaussian sites :math:`t_s(u) = \exp(c_s - \frac12\|B_s^\top u - \xi_s\|^2)`.

    Attributes:
        precision_factor: :math:`B_s`, ``(S, M, M)``, with :math:`\Lambda_s = B_s B_s^\top`.
        shift: :math:`\xi_s`, ``(S, M)``, whitened: :math:`\eta_s = B_s \xi_s`.
        log_normaliser: :math:`c_s`, ``(S,)``.
    """

    precision_factor: Float[Array, "grid output output"]
    shift: Float[Array, "grid output"]
    log_normaliser: Float[Array, " grid"]

    @property
    def num_points(self) -> int:
        """Number ``S`` of grid points."""
        return self.shift.shape[0]

    @property
    def num_outputs(self) -> int:
        """Dimension ``M`` of each site."""
        return self.shift.shape[1]

    def astype(self, dtype) -> Sites:
        """The same sites cast to ``dtype``."""
        return Sites(*(jnp.asarray(leaf, dtype) for leaf in self))


def _concrete(*arrays: ArrayLike) -> bool:
    return not any(isinstance(array, jax.core.Tracer) for array in arrays)


def _real(name: str, value: ArrayLike) -> Array:
    """``value`` as a JAX array, or an error naming ``name`` if it is not real numbers."""
    check_array(name, value, finite=False, allow_empty=True)
    return jnp.asarray(value)


def _check_finite(name: str, value: Array, where_valid: Array | None = None) -> None:
    if not _concrete(value) or (where_valid is not None and not _concrete(where_valid)):
        return
    bad = ~np.isfinite(np.asarray(value))
    if where_valid is not None:
        valid = np.asarray(where_valid)
        bad &= valid.reshape(valid.shape + (1,) * (bad.ndim - valid.ndim))
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])[:5].tolist()
        raise DataError(
            f"{name} has NaN or inf values (first rows {rows}). Replace them, or mark those "
            "grid points missing with mask=False."
        )


def gaussian_observations(
    y: Float[ArrayLike, "grid ..."],
    covariance: Float[ArrayLike, "grid ..."],
    mask: Bool[ArrayLike, " grid"] | None = None,
) -> Sites:
    r"""Sites for observations :math:`y_s \sim N(H x_s, R_s)`, some of them possibly missing.

    Args:
        y: ``(S, M)`` observations, or ``(S,)`` when ``M = 1``.
        covariance: :math:`R_s`: ``(S, M, M)`` full, ``(S, M)`` diagonal, or ``(S,)`` when
            ``M = 1``; positive definite where observed.
        mask: ``(S,)`` booleans, ``False`` where the point is missing (``y`` and
            ``covariance`` are ignored there and may be NaN). Default: all observed.

    Returns:
        :class:`Sites` with :math:`B_s = L_s^{-\top}`, :math:`\xi_s = L_s^{-1} y_s` and
        :math:`c_s = -\frac M2\log 2\pi - \log|L_s|`, so that :math:`t_s(u) = N(y_s \mid
        u, R_s)` and the filter's evidence is :math:`\log p(y)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace import gaussian_observations
        >>> sites = gaussian_observations(jnp.array([1.0, 2.0]), jnp.array([0.25, 0.25]))
        >>> [round(float(v), 3) for v in sites.shift[:, 0]]  # y / sd
        [2.0, 4.0]
    """
    y = _real("y", y)
    covariance = _real("covariance", covariance)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ShapeError(f"y must have shape (grid, outputs) or (grid,), got {y.shape}.")
    num_points, num_outputs = y.shape
    if covariance.shape == (num_points,) and num_outputs == 1:
        covariance = covariance[:, None, None]
    elif covariance.shape == (num_points, num_outputs):
        covariance = jax.vmap(jnp.diag)(covariance)
    if covariance.shape != (num_points, num_outputs, num_outputs):
        raise ShapeError(
            f"covariance must have shape {(num_points, num_outputs, num_outputs)} (full), "
            f"{(num_points, num_outputs)} (diagonal) or ({num_points},) for scalar outputs, to "
            f"match y of shape {y.shape}; got {covariance.shape}."
        )
    if mask is None:
        mask = jnp.ones(num_points, bool)
    mask = _real("mask", mask)
    if mask.shape != (num_points,) or mask.dtype != bool:
        raise ShapeError(
            f"mask must be a boolean array of shape ({num_points},), got {mask.dtype} {mask.shape}."
        )
    _check_finite("y", y, mask)
    _check_finite("covariance", covariance, mask)
    dtype = jnp.result_type(y, covariance, float)
    eye = jnp.eye(num_outputs, dtype=dtype)
    y = jnp.where(mask[:, None], y, 0.0).astype(dtype)
    covariance = jnp.where(mask[:, None, None], covariance, eye).astype(dtype)
    cholesky = jnp.linalg.cholesky(covariance)
    if _concrete(cholesky, mask) and not bool(jnp.all(jnp.isfinite(cholesky))):
        rows = np.nonzero(~np.isfinite(np.asarray(cholesky)).all(axis=(1, 2)))[0][:5].tolist()
        raise DataError(
            f"covariance is not positive definite at grid rows {rows}. Pass symmetric positive "
            "definite noise covariances (add a small jitter to the diagonal)."
        )
    eye_batch = jnp.broadcast_to(eye, cholesky.shape)
    inverse_cholesky = jsl.solve_triangular(cholesky, eye_batch, lower=True)
    factor = jnp.swapaxes(inverse_cholesky, -1, -2)  # B = L^{-T}, B B^T = R^{-1}
    shift = jnp.einsum("sij,sj->si", inverse_cholesky, y)  # xi = L^{-1} y = B^T y
    log_normaliser = -0.5 * num_outputs * math.log(2 * math.pi) - jnp.sum(
        jnp.log(jnp.diagonal(cholesky, axis1=-2, axis2=-1)), -1
    )
    observed = mask.astype(dtype)
    return Sites(
        factor * observed[:, None, None], shift * observed[:, None], log_normaliser * observed
    )


def natural_sites(
    precision: Float[ArrayLike, "grid output output"],
    shift: Float[ArrayLike, "grid output"],
    mask: Bool[ArrayLike, " grid"] | None = None,
) -> Sites:
    r"""Sites from natural parameters :math:`(\Lambda_s, \eta_s)` (EP messages).

    The site is :math:`\exp(-\frac12 u^\top\Lambda_s u + \eta_s^\top u)`.
    :math:`\Lambda_s` must be symmetric positive semi-definite; it may be singular (a message
    that informs some directions only). :math:`B_s = V\operatorname{diag}(\lambda)^{1/2}` from
    its eigendecomposition, eigenvalues below ``sqrt(eps) * max(lambda)`` treated as zero
    (there, round-off in :math:`\eta_s` would be amplified by :math:`\lambda^{-1/2}`);
    :math:`\xi_s = B_s^+\eta_s` (the part of :math:`\eta_s` outside the range of
    :math:`\Lambda_s`, which a valid message does not have, is dropped);
    :math:`c_s = \frac12\|\xi_s\|^2`. The filter's evidence is then
    :math:`\log\int p(U)\prod_s t_s(U_s)\,\mathrm dU`, the hyperparameter-dependent part of
    the EP marginal likelihood.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace import natural_sites
        >>> sites = natural_sites(jnp.array([[[4.0]]]), jnp.array([[2.0]]))
        >>> float(sites.precision_factor[0, 0, 0]), float(sites.shift[0, 0])
        (2.0, 1.0)
    """
    precision = _real("precision", precision)
    shift = _real("shift", shift)
    if shift.ndim != 2 or precision.shape != (*shift.shape, shift.shape[1]):
        raise ShapeError(
            f"precision must have shape (grid, M, M) and shift (grid, M); got "
            f"{precision.shape} and {shift.shape}."
        )
    if mask is not None:
        mask = _real("mask", mask)
        if mask.shape != shift.shape[:1] or mask.dtype != bool:
            raise ShapeError(
                f"mask must be a boolean array of shape {shift.shape[:1]}, got {mask.dtype} "
                f"{mask.shape}."
            )
    _check_finite("precision", precision, mask)
    _check_finite("shift", shift, mask)
    dtype = jnp.result_type(precision, shift, float)
    precision = 0.5 * (precision + jnp.swapaxes(precision, -1, -2)).astype(dtype)
    values, vectors = jnp.linalg.eigh(precision)
    floor = jnp.sqrt(jnp.finfo(dtype).eps) * jnp.max(jnp.abs(values), -1, keepdims=True)
    kept = values > floor
    root = jnp.sqrt(jnp.where(kept, values, 1.0))
    factor = vectors * jnp.where(kept, root, 0.0)[..., None, :]
    whitened = jnp.where(kept, jnp.einsum("sji,sj->si", vectors, shift.astype(dtype)) / root, 0.0)
    if mask is not None:
        factor = jnp.where(mask[:, None, None], factor, 0.0)
        whitened = jnp.where(mask[:, None], whitened, 0.0)
    return Sites(factor, whitened, 0.5 * jnp.sum(whitened**2, -1))


class SiteTerms(NamedTuple):
    """Pieces of conditioning a state covariance ``P`` on a site (module docstring)."""

    cholesky: Array  # L_C, C = I + BᵀΣB
    gain_factor: Array  # G = L_C⁻¹ Bᵀ
    reduction: Array  # W = G H P, so the gain is K = Wᵀ G
    half_log_det: Array  # ½ log|C|


def site_terms(covariance: Array, observation: Array, factor: Array) -> SiteTerms:
    r"""Factorise :math:`C = I + B^\top H P H^\top B` and form :math:`G` and :math:`W`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace.sites import site_terms
        >>> terms = site_terms(jnp.eye(1), jnp.eye(1), jnp.eye(1))
        >>> round(float(terms.reduction[0, 0]) ** 2, 3)  # P - P⁺ = 1/2 for unit noise
        0.5
    """
    observed_rows = observation @ covariance
    observed_covariance = observed_rows @ observation.T
    inner = factor.T @ observed_covariance @ factor
    inner = jnp.eye(factor.shape[1], dtype=covariance.dtype) + 0.5 * (inner + inner.T)
    cholesky = jnp.linalg.cholesky(inner)
    gain_factor = jsl.solve_triangular(cholesky, factor.T, lower=True)
    return SiteTerms(
        cholesky,
        gain_factor,
        gain_factor @ observed_rows,
        jnp.sum(jnp.log(jnp.diagonal(cholesky))),
    )


def joseph_covariance(covariance: Array, observation: Array, terms: SiteTerms) -> Array:
    r""":math:`P^+ = (I - KH)P(I - KH)^\top + V^\top V` with :math:`K = W^\top G`,
    :math:`V = L_C^{-\top}W`: a sum of two PSD terms, free of cancellation.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace.sites import joseph_covariance, site_terms
        >>> terms = site_terms(jnp.eye(1), jnp.eye(1), jnp.eye(1))
        >>> float(joseph_covariance(jnp.eye(1), jnp.eye(1), terms)[0, 0])
        0.5
    """
    eye = jnp.eye(covariance.shape[0], dtype=covariance.dtype)
    complement = eye - terms.reduction.T @ (terms.gain_factor @ observation)
    spread = jsl.solve_triangular(terms.cholesky.T, terms.reduction, lower=False)
    updated = complement @ covariance @ complement.T + spread.T @ spread
    return 0.5 * (updated + updated.T)


def condition(
    mean: Float[Array, " state"],
    covariance: Float[Array, "state state"],
    observation: Float[Array, "output state"],
    factor: Float[Array, "output output"],
    shift: Float[Array, " output"],
    log_normaliser: Float[Array, ""],
) -> tuple[Float[Array, " state"], Float[Array, "state state"], Float[Array, ""]]:
    r"""Condition :math:`N(m, P)` on one site; return :math:`(m^+, P^+, \log Z)`.

    See the module docstring for the equations.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.statespace.sites import condition
        >>> # prior N(0, 1), observation y = 1 with unit noise: B = 1, xi = 1
        >>> mean, cov, log_z = condition(jnp.zeros(1), jnp.eye(1), jnp.eye(1), jnp.eye(1),
        ...                              jnp.ones(1), jnp.array(-0.5 * jnp.log(2 * jnp.pi)))
        >>> float(mean[0]), float(cov[0, 0]), round(float(log_z), 4)  # log N(1 | 0, 2)
        (0.5, 0.5, -1.5155)
    """
    terms = site_terms(covariance, observation, factor)
    residual = shift - factor.T @ (observation @ mean)
    whitened = jsl.solve_triangular(terms.cholesky, residual, lower=True)
    new_mean = mean + terms.reduction.T @ whitened
    new_covariance = joseph_covariance(covariance, observation, terms)
    log_z = log_normaliser - terms.half_log_det - 0.5 * whitened @ whitened
    return new_mean, new_covariance, log_z
