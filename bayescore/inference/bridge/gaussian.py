r"""The entropic OT plan and the Schrödinger bridge between two Gaussians, in closed form.

For :math:`P_0 = N(\mu_0, \Sigma_0)`, :math:`P_1 = N(\mu_1, \Sigma_1)` and the reference
process :math:`dX_t = \sqrt{\varepsilon}\, dW_t` on :math:`t \in [0, 1]`, the Schrödinger
bridge (SB) is the law of least :math:`\mathrm{KL}` to the reference with these marginals; its
endpoint coupling :math:`\pi^*` solves entropic OT with cost :math:`\tfrac12\|x-y\|^2` and
weight :math:`\varepsilon` on :math:`\mathrm{KL}(\pi\|P_0\otimes P_1)`. Janati et al. (2020)
and Bunne et al. (AISTATS 2023, "The Schrödinger bridge between Gaussian measures has a closed
form") give (with :math:`A = \Sigma_0^{1/2}\Sigma_1\Sigma_0^{1/2}`)

.. math::

    \pi^* = N\Big(\begin{pmatrix}\mu_0\\ \mu_1\end{pmatrix},
    \begin{pmatrix}\Sigma_0 & C\\ C^\top & \Sigma_1\end{pmatrix}\Big), \qquad
    C = \tfrac12 \Sigma_0^{1/2} (4A + \varepsilon^2 I)^{1/2} \Sigma_0^{-1/2}
        - \tfrac{\varepsilon}{2} I,

and the conditional :math:`\pi^*(y\mid x) = N(\mu_1 + M(x-\mu_0), \varepsilon M)` with the
symmetric positive definite :math:`M = C^\top\Sigma_0^{-1}` (the identity
:math:`\Sigma_1 - C^\top\Sigma_0^{-1}C = \varepsilon M` holds). So the plan is a LightSB model
with one component, :math:`S = M` and :math:`r = \mu_1 - M\mu_0`
(:meth:`~bayescore.inference.bridge.lightsb.LightSB.from_gaussian_bridge`).

Here :math:`M` is computed as :math:`\Sigma_0^{-1/2} U\,\mathrm{diag}(m)\,U^\top
\Sigma_0^{-1/2}` from the eigendecomposition :math:`A = U\mathrm{diag}(\lambda)U^\top` with
:math:`m = 2\lambda / (\sqrt{4\lambda + \varepsilon^2} + \varepsilon)`, which equals
:math:`\tfrac12(\sqrt{4\lambda+\varepsilon^2} - \varepsilon)` without its cancellation at
large :math:`\varepsilon`; then :math:`C = \Sigma_0 M`. Matrix square roots come from
``eigh`` of symmetric matrices.

**ε is the Brownian variance** of the reference process: the reference conditional is
:math:`N(x, \varepsilon I)`. ott-jax's ``epsilon`` (cost :math:`\|x-y\|^2`) is
:math:`2\varepsilon`; torchcfm's and DSBM's ``sigma`` is :math:`\sqrt{\varepsilon}`.

Written by hand: ott-jax has only the unbalanced entropic Bures cost
(``costs.UnbalancedBures``), no plan, marginals or SB drift; no JAX library has these.

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
    >>> bridge = gaussian_bridge(jnp.zeros(1), jnp.eye(1), jnp.zeros(1), jnp.eye(1), 1.0)
    >>> round(float(bridge.cross_covariance[0, 0]), 4)  # (√5 − 1) / 2
    0.618
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from bayescore.core.errors import DataError, ShapeError, check_array, check_positive_float


class GaussianBridge(eqx.Module):
    r"""The entropic OT plan and Schrödinger bridge between :math:`N(\mu_0,\Sigma_0)` and
    :math:`N(\mu_1,\Sigma_1)` with reference :math:`dX_t = \sqrt{\varepsilon}\,dW_t`.

    Build it with :func:`gaussian_bridge` (checked arguments) or
    :meth:`GaussianBridge.from_samples`; the constructor takes the same five arguments.

    Attributes:
        mean0, cov0, mean1, cov1: the two marginals, shapes ``(dim,)`` and ``(dim, dim)``.
        epsilon: the Brownian variance :math:`\varepsilon` of the reference process (ott-jax's
            ``epsilon`` is :math:`2\varepsilon`, torchcfm's ``sigma**2`` is :math:`\varepsilon`).
        cross_covariance: :math:`C = \mathrm{Cov}(X_0, X_1)` under the plan, ``(dim, dim)``.
        conditional_matrix: :math:`M = C^\top\Sigma_0^{-1}`, symmetric positive definite.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.bridge.gaussian import GaussianBridge
        >>> bridge = GaussianBridge(jnp.zeros(2), jnp.eye(2), jnp.ones(2), 4 * jnp.eye(2), 0.5)
        >>> mean, cov = bridge.conditional(jnp.zeros(2))
        >>> tuple(mean.tolist()), round(float(cov[0, 0]), 4)
        ((1.0, 1.0), 0.8828)
    """

    mean0: Float[Array, " dim"]
    cov0: Float[Array, "dim dim"]
    mean1: Float[Array, " dim"]
    cov1: Float[Array, "dim dim"]
    epsilon: float = eqx.field(static=True)
    cross_covariance: Float[Array, "dim dim"]
    conditional_matrix: Float[Array, "dim dim"]

    def __init__(
        self,
        mean0: ArrayLike,
        cov0: ArrayLike,
        mean1: ArrayLike,
        cov1: ArrayLike,
        epsilon: float,
    ) -> None:
        self.epsilon = check_positive_float(
            "epsilon", epsilon, hint="It is the Brownian variance of the reference process."
        )
        self.mean0, self.cov0 = _check_gaussian("mean0", mean0, "cov0", cov0)
        self.mean1, self.cov1 = _check_gaussian("mean1", mean1, "cov1", cov1)
        if self.mean0.shape != self.mean1.shape:
            raise ShapeError(
                f"mean0 and mean1 must have the same dimension, got {self.mean0.shape} and "
                f"{self.mean1.shape}: the bridge connects two distributions on one space."
            )
        root0, inverse_root0 = _sqrt_and_inverse_sqrt(self.cov0)
        middle = _symmetric_function(
            _symmetrise(root0 @ self.cov1 @ root0),
            lambda lam: 2.0 * lam / (jnp.sqrt(4.0 * lam + self.epsilon**2) + self.epsilon),
        )
        self.conditional_matrix = _symmetrise(inverse_root0 @ middle @ inverse_root0)
        self.cross_covariance = self.cov0 @ self.conditional_matrix

    @classmethod
    def from_samples(cls, x0: ArrayLike, x1: ArrayLike, epsilon: float) -> GaussianBridge:
        r"""The Gaussian baseline: the bridge between the Gaussians with the sample moments.

        Means and unbiased covariances (divisor ``n - 1``) of the rows of ``x0`` and ``x1``;
        the sets need not be paired or of equal size.

        Example:
            >>> import jax
            >>> from bayescore.inference.bridge.gaussian import GaussianBridge
            >>> x0 = jax.random.normal(jax.random.key(0), (500, 2))
            >>> x1 = 2.0 + jax.random.normal(jax.random.key(1), (400, 2))
            >>> bridge = GaussianBridge.from_samples(x0, x1, epsilon=1.0)
            >>> round(float(bridge.mean1[0]), 1)
            2.0
        """
        rows0, rows1 = _sample_rows("x0", x0), _sample_rows("x1", x1)
        if rows0.shape[1] != rows1.shape[1]:
            raise ShapeError(
                f"x0 and x1 must have the same number of columns (the dimension), got "
                f"{rows0.shape[1]} and {rows1.shape[1]}."
            )
        moments = [
            (rows.mean(0), np.atleast_2d(np.cov(rows, rowvar=False))) for rows in (rows0, rows1)
        ]
        return cls(*moments[0], *moments[1], epsilon)

    @property
    def dim(self) -> int:
        """The dimension of the space."""
        return self.mean0.shape[0]

    def conditional(
        self, x: Float[ArrayLike, "*batch dim"]
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, "dim dim"]]:
        r"""Mean and covariance of :math:`\pi^*(y\mid x) = N(\mu_1 + M(x - \mu_0), \varepsilon M)`.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(1), jnp.eye(1), jnp.zeros(1), jnp.eye(1), 1.0)
            >>> mean, cov = bridge.conditional(jnp.ones((3, 1)))
            >>> mean.shape, round(float(cov[0, 0]), 4)
            ((3, 1), 0.618)
        """
        x = jnp.asarray(x)
        mean = self.mean1 + (x - self.mean0) @ self.conditional_matrix  # M is symmetric
        return mean, self.epsilon * self.conditional_matrix

    def sample(self, key: PRNGKeyArray, x: Float[ArrayLike, "*batch dim"]) -> Array:
        r"""One draw of :math:`y \sim \pi^*(\cdot\mid x)` per row of ``x`` (same shape as ``x``).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(2), jnp.eye(2), jnp.ones(2), jnp.eye(2), 0.1)
            >>> bridge.sample(jax.random.key(0), jnp.zeros((5, 2))).shape
            (5, 2)
        """
        mean, cov = self.conditional(x)
        factor = jnp.linalg.cholesky(cov)
        noise = jax.random.normal(key, mean.shape, mean.dtype)
        return mean + noise @ factor.T

    def log_prob(
        self, y: Float[ArrayLike, "*batch dim"], x: Float[ArrayLike, "*batch dim"]
    ) -> Float[Array, "*batch"]:
        r""":math:`\log \pi^*(y\mid x)`, the log density of :math:`N(\mu_1 + M(x-\mu_0),
        \varepsilon M)` at ``y`` (batch shapes broadcast).

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(1), jnp.eye(1), jnp.zeros(1), jnp.eye(1), 1.0)
            >>> round(float(bridge.log_prob(jnp.zeros(1), jnp.zeros(1))), 4)  # N(0 | 0, 0.618)
            -0.678
        """
        mean, cov = self.conditional(x)
        return _gaussian_log_density(jnp.asarray(y), mean, cov)

    def marginal(self, t: float | Array) -> tuple[Float[Array, " dim"], Float[Array, "dim dim"]]:
        r"""Mean and covariance of the SB marginal :math:`X_t \sim N(\mu_t, \Sigma_t)`,

        .. math::

            \mu_t = (1-t)\mu_0 + t\mu_1, \qquad
            \Sigma_t = (1-t)^2\Sigma_0 + t^2\Sigma_1 + t(1-t)(C + C^\top)
                       + \varepsilon t(1-t) I,

        since :math:`X_t = (1-t)X_0 + tX_1 + \sqrt{\varepsilon t(1-t)}\,\xi` given the
        endpoints (Brownian bridge) with :math:`(X_0, X_1) \sim \pi^*`.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(1), jnp.eye(1), jnp.zeros(1), jnp.eye(1), 1.0)
            >>> mean, cov = bridge.marginal(0.5)
            >>> round(float(cov[0, 0]), 4)  # 0.25 + 0.25 + 0.25·2C + 0.25
            1.059
        """
        t = jnp.asarray(t, self.cov0.dtype)
        c = self.cross_covariance
        mean = (1.0 - t) * self.mean0 + t * self.mean1
        cov = (
            (1.0 - t) ** 2 * self.cov0
            + t**2 * self.cov1
            + t * (1.0 - t) * (c + c.T)
            + self.epsilon * t * (1.0 - t) * jnp.eye(self.dim, dtype=c.dtype)
        )
        return mean, cov

    def drift(self, x: Float[ArrayLike, "*batch dim"], t: float | Array) -> Array:
        r"""The SB drift :math:`b(x,t) = \mathbb E[(X_1 - X_t)/(1-t) \mid X_t = x]`,

        .. math::

            b(x,t) = \mu_1 - \mu_0 + K_t\Sigma_t^{-1}(x - \mu_t), \qquad
            K_t = t\Sigma_1 - (1-t)\Sigma_0 + (1-t)C^\top - tC - \varepsilon t I,

        with :math:`K_t = \mathrm{Cov}((X_1 - X_t)/(1-t), X_t)`; the SDE
        :math:`dX_t = b(X_t,t)\,dt + \sqrt{\varepsilon}\,dW_t` from :math:`X_0 \sim P_0` has
        the SB marginals. ``t`` is a scalar.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(1), jnp.eye(1), jnp.ones(1), jnp.eye(1), 1.0)
            >>> round(float(bridge.drift(jnp.zeros(1), 0.0)[0]), 4)  # E[X1 - X0 | X0 = 0]
            1.0
        """
        t = jnp.asarray(t, self.cov0.dtype)
        c = self.cross_covariance
        mean_t, cov_t = self.marginal(t)
        gain = (
            t * self.cov1
            - (1.0 - t) * self.cov0
            + (1.0 - t) * c.T
            - t * c
            - self.epsilon * t * jnp.eye(self.dim, dtype=c.dtype)
        )
        regression = jnp.linalg.solve(cov_t, gain.T).T  # K_t Σ_t⁻¹
        return self.mean1 - self.mean0 + (jnp.asarray(x) - mean_t) @ regression.T

    def cost(self) -> Array:
        r"""The entropic OT value with regulariser :math:`\varepsilon\,\mathrm{KL}(\pi\|P_0\otimes
        P_1)`, evaluated at :math:`\pi^*`:

        .. math::

            \tfrac12\big(\|\mu_0-\mu_1\|^2 + \mathrm{tr}\,\Sigma_0 + \mathrm{tr}\,\Sigma_1
            - 2\,\mathrm{tr}\,C\big) + \tfrac{\varepsilon}{2}\big(\log\det\Sigma_1
            - \log\det(\varepsilon M)\big).

        (With the :math:`-\varepsilon H(\pi)` convention the value shifts by a constant.)

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
            >>> bridge = gaussian_bridge(jnp.zeros(2), jnp.eye(2), 3 * jnp.ones(2), jnp.eye(2),
            ...                          epsilon=1e-6)
            >>> round(float(bridge.cost()), 3)  # → W2²/2 = 9 as ε → 0
            9.0
        """
        difference = self.mean0 - self.mean1
        transport = 0.5 * (
            difference @ difference
            + jnp.trace(self.cov0)
            + jnp.trace(self.cov1)
            - 2.0 * jnp.trace(self.cross_covariance)
        )
        log_det1 = jnp.linalg.slogdet(self.cov1)[1]
        log_det_conditional = jnp.linalg.slogdet(self.epsilon * self.conditional_matrix)[1]
        return transport + 0.5 * self.epsilon * (log_det1 - log_det_conditional)


def gaussian_bridge(
    mean0: ArrayLike, cov0: ArrayLike, mean1: ArrayLike, cov1: ArrayLike, epsilon: float
) -> GaussianBridge:
    r"""The closed-form EOT plan / SB between :math:`N(\mu_0,\Sigma_0)` and
    :math:`N(\mu_1,\Sigma_1)` with Brownian variance ``epsilon`` (see :class:`GaussianBridge`).

    Raises :class:`~bayescore.core.errors.ShapeError` for mismatched shapes and
    :class:`~bayescore.core.errors.DataError` for a covariance that is not symmetric positive
    definite or for non-finite values.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.inference.bridge.gaussian import gaussian_bridge
        >>> bridge = gaussian_bridge(jnp.zeros(1), 4 * jnp.eye(1), jnp.zeros(1), jnp.eye(1), 2.0)
        >>> round(float(bridge.cross_covariance[0, 0]), 4)  # ½√(4·4·1 + 4) − 1
        1.2361
    """
    return GaussianBridge(mean0, cov0, mean1, cov1, epsilon)


def _check_gaussian(
    mean_name: str, mean: ArrayLike, cov_name: str, cov: ArrayLike
) -> tuple[Array, Array]:
    """The mean and covariance as arrays, or an error naming the bad one."""
    check_array(mean_name, mean, finite=False, allow_empty=True)  # strings, complex, objects
    check_array(cov_name, cov, finite=False, allow_empty=True)
    mean_array, cov_array = np.asarray(mean), np.asarray(cov)
    if mean_array.ndim != 1 or mean_array.shape[0] < 1:
        raise ShapeError(f"{mean_name} must have shape (dim,), got {mean_array.shape}.")
    dim = mean_array.shape[0]
    if cov_array.shape != (dim, dim):
        raise ShapeError(
            f"{cov_name} must have shape ({dim}, {dim}) to match {mean_name}, got "
            f"{cov_array.shape}."
        )
    for name, array in ((mean_name, mean_array), (cov_name, cov_array)):
        if not np.all(np.isfinite(array)):
            raise DataError(f"{name} contains NaN or inf values; pass finite moments.")
    scale = max(float(np.max(np.abs(cov_array))), np.finfo(np.float32).tiny)
    if np.max(np.abs(cov_array - cov_array.T)) > 1e-5 * scale:
        raise DataError(
            f"{cov_name} must be symmetric, but it differs from its transpose by up to "
            f"{np.max(np.abs(cov_array - cov_array.T)):.3g}. Pass (cov + cov.T) / 2."
        )
    smallest = float(np.linalg.eigvalsh(cov_array.astype(np.float64)).min())
    if smallest <= 0.0:
        raise DataError(
            f"{cov_name} must be positive definite, but its smallest eigenvalue is "
            f"{smallest:.3g}. Add a small multiple of the identity (a jitter)."
        )
    return jnp.asarray(mean), _symmetrise(jnp.asarray(cov))


def _sample_rows(name: str, rows: ArrayLike, min_rows: int = 2) -> np.ndarray:
    """``rows`` as a finite ``(n, dim)`` float array with ``n >= min_rows``, or an error
    naming ``name``."""
    check_array(name, rows, finite=False, allow_empty=True)  # strings, complex, objects
    array = np.asarray(rows)
    if array.ndim != 2 or 0 in array.shape:
        raise ShapeError(f"{name} must have shape (num_samples, dim), got {array.shape}.")
    if array.shape[0] < min_rows:
        raise DataError(f"{name} has {array.shape[0]} rows; a covariance needs at least 2.")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(jnp.zeros(()).dtype)
    finite = np.all(np.isfinite(array), axis=1)
    if not np.all(finite):
        raise DataError(
            f"{name} has NaN or inf values in {int(np.sum(~finite))} rows (the first is row "
            f"{int(np.argmin(finite))}); drop or impute them."
        )
    return array


def _symmetrise(matrix: Array) -> Array:
    return 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))


def _symmetric_function(matrix: Array, function) -> Array:
    """``U f(Λ) Uᵀ`` for the symmetric ``matrix = U Λ Uᵀ``."""
    values, vectors = jnp.linalg.eigh(matrix)
    return (vectors * function(values)) @ vectors.T


def _sqrt_and_inverse_sqrt(matrix: Array) -> tuple[Array, Array]:
    values, vectors = jnp.linalg.eigh(matrix)
    root = jnp.sqrt(values)
    return (vectors * root) @ vectors.T, (vectors / root) @ vectors.T


def _gaussian_log_density(y: Array, mean: Array, cov: Array) -> Array:
    """``log N(y | mean, cov)`` for one ``(dim, dim)`` covariance, batch shapes broadcast."""
    factor = jnp.linalg.cholesky(cov)
    residual = jnp.broadcast_to(y - mean, jnp.broadcast_shapes(y.shape, mean.shape))
    flat = residual.reshape(-1, residual.shape[-1])
    whitened = jax.scipy.linalg.solve_triangular(factor, flat.T, lower=True)
    quadratic = jnp.sum(whitened**2, axis=0).reshape(residual.shape[:-1])
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(factor)))
    return -0.5 * (quadratic + log_det + residual.shape[-1] * jnp.log(2.0 * jnp.pi))


__all__ = ["GaussianBridge", "gaussian_bridge"]
