r"""The Bures–Wasserstein distance between moments, and its unexplained-variance percentage.

For means and covariances :math:`(\hat m, \hat\Sigma)` and :math:`(m, \Sigma)`, the squared
2-Wasserstein distance between :math:`N(\hat m, \hat\Sigma)` and :math:`N(m, \Sigma)` for the
cost :math:`\tfrac12\lVert x - y\rVert^2` (half the usual :math:`W_2^2`) is

.. math::

    \mathrm{BW}(\hat m, \hat\Sigma; m, \Sigma) = \tfrac12 \lVert \hat m - m \rVert^2
    + \tfrac12 \operatorname{tr}\hat\Sigma + \tfrac12 \operatorname{tr}\Sigma
    - \operatorname{tr}\big(\hat\Sigma^{1/2}\, \Sigma\, \hat\Sigma^{1/2}\big)^{1/2},

and the BW₂²-UVP of draws against a reference (Korotin et al. 2021, "Do neural optimal transport
solvers work?", NeurIPS; Gushchin et al. 2023, NeurIPS Datasets & Benchmarks, arXiv:2306.10161,
``benchmark/metrics.py``) is :math:`100 \cdot \mathrm{BW} / (\tfrac12 \operatorname{tr}\Sigma)`:
the percentage of the reference's variance the draws' first two moments leave unexplained
(predicting the reference mean as a point mass gives exactly 100).

Matrix square roots come from a symmetric eigendecomposition with negative eigenvalues (round-off
of a semi-definite matrix) set to zero, and the product is symmetrised before its
eigendecomposition, as the reference code symmetrises ``scipy.linalg.sqrtm``. Empirical
covariances use the unbiased ``1/(n-1)`` normalisation of ``numpy.cov``. Written by hand: ott-jax
has only the unbalanced entropic Bures cost, not this quantity.

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.metrics.bures import bures_wasserstein
    >>> round(float(bures_wasserstein(jnp.zeros(2), jnp.eye(2), jnp.ones(2), 4.0 * jnp.eye(2))), 4)
    2.0
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.errors import DataError, ShapeError, check_array


def _psd_sqrt(matrix: Array) -> Array:
    """Symmetric square root of (batched) positive semi-definite matrices via ``eigh``."""
    values, vectors = jnp.linalg.eigh(0.5 * (matrix + jnp.swapaxes(matrix, -1, -2)))
    root = (vectors * jnp.sqrt(jnp.clip(values, 0.0))[..., None, :]) @ jnp.swapaxes(vectors, -1, -2)
    return 0.5 * (root + jnp.swapaxes(root, -1, -2))


def bures_wasserstein(
    mean: Float[ArrayLike, "*batch dim"],
    covariance: Float[ArrayLike, "*batch dim dim"],
    reference_mean: Float[ArrayLike, "*batch dim"],
    reference_covariance: Float[ArrayLike, "*batch dim dim"],
) -> Float[Array, "*batch"]:
    r"""The BW term :math:`\mathrm{BW}(\hat m, \hat\Sigma; m, \Sigma)` of the module docstring.

    Half the squared Bures–Wasserstein distance (the cost is :math:`\tfrac12\lVert\cdot\rVert^2`),
    as ``benchmark/metrics.py`` of Gushchin et al. (2023) computes it; batched over leading
    axes (they broadcast), jit-able, in the inputs' precision.

    Args:
        mean: :math:`\hat m`, shape ``(..., dim)``.
        covariance: :math:`\hat\Sigma`, positive semi-definite, ``(..., dim, dim)``.
        reference_mean: :math:`m`, ``(..., dim)``.
        reference_covariance: :math:`\Sigma`, positive semi-definite, ``(..., dim, dim)``.

    Returns:
        The BW term, shape of the broadcast batch.

    Raises:
        ShapeError: if the last axes disagree or the covariances are not square.
        DataError: for NaN or inf entries (checked outside ``jit`` only).
        ArgumentError: for arrays of anything but real numbers.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.metrics.bures import bures_wasserstein
        >>> # 1-D: ½(m̂-m)² + ½(σ̂-σ)² = ½ + ½
        >>> distance = bures_wasserstein(jnp.ones(1), 4.0 * jnp.eye(1), jnp.zeros(1), jnp.eye(1))
        >>> round(float(distance), 4)
        1.0
    """
    mean, covariance, reference_mean, reference_covariance = (
        jnp.asarray(check_array(name, value))
        for name, value in (
            ("mean", mean),
            ("covariance", covariance),
            ("reference_mean", reference_mean),
            ("reference_covariance", reference_covariance),
        )
    )
    dim = mean.shape[-1] if mean.ndim else None
    for name, value in (("covariance", covariance), ("reference_covariance", reference_covariance)):
        if value.ndim < 2 or value.shape[-2:] != (dim, dim):
            raise ShapeError(
                f"{name} must have shape (..., {dim}, {dim}) to match mean's last axis {dim}, "
                f"got {value.shape}. Pass a square covariance per mean."
            )
    if reference_mean.ndim < 1 or reference_mean.shape[-1] != dim:
        raise ShapeError(
            f"reference_mean must have last axis {dim} like mean, got shape "
            f"{reference_mean.shape}. Pass means of the same dimension."
        )
    root = _psd_sqrt(covariance)
    product = root @ reference_covariance @ root
    product = 0.5 * (product + jnp.swapaxes(product, -1, -2))
    cross = jnp.sum(jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(product), 0.0)), axis=-1)
    trace = jnp.trace(covariance, axis1=-2, axis2=-1)
    reference_trace = jnp.trace(reference_covariance, axis1=-2, axis2=-1)
    mean_term = 0.5 * jnp.sum((mean - reference_mean) ** 2, axis=-1)
    return mean_term + 0.5 * trace + 0.5 * reference_trace - cross


def empirical_moments(
    samples: Float[ArrayLike, "*batch num_samples dim"],
) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch dim dim"]]:
    r"""Sample mean and unbiased covariance
    :math:`\frac{1}{n-1}\sum_i (y_i-\bar y)(y_i-\bar y)^\top` over the second-last axis.

    The moments the BW₂²-UVP protocol compares (``numpy.cov``'s normalisation), batched over
    leading axes; jit-able.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.metrics.bures import empirical_moments
        >>> mean, cov = empirical_moments(jnp.array([[0.0, 1.0], [2.0, 3.0]]))
        >>> tuple(mean.tolist()), float(cov[0, 1])
        ((1.0, 2.0), 2.0)
    """
    samples = jnp.asarray(check_array("samples", samples))
    if samples.ndim < 2 or samples.shape[-2] < 2:
        raise ShapeError(
            f"samples must have shape (..., num_samples >= 2, dim), got {samples.shape}. A "
            "covariance needs at least two draws."
        )
    mean = jnp.mean(samples, axis=-2)
    centred = samples - mean[..., None, :]
    covariance = jnp.einsum("...ni,...nj->...ij", centred, centred) / (samples.shape[-2] - 1)
    return mean, covariance


def _check_samples(name: str, samples: ArrayLike, dim: int | None = None) -> Array:
    check_array(name, samples, finite=False, allow_empty=True)  # strings, complex, objects
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] < 2 or (dim is not None and samples.shape[1] != dim):
        expected = f"(num_samples >= 2, {dim if dim is not None else 'dim'})"
        raise ShapeError(
            f"{name} must have shape {expected}, got {samples.shape}. Pass a 2-D array of draws."
        )
    if not bool(jnp.all(jnp.isfinite(samples))):
        count = int(np.sum(~np.isfinite(np.asarray(samples))))
        raise DataError(
            f"{name} contains {count} non-finite values (NaN or inf). Remove or fix the "
            "diverged draws before scoring them."
        )
    return samples


def bw_uvp(
    model_samples: Float[ArrayLike, "num_samples dim"],
    reference: Float[ArrayLike, "num_reference dim"]
    | tuple[Float[ArrayLike, " dim"], Float[ArrayLike, "dim dim"]],
) -> float:
    r"""BW₂²-UVP: :math:`100\,\mathrm{BW}(\hat m, \hat\Sigma; m, \Sigma) /
    (\tfrac12 \operatorname{tr}\Sigma)`.

    :math:`(\hat m, \hat\Sigma)` are the empirical moments of ``model_samples``; :math:`(m,
    \Sigma)` are those of ``reference`` when it is an array of draws, or ``reference`` itself
    when it is a ``(mean, covariance)`` pair (e.g. ``(benchmark.y_mean,
    benchmark.y_covariance)`` of an EOT benchmark). Gushchin et al. (2023), arXiv:2306.10161,
    §4 (``compute_BW_UVP_by_gt_samples``), normalised by ½ tr Σ as since revision 2d393a3.

    Args:
        model_samples: draws of the model, ``(num_samples, dim)``.
        reference: draws of the reference ``(num_reference, dim)``, or ``(mean, covariance)``.

    Returns:
        The percentage (0 for matching moments; 100 for a point mass at the reference mean).

    Raises:
        ShapeError: for draws that are not ``(n >= 2, dim)`` or moments of another dimension.
        DataError: for non-finite draws.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.metrics.bures import bw_uvp
        >>> draws = jax.random.normal(jax.random.key(0), (4000, 2))
        >>> round(bw_uvp(jnp.zeros((10, 2)), (jnp.zeros(2), jnp.eye(2))), 6)
        100.0
        >>> bw_uvp(draws, (jnp.zeros(2), jnp.eye(2))) < 0.5
        True
    """
    model_samples = _check_samples("model_samples", model_samples)
    dim = model_samples.shape[1]
    if isinstance(reference, tuple):
        reference_mean, reference_covariance = (jnp.asarray(part) for part in reference)
        if reference_mean.shape != (dim,) or reference_covariance.shape != (dim, dim):
            raise ShapeError(
                f"reference must be (mean ({dim},), covariance ({dim}, {dim})) to match "
                f"model_samples, got shapes {reference_mean.shape} and "
                f"{reference_covariance.shape}. Pass moments of the same dimension."
            )
    else:
        reference_mean, reference_covariance = empirical_moments(
            _check_samples("reference", reference, dim)
        )
    mean, covariance = empirical_moments(model_samples)
    distance = bures_wasserstein(mean, covariance, reference_mean, reference_covariance)
    return float(100.0 * distance / (0.5 * jnp.trace(reference_covariance)))
