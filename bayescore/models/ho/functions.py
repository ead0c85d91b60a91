r"""Random functions on continuous domains: Gaussian processes, Brownian motion, linear bases.

Each constructor runs inside a program and returns a callable :math:`f`.

* :func:`gp_fn` with ``method="lazy"`` is exact: the :math:`n+1`-th new query point of a run
  is drawn from the GP conditional given the :math:`n` points queried before it,

  .. math::

      f(x) \mid f(X) = v \;\sim\; \mathcal N\big(k_{xX} K_{XX}^{-1} v,\;
      k(x, x) - k_{xX} K_{XX}^{-1} k_{Xx}\big),

  computed with an incremental Cholesky factor :math:`K_{XX} = LL^\top`, so the product of
  the conditionals is the joint density of :math:`f(X)` whatever the query order. Unlike
  LazyPPL's ``gp`` (whose table starts at :math:`f(0) = 0`), nothing is pinned. A point whose
  conditional variance is below ``rtol`` :math:`\cdot k(x, x)` is determined by the points
  before it (degenerate kernels such as :math:`9xx' + 9` have rank 2) and takes the
  conditional mean without a site.
* :func:`gp_fn` with ``method="hsgp"`` (Hilbert-space basis, ``numpyro.contrib.hsgp``) or
  ``method="rff"`` (random Fourier features) approximates a stationary GP by a
  :class:`LinearBasis` function of a fixed number of latent coefficients: pure and jittable.
* :func:`wiener` is Brownian motion with :math:`W(0) = 0`, exact and lazy: a new point between
  queried neighbours :math:`l < x < r` is drawn from the Brownian bridge
  :math:`\mathcal N\big(W_l + \tfrac{x-l}{r-l}(W_r - W_l),\ \tfrac{(x-l)(r-x)}{r-l}\big)`,
  beyond the queried range from the extension :math:`\mathcal N(W_r, |x - r|)` (the Markov
  property makes the nearest neighbours sufficient; negative times give two-sided motion).
* :func:`linear_basis` is :math:`f(x) = \phi(x)^\top w` with :math:`w` drawn once: exact and
  jittable.

The value sites of the lazy functions are ordinary latent sites at ``(name, x)``, so
importance sampling, SMC and trace MH treat them like any other. A function returned by a run
(a posterior draw) and evaluated at a new point draws from the right conditional, from the
key of the site's address: the same point twice gives the same value
(:mod:`~bayescore.models.ho.sites`).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.hsgp.laplacian import eigenfunctions
from scipy.linalg import solve_triangular

from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int
from bayescore.models.ho.kernels import SPECTRAL_KERNELS
from bayescore.models.ho.keys import canonical
from bayescore.models.ho.runtime import Frame, current_frame
from bayescore.models.ho.sites import sample_in_scope

GP_METHODS = ("lazy", "hsgp", "rff")


def _point(x: Any) -> float | tuple:
    """A query point as an address part: a float, or a nested tuple of floats."""
    array = np.asarray(x, dtype=np.float64)
    return float(array) if array.ndim == 0 else canonical(array)


class LazyGaussianProcess:
    """A zero-mean GP drawn lazily, exactly, point by point (see :func:`gp_fn`).

    Attributes:
        name: the prefix of its sites' addresses ``(name, x)``.
        kernel: the covariance function ``kernel(x, y) -> float``.
        points: the points queried so far, in order; ``values`` their values.

    Example:
        >>> import jax
        >>> from bayescore.models.ho.measure import Random
        >>> def draw():
        ...     f = gp_fn("f", lambda x, y: math.exp(-((x - y) ** 2)))
        ...     return f(0.0), f(0.0), f
        >>> first, again, f = Random.from_model(draw).draw(jax.random.key(0))
        >>> bool(first == again), f.points
        (True, [0.0])
    """

    def __init__(self, name: Any, kernel: Callable, frame: Frame, prefix: tuple, rtol: float):
        self.name = canonical(name)
        self.kernel = kernel
        self.frame = frame
        self.prefix = prefix
        self.rtol = rtol
        self.points: list = []
        self.values: dict = {}
        self._support: list = []  # the points with a site: they carry the conditioning
        self._cholesky = np.zeros((0, 0))
        self._whitened = np.zeros(0)  # L^{-1} f(support)

    def _covariance(self, x: Any, y: Any) -> float:
        as_input = (lambda p: np.asarray(p)) if isinstance(x, tuple) else (lambda p: p)
        return float(self.kernel(as_input(x), as_input(y)))

    def conditional(self, x: Any) -> tuple[float, float, np.ndarray]:
        """Mean, variance and :math:`L^{-1}k_{Xx}` of :math:`f(x)` given the queried points.

        Example:
            >>> gp = LazyGaussianProcess("f", lambda x, y: 1.0, Frame(), (), 1e-10)
            >>> gp.conditional(0.5)[:2]
            (0.0, 1.0)
        """
        point = _point(x)
        prior_variance = self._covariance(point, point)
        if not self._support:
            return 0.0, prior_variance, np.zeros(0)
        cross = np.array([self._covariance(point, other) for other in self._support])
        projection = solve_triangular(self._cholesky, cross, lower=True)
        mean = float(projection @ self._whitened)
        return mean, prior_variance - float(projection @ projection), projection

    def __call__(self, x: Any) -> Any:
        point = _point(x)
        if point in self.values:
            return self.values[point]
        mean, variance, projection = self.conditional(point)
        if variance <= self.rtol * abs(self._covariance(point, point)):
            value = jnp.asarray(mean)
        else:
            scale = math.sqrt(variance)
            value = sample_in_scope(
                self.frame, self.prefix, (self.name, point), dist.Normal(mean, scale)
            )
            size = len(self._support)
            grown = np.zeros((size + 1, size + 1))
            grown[:size, :size] = self._cholesky
            grown[size, :size] = projection
            grown[size, size] = scale
            self._cholesky = grown
            self._whitened = np.append(self._whitened, (float(value) - mean) / scale)
            self._support.append(point)
        self.points.append(point)
        self.values[point] = value
        return value

    def __repr__(self) -> str:
        return f"LazyGaussianProcess({self.name!r}, {len(self.points)} points)"


def gp_fn(
    name: Any,
    kernel: Callable[[Any, Any], float],
    method: str = "lazy",
    *,
    rtol: float = 1e-10,
    boundary: float | None = None,
    num_basis: int = 32,
    num_features: int = 100,
    dim: int = 1,
) -> LazyGaussianProcess | LinearBasis:
    """A random function :math:`f \\sim \\mathcal{GP}(0, k)` in the running program.

    The lazy function takes one point per call: a float, or an array for one point of
    :math:`\\mathbb R^D` (an array is never a batch). The approximations are
    :class:`LinearBasis` functions and take batches.

    Args:
        name: the prefix of the sites' addresses: ``(name, x)`` for the lazy method's values,
            ``(name, "weights")`` (and ``(name, "frequencies")``, ``(name, "mixing")`` for
            ``"rff"``) for the approximations' coefficients.
        kernel: the covariance :math:`k(x, y)`, a plain function of two points (floats, or
            NumPy arrays for vector inputs) returning a float; for ``"hsgp"`` and ``"rff"`` a
            :class:`~bayescore.models.ho.kernels.SquaredExponential` or
            :class:`~bayescore.models.ho.kernels.Matern`, which know their spectral density.
        method: ``"lazy"``, exact sequential conditioning (the module docstring); ``"hsgp"``,
            :math:`f(x) = \\sum_j \\phi_j(x) \\sqrt{S(\\sqrt{\\lambda_j})}\\,\\beta_j`
            with the Laplacian eigenfunctions on :math:`[-L, L]^D` and
            :math:`\\beta \\sim \\mathcal N(0, I)`; ``"rff"``,
            :math:`f(x) = \\sqrt{\\sigma^2/M} \\sum_m a_m \\cos(\\omega_m^\\top x) + b_m
            \\sin(\\omega_m^\\top x)`, :math:`\\omega_m \\sim S/\\sigma^2`. The
            approximations are :class:`LinearBasis` functions: pure and jittable.
        rtol: lazy: a point whose conditional variance is at most ``rtol``
            :math:`\\cdot k(x, x)` takes its conditional mean (no site).
        boundary: hsgp: :math:`L`; the approximation holds well inside :math:`[-L, L]^D`.
        num_basis: hsgp: eigenfunctions per input dimension.
        num_features: rff: :math:`M`, the number of frequencies.
        dim: hsgp and rff: the input dimension :math:`D` (``1``: scalar inputs).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Measure
        >>> def regression():
        ...     f = gp_fn("f", lambda x, y: 9.0 * x * y + 9.0)
        ...     numpyro.sample("y", dist.Normal(f(1.0), 0.5), obs=1.2)
        ...     return f
        >>> f, log_weight, trace = Measure.from_model(regression).run(jax.random.key(0))
        >>> list(trace), bool(f(2.0) == f(2.0))
        ([('f', 1.0), 'y'], True)
    """
    if method not in GP_METHODS:
        raise ArgumentError(
            f"method must be one of {list(GP_METHODS)}, found {method!r}. Pass method='lazy' "
            f"(exact), 'hsgp' or 'rff' (approximate, jittable)."
        )
    if not callable(kernel):
        raise ArgumentError(
            f"kernel must be a function kernel(x, y) -> float, found {type(kernel).__name__}. "
            f"Pass a covariance function such as lambda x, y: math.exp(-((x - y) ** 2))."
        )
    if method == "lazy":
        rtol = check_positive_float("rtol", rtol, allow_zero=True)
        frame = current_frame(required="ho.gp_fn")
        return LazyGaussianProcess(name, kernel, frame, tuple(frame.scope), rtol)
    if not isinstance(kernel, SPECTRAL_KERNELS):
        raise ArgumentError(
            f"kernel must be a SquaredExponential or a Matern for method={method!r} (the "
            f"approximation needs its spectral density), found {type(kernel).__name__}. Pass "
            f"ho.SquaredExponential(variance, lengthscale), or use method='lazy'."
        )
    dim = check_positive_int("dim", dim)
    label = canonical(name)
    if method == "hsgp":
        if boundary is None:
            raise ArgumentError(
                "boundary must be given for method='hsgp': the half-width L of the box "
                "[-L, L]^D the eigenfunctions live on, found None. Centre the inputs and pass "
                "a boundary about 1.5 times their largest absolute value."
            )
        boundary = check_positive_float("boundary", boundary)
        num_basis = check_positive_int("num_basis", num_basis)
        current_frame(required="ho.gp_fn")
        scales = jnp.asarray(kernel.sqrt_spectral_density(boundary, num_basis, dim))
        features = functools.partial(_hilbert_features, scales, boundary, num_basis, dim)
    else:
        num_features = check_positive_int("num_features", num_features)
        current_frame(required="ho.gp_fn")
        normal = dist.Normal(0.0, 1.0).expand([num_features, dim]).to_event(2)
        frequencies = numpyro.sample((label, "frequencies"), normal) / kernel.lengthscale
        if math.isfinite(kernel.frequency_dof):  # a Student-t: a normal over a gamma's root
            half_dof = kernel.frequency_dof / 2.0
            gamma = dist.Gamma(half_dof, half_dof).expand([num_features]).to_event(1)
            frequencies = frequencies / jnp.sqrt(numpyro.sample((label, "mixing"), gamma))[:, None]
        amplitude = math.sqrt(kernel.variance / num_features)
        features = functools.partial(_fourier_features, frequencies, amplitude, dim)
    size = features(jnp.zeros(() if dim == 1 else (dim,))).shape[-1]
    normal = dist.Normal(0.0, 1.0).expand([size]).to_event(1)
    return LinearBasis(features, numpyro.sample((label, "weights"), normal))


def _as_rows(x: Any, dim: int) -> tuple[Any, tuple]:
    """Points as rows ``(n, dim)`` (``(n,)`` when ``dim == 1``) and their batch shape."""
    x = jnp.asarray(x)
    batch = x.shape if dim == 1 else x.shape[:-1]
    return jnp.reshape(x, (-1,) if dim == 1 else (-1, dim)), batch


def _hilbert_features(scales: Any, boundary: float, num_basis: int, dim: int, x: Any) -> Any:
    rows, batch = _as_rows(x, dim)
    basis = eigenfunctions(rows, boundary, num_basis) * scales
    return jnp.reshape(basis, batch + scales.shape)


def _fourier_features(frequencies: Any, amplitude: float, dim: int, x: Any) -> Any:
    rows, batch = _as_rows(x, dim)
    phases = jnp.reshape(rows, (-1, dim)) @ frequencies.T
    basis = amplitude * jnp.concatenate([jnp.cos(phases), jnp.sin(phases)], axis=-1)
    return jnp.reshape(basis, batch + basis.shape[-1:])


class Wiener:
    """Brownian motion :math:`W` with :math:`W(0) = 0`, drawn lazily (see :func:`wiener`).

    Attributes:
        name: the prefix of its sites' addresses ``(name, t)``.
        times: the queried times (0 included), sorted; ``values`` their values.

    Example:
        >>> import jax
        >>> from bayescore.models.ho.measure import Random
        >>> w = Random.from_model(lambda: wiener("w")).draw(jax.random.key(0))
        >>> float(w(0.0)), bool(w(1.5) == w(1.5))
        (0.0, True)
    """

    def __init__(self, name: Any, frame: Frame, prefix: tuple):
        self.name = canonical(name)
        self.frame = frame
        self.prefix = prefix
        self.times: list[float] = [0.0]
        self.values: dict[float, Any] = {0.0: jnp.asarray(0.0)}

    def bridge(self, t: float) -> tuple[float, float]:
        """Mean and variance of :math:`W(t)` given the queried times' values.

        Example:
            >>> w = Wiener("w", Frame(), ())
            >>> w.bridge(2.0)
            (0.0, 2.0)
        """
        position = bisect.bisect_left(self.times, t)
        if position == len(self.times):
            left = self.times[-1]
            return float(self.values[left]), t - left
        if position == 0:
            right = self.times[0]
            return float(self.values[right]), right - t
        left, right = self.times[position - 1], self.times[position]
        fraction = (t - left) / (right - left)
        left_value, right_value = float(self.values[left]), float(self.values[right])
        mean = left_value + fraction * (right_value - left_value)
        return mean, (t - left) * (right - t) / (right - left)

    def __call__(self, t: Any) -> Any:
        time = float(np.asarray(t, dtype=np.float64))
        if time in self.values:
            return self.values[time]
        mean, variance = self.bridge(time)
        value = sample_in_scope(
            self.frame, self.prefix, (self.name, time), dist.Normal(mean, math.sqrt(variance))
        )
        bisect.insort(self.times, time)
        self.values[time] = value
        return value

    def __repr__(self) -> str:
        return f"Wiener({self.name!r}, {len(self.times)} times)"


def wiener(name: Any) -> Wiener:
    """Brownian motion :math:`W`, :math:`W(0) = 0`, :math:`\\mathrm{Cov}(W_s, W_t) =
    \\min(s, t)` for :math:`s, t \\ge 0`, drawn lazily and exactly in the running program.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Measure
        >>> def walk():
        ...     w = wiener("w")
        ...     numpyro.sample("y", dist.Normal(w(2.0), 0.3), obs=1.0)
        ...     return w
        >>> w, log_weight, trace = Measure.from_model(walk).run(jax.random.key(0))
        >>> list(trace), float(trace[("w", 2.0)].distribution.scale) ** 2
        ([('w', 2.0), 'y'], 2.0...)
    """
    frame = current_frame(required="ho.wiener")
    return Wiener(name, frame, tuple(frame.scope))


class LinearBasis:
    """The function :math:`f(x) = \\phi(x)^\\top w` for fixed weights (see :func:`linear_basis`).

    Attributes:
        features: :math:`\\phi`, a JAX function of one point returning a vector.
        weights: :math:`w`.

    Example:
        >>> import jax.numpy as jnp
        >>> f = LinearBasis(lambda x: jnp.array([x, 1.0]), jnp.array([2.0, 1.0]))
        >>> float(f(3.0))
        7.0
    """

    def __init__(self, features: Callable, weights: Any):
        self.features = features
        self.weights = weights

    def __call__(self, x: Any) -> Any:
        return jnp.asarray(self.features(x)) @ self.weights

    def __repr__(self) -> str:
        return f"LinearBasis({jnp.shape(self.weights)[-1]} features)"


def linear_basis(name: Any, features: Callable, prior: Any) -> LinearBasis:
    """A random function :math:`f(x) = \\phi(x)^\\top w`, :math:`w \\sim` ``prior`` drawn once
    at the site ``name``; ``f`` is pure in ``x`` (jit, vmap and grad apply).

    With :math:`w \\sim \\mathcal N(0, \\Sigma)` it is the GP with kernel
    :math:`\\phi(x)^\\top \\Sigma \\phi(x')` (a degenerate one, of rank ``len(w)``).

    Args:
        name: the site of the weights.
        features: :math:`\\phi`, a JAX function of one point returning a vector of length
            ``d``.
        prior: a NumPyro distribution with event shape ``(d,)``.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Random
        >>> def line():
        ...     prior = dist.Normal(0.0, 3.0).expand([2]).to_event(1)
        ...     return linear_basis("w", lambda x: jnp.stack([x, 1.0]), prior)
        >>> f = Random.from_model(line).draw(jax.random.key(0))
        >>> jax.vmap(f)(jnp.arange(3.0)).shape
        (3,)
    """
    if not callable(features):
        raise ArgumentError(
            f"features must be a function of one point returning a vector, found "
            f"{type(features).__name__}. Pass for instance lambda x: jnp.stack([x, 1.0])."
        )
    current_frame(required="ho.linear_basis")
    return LinearBasis(features, numpyro.sample(name, prior))
