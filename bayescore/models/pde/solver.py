r"""GP-HM: a PDE solved as the joint MAP of a GP on a grid, its kernel and two noise precisions.

The solution :math:`u` has a GP prior with a product kernel :math:`k(x, x') = \prod_j
k_j(x_j, x_j')` (per dimension a spectral mixture, see :mod:`~bayescore.models.pde.kernels`).
Its values :math:`\mathcal U` on the collocation grid are parameters; with
:math:`\alpha = C^{-1}\operatorname{vec}\mathcal U` the solution is the GP conditional mean
:math:`u(x) = \sum_a k(x, x_a)\alpha_a`, and its derivatives on the grid are mode products,
:math:`\partial^{n_1}_1\cdots\partial^{n_D}_D u = \alpha\times_1 K_1^{(n_1)}\cdots\times_D
K_D^{(n_D)}` (:mod:`~bayescore.models.pde.kronecker`). (The reference uses
:math:`\mathcal U` itself for :math:`u` and :math:`K_j^{(n)}(K_j+\epsilon I)^{-1}` along one
axis, the same up to the jitter :math:`\epsilon`; here the residual is exactly that of the
function :meth:`GPSolution.predict` returns.) With :math:`\mathbf b` the boundary mismatches
(:math:`N_b` of them) and :math:`\mathbf h` the residual at all :math:`M` grid points, the
objective (Fang et al. 2024, eq. 6; the code's ``loss``) is

.. math::

    \mathcal L = -\log\mathcal N(\operatorname{vec}\mathcal U \mid 0, C)
      - \lambda_b\big[\tfrac{N_b}{2}\log\tau_1 - \tfrac{\tau_1}{2}\|\mathbf b\|^2\big]
      - \big[\tfrac{M}{2}\log\tau_2 - \tfrac{\tau_2}{2}\|\mathbf h\|^2\big],

over :math:`\mathcal U`, every kernel parameter (log-weights, inverse lengthscales,
frequencies) and :math:`\log\tau_1, \log\tau_2`. The weights are optimised as :math:`\log w_q`
with no prior term: a flat prior on :math:`\log w` is the Jeffreys prior
:math:`p(w)\propto 1/w`, under which the log-determinant drives unneeded components' weights
to zero, pruning excess frequencies (:meth:`GPSolution.components` reports the survivors;
between noise levels :func:`solve` also prunes as a discrete step, :func:`prune_components`).

The reference runs Adam (step 0.01) on everything for :math:`10^5`-:math:`10^6` steps.
:func:`solve` can do the same (phase 1), then runs L-BFGS with the precisions held fixed
(phase 2), on the kernels with the grid values profiled out by an exact Gauss-Newton solve
per kernel (variable projection; on a large grid the solve is matrix-free conjugate
gradients, inside Gauss-Newton steps for a nonlinear PDE,
:mod:`~bayescore.models.pde.profiled_cg`), or on values and kernels jointly. Lengthscales
are kept above the grid step and frequencies below the Nyquist frequency
(:meth:`Objective.natural`). The final iterate is returned (no selection on test data).

Beyond the reference: predictions of :math:`u` and any derivative anywhere, and a posterior
standard deviation: the GP conditional variance given :math:`\mathcal U` plus a Laplace
(Gauss-Newton) approximation of the posterior of :math:`\mathcal U` at the MAP with the kernel
and precisions held fixed (exact for a linear PDE at those values).

References:
    Fang, Gu, Hu, Zhe (2024). Solving high frequency and multi-scale PDEs with Gaussian
    processes. ICLR 2024, arXiv:2311.04465 (code: xuangu-fang/Gaussian-Process-Slover-for-
    High-Freq-PDE).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from bayescore.models.pde import Dirichlet, Problem, solve, spectral_mixture
    >>> with jax.enable_x64(True):  # u'' = -sin x on [0, pi], u = 0 at both ends: u = sin x
    ...     problem = Problem(lambda u, d, x: d["xx"] + jnp.sin(x[0]), (0.0, jnp.pi), 12,
    ...                       boundary=[Dirichlet(0.0)])
    ...     solution = solve(problem, spectral_mixture(2, 0.5), num_lbfgs_steps=30,
    ...                      progress=False)
    ...     bool(jnp.abs(solution.predict(jnp.array([[1.0]]))[0] - jnp.sin(1.0)) < 1e-6)
    True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.errors import (
    ArgumentError,
    DataError,
    ShapeError,
    check_array,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.optimise import adam, minimise_lbfgs, optimise
from bayescore.models.pde.collocation import KroneckerSum, collocation_values, kronecker_sum
from bayescore.models.pde.kernels import StationaryKernel, spectral_mixture
from bayescore.models.pde.kronecker import KroneckerCholesky, kronecker_apply, kronecker_cholesky
from bayescore.models.pde.problem import Problem, derivative_orders
from bayescore.models.pde.profiled_cg import CG_TOLERANCE, MAX_CG_ITERATIONS, profiled_values

logger = logging.getLogger(__name__)

LAPLACE_MAX_SIZE = 4096
"""Grids up to this many points get the dense Laplace term in :meth:`GPSolution.std`."""
PREDICT_CHUNK = 1024
"""Points per chunk in :meth:`GPSolution.std` (bounds its memory to ``M * PREDICT_CHUNK``)."""


class Parameters(NamedTuple):
    r"""Everything the GP-HM objective optimises.

    Attributes:
        values: the grid values :math:`\mathcal U`, shape ``(M_1, ..., M_D)`` (whitened
            :math:`(\otimes_j L_j)^{-1}\mathcal U` when the solver runs with ``whiten=True``).
        kernels: one 1-D kernel per dimension.
        log_precision_boundary: :math:`\log\tau_1`.
        log_precision_residual: :math:`\log\tau_2`.
    """

    values: Float[Array, "*grid"]
    kernels: tuple[StationaryKernel, ...]
    log_precision_boundary: Float[Array, ""]
    log_precision_residual: Float[Array, ""]


class GridOperators(NamedTuple):
    r"""The per-dimension matrices of one kernel update on a problem's grid.

    Attributes:
        gram: the Cholesky factors of :math:`K_j + \epsilon I` (:class:`KroneckerCholesky`).
        matrices: per dimension ``{n: K_j^(n)}`` with :math:`[K_j^{(n)}]_{ab} =
            \partial^n k_j(x_a, x_b)/\partial x_a^n`, for :math:`n = 0` (the kernel matrix,
            no jitter) and every order the problem needs.
    """

    gram: KroneckerCholesky
    matrices: tuple[dict[int, Float[Array, "m m"]], ...]

    def field(self, weights: Float[Array, "*grid"], orders: tuple[int, ...]) -> Array:
        r"""A derivative of the GP conditional mean at the grid points, from the weights
        :math:`\alpha = C^{-1}\operatorname{vec}\mathcal U`: :math:`\alpha \times_1
        K_1^{(n_1)} \dots \times_D K_D^{(n_D)}`; ``orders`` :math:`= (n_1, \dots, n_D)`."""
        return kronecker_apply([m[n] for m, n in zip(self.matrices, orders, strict=True)], weights)

    def operator(self, axis: int, order: int) -> Float[Array, "m m"]:
        r"""The dense :math:`K_j^{(n)}(K_j + \epsilon I)^{-1}` for dimension ``axis``: grid values
        to the :math:`n`-th derivative of the conditional mean at the grid points."""
        return self.gram.derivative_operator(axis, self.matrices[axis][order])


@eqx.filter_jit
def grid_operators(
    problem: Problem, kernels: Sequence[StationaryKernel], jitter: float
) -> GridOperators:
    r"""Kernel matrices, their derivatives and Cholesky factors on a problem's grid.

    Kernel matrices come from the :math:`2M_j - 1` lags of the uniform grid
    (:meth:`StationaryKernel.toeplitz`), cost :math:`O(M_j Q)` each, then one Cholesky factor
    of :math:`K_j + \epsilon I` per dimension, :math:`O(M_j^3)`.

    Example:
        >>> from bayescore.models.pde import Problem, squared_exponential
        >>> from bayescore.models.pde.solver import grid_operators
        >>> problem = Problem(lambda u, d, x: d["xx"] + d["y"], [(0, 1), (0, 1)], (5, 6))
        >>> ops = grid_operators(problem, [squared_exponential()] * 2, 1e-4)
        >>> ops.gram.shape, [sorted(m) for m in ops.matrices]
        ((5, 6), [[0, 2], [0, 1]])
    """
    orders: list[set[int]] = [{0} for _ in problem.shape]
    for needed in problem.required_orders():
        for axis, order in enumerate(needed):
            orders[axis].add(order)
    matrices = tuple(
        {n: kernel.toeplitz(size, step, n) for n in sorted(axis_orders)}
        for kernel, size, step, axis_orders in zip(
            kernels, problem.shape, problem.spacing(), orders, strict=True
        )
    )
    gram = kronecker_cholesky([m[0] for m in matrices], jitter)
    return GridOperators(gram, matrices)


def _fields(problem: Problem, ops: GridOperators, weights: Array) -> tuple[Array, Array]:
    """The residual field and the boundary mismatches of the conditional mean with weights
    ``C^-1 U``: the PDE is imposed on the function that :meth:`GPSolution.predict` returns."""
    return problem.fields(lambda orders: ops.field(weights, orders))


class Objective(eqx.Module):
    r"""The GP-HM negative log joint :math:`\mathcal L` (module docstring) of a :class:`Problem`.

    Per evaluation: one Cholesky factor per dimension and :math:`O(M\sum_j M_j)` mode
    products; derivative fields come from :math:`\alpha = C^{-1}\operatorname{vec}\mathcal U`
    (one Kronecker solve) as :math:`\alpha\times_j K_j^{(n)}`, never from dense
    :math:`K^{(n)}K^{-1}` matrices. An ``eqx.Module``, so equal settings reuse the compiled
    optimisation loops.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet, Objective, Problem, squared_exponential
        >>> from bayescore.models.pde.solver import initial_parameters
        >>> problem = Problem(lambda u, d, x: d["xx"], (0, 1), 8, boundary=[Dirichlet(1.0)])
        >>> objective = Objective(problem, boundary_weight=200.0, jitter=1e-4)
        >>> params = initial_parameters(problem, (squared_exponential(),))
        >>> bool(jnp.isfinite(objective(params)[0]))
        True
    """

    problem: Problem
    boundary_weight: float = eqx.field(static=True, default=200.0)
    jitter: float = eqx.field(static=True, default=1e-6)
    whiten: bool = eqx.field(static=True, default=False)
    bounded: bool = eqx.field(static=True, default=False)

    def operators(self, kernels: Sequence[StationaryKernel]) -> GridOperators:
        """:func:`grid_operators` for this problem and jitter (of :meth:`natural` kernels
        when ``bounded``)."""
        if self.bounded:
            kernels = self.natural(kernels)
        return grid_operators(self.problem, kernels, self.jitter)

    def natural(self, kernels: Sequence[StationaryKernel]) -> tuple[StationaryKernel, ...]:
        r"""Kernels from the unconstrained parameters the solver optimises when ``bounded``:
        :math:`\log a = \log a_{\max} - \operatorname{softplus}(\log a_{\max} - \tilde a)`
        and :math:`\mu = \mu_{\max}\tanh(\tilde\mu/\mu_{\max})`, with
        :math:`a_{\max} = 1/h_j` (lengthscales stay above the grid step :math:`h_j`) and
        :math:`\mu_{\max} = 1/(2h_j)` (frequencies below the grid's Nyquist frequency).

        Without these bounds a kernel can fit the collocation equations at the grid points
        and nothing between them (white noise, or an aliased frequency), which L-BFGS finds.
        """
        return tuple(
            _transform(kernel, step, inverse=False)
            for kernel, step in zip(kernels, self.problem.spacing(), strict=True)
        )

    def raw(self, kernels: Sequence[StationaryKernel]) -> tuple[StationaryKernel, ...]:
        """The inverse of :meth:`natural` (parameters at a bound are moved just inside)."""
        return tuple(
            _transform(kernel, step, inverse=True)
            for kernel, step in zip(kernels, self.problem.spacing(), strict=True)
        )

    def grid_values(self, params: Parameters) -> Float[Array, "*grid"]:
        r""":math:`\mathcal U` from the parameters (coloured when whitened)."""
        if not self.whiten:
            return params.values
        return self.operators(params.kernels).gram.color(params.values)

    def terms(self, params: Parameters) -> dict[str, Array]:
        """The objective's parts: ``log_prior``, ``boundary``, ``equation`` (log-likelihoods)."""
        ops = self.operators(params.kernels)
        whitened = params.values if self.whiten else ops.gram.whiten(params.values)
        residual, mismatch = _fields(self.problem, ops, ops.gram.backsolve(whitened))
        return {
            "log_prior": -0.5 * ops.gram.logdet() - 0.5 * jnp.sum(whitened**2),
            "boundary": _gaussian(mismatch, params.log_precision_boundary),
            "equation": _gaussian(residual, params.log_precision_residual),
        }

    def __call__(self, params: Parameters, key: Any = None) -> tuple[Array, Array]:
        """``(loss, loss)``: the shape :func:`bayescore.core.optimise.optimise` takes."""
        terms = self.terms(params)
        loss = -(terms["log_prior"] + self.boundary_weight * terms["boundary"] + terms["equation"])
        return loss, loss

    def scaled_residuals(
        self, ops: GridOperators, log_precisions: tuple[Array, Array]
    ) -> Callable[[Array], Array]:
        r"""The map :math:`\mathbf z \mapsto [\sqrt{\lambda_b\tau_1}\,\mathbf b;\,
        \sqrt{\tau_2}\,\mathbf h]` at :math:`\mathcal U = (\otimes_j L_j)\mathbf z`, whose
        squared norm plus :math:`\|\mathbf z\|^2` is twice the objective at fixed kernel,
        up to constants."""
        scale_b = jnp.sqrt(self.boundary_weight * jnp.exp(log_precisions[0]))
        scale_r = jnp.exp(0.5 * log_precisions[1])

        def scaled(z_flat: Array) -> Array:
            weights = ops.gram.backsolve(z_flat.reshape(self.problem.shape))
            residual, mismatch = _fields(self.problem, ops, weights)
            return jnp.concatenate([scale_b * mismatch, scale_r * residual.ravel()])

        return scaled

    @eqx.filter_jit
    def gauss_newton(
        self,
        kernels: Sequence[StationaryKernel],
        log_precisions: tuple[Array, Array],
        values: Float[Array, "*grid"],
        num_steps: int,
    ) -> Float[Array, "*grid"]:
        r"""Minimise the objective over :math:`\mathcal U` alone (kernel and precisions fixed)
        by ``num_steps`` Gauss-Newton steps from ``values``, in whitened coordinates.

        Each step solves :math:`(I + G^\top G)\,\delta = -(\mathbf z + G^\top\boldsymbol\rho)`
        with :math:`G = \partial\boldsymbol\rho/\partial\mathbf z`
        (:meth:`scaled_residuals`), by a QR factorisation of :math:`[G; I]`
        (:func:`_regularised_least_squares` says why not a Cholesky factor). Dense
        (:math:`O(M^3)`); one step is exact for a linear PDE.
        """
        ops = self.operators(kernels)
        scaled = self.scaled_residuals(ops, log_precisions)
        z = ops.gram.whiten(values).ravel()
        for _ in range(num_steps):
            rho, jacobian = scaled(z), jax.jacfwd(scaled)(z)
            z = z + _regularised_least_squares(jacobian, -rho, -z)
        return ops.gram.color(z.reshape(self.problem.shape))


def _transform(kernel: StationaryKernel, step: float, *, inverse: bool) -> StationaryKernel:
    log_max = -math.log(step)
    frequency_max = 0.5 / step
    if hasattr(kernel, "log_inverse_lengthscale"):
        value = kernel.log_inverse_lengthscale
        if inverse:
            gap = jnp.maximum(log_max - value, 1e-6)
            new = log_max - (gap + jnp.log(-jnp.expm1(-gap)))  # softplus^-1(gap)
        else:
            new = log_max - jax.nn.softplus(log_max - value)
        kernel = eqx.tree_at(lambda k: k.log_inverse_lengthscale, kernel, new)
    if getattr(kernel, "frequency", None) is not None:
        value = kernel.frequency
        if inverse:
            ratio = jnp.clip(value / frequency_max, -1 + 1e-6, 1 - 1e-6)
            new = frequency_max * jnp.arctanh(ratio)
        else:
            new = frequency_max * jnp.tanh(value / frequency_max)
        kernel = eqx.tree_at(lambda k: k.frequency, kernel, new)
    return kernel


def _gaussian(mismatch: Array, log_precision: Array) -> Array:
    r""":math:`\frac N2\log\tau - \frac\tau2\|\mathbf r\|^2`."""
    return 0.5 * mismatch.size * log_precision - 0.5 * jnp.exp(log_precision) * jnp.sum(mismatch**2)


def _regularised_least_squares(jacobian: Array, target: Array, shift: Array) -> Array:
    r"""The :math:`\delta` minimising :math:`\|G\delta - \mathbf t\|^2 + \|\delta - \mathbf s\|^2`,
    by a QR factorisation of :math:`[G; I]`.

    Not by a Cholesky factor of the normal matrix :math:`I + G^\top G`: at the tight
    precisions of phase 2 its condition number is :math:`10^{21}`-:math:`10^{23}` (1-D
    Poisson cases at ``relative_noise=1e-8``), beyond float64, and the profiled objective
    computed from such a solve carried rounding noise of hundreds to thousands of nats
    (``poisson_1d-x_time_sinx``), enough to reorder candidate kernels. The stacked matrix
    has the square root of that condition number.
    """
    size = jacobian.shape[1]
    stacked = jnp.concatenate([jacobian, jnp.eye(size, dtype=jacobian.dtype)])
    right = jnp.concatenate([target, shift])
    # R of [A | b] is [[R, Q^T b], [0, rho]]: Q is never formed (half the work of a full QR)
    r = jnp.linalg.qr(jnp.concatenate([stacked, right[:, None]], axis=1), mode="r")
    return jsl.solve_triangular(r[:size, :size], r[:size, size])


class _Deterministic(eqx.Module):
    """The objective with the precisions held fixed, of ``(values, kernels)``."""

    objective: Objective
    log_precisions: tuple[Array, Array]

    def __call__(self, free: tuple[Array, tuple[StationaryKernel, ...]]) -> Array:
        values, kernels = free
        return self.objective(Parameters(values, kernels, *self.log_precisions))[0]


class _Profiled(eqx.Module):
    r"""The objective profiled over the grid values, of the kernels:
    :math:`F(\theta) = \mathcal L(\hat{\mathcal U}(\theta), \theta)` with
    :math:`\hat{\mathcal U}` from :meth:`Objective.gauss_newton` (dense) or, with
    ``cg_tolerance`` set, from :func:`~bayescore.models.pde.profiled_cg.profiled_values`
    (matrix-free).

    With ``collocation`` set, :math:`\hat{\mathcal U}` is the exact collocation solution
    (:mod:`~bayescore.models.pde.collocation`), the inner minimiser's limit as the precisions
    grow. It is not the minimiser at finite precisions (the PDE at the boundary points is
    not imposed, but :math:`\mathcal L` counts it), so there the envelope gradient below is
    an approximation. The full gradient, through :math:`d\hat{\mathcal U}/d\theta` (the
    adjoint Sylvester equation, :func:`~bayescore.models.pde.collocation.sylvester`), ended
    worse on ``poisson_2d-sin_add_cos`` with GM (relative error :math:`1.2\times10^{-2}`
    against :math:`5.5\times10^{-3}`, in 81 s against 17 s) and equal on advection.

    The gradient is :math:`\partial_\theta\mathcal L` at :math:`\hat{\mathcal U}` held fixed
    (``jax.lax.stop_gradient``): at the exact inner minimiser
    :math:`\partial_{\mathcal U}\mathcal L = 0`, so the term through
    :math:`d\hat{\mathcal U}/d\theta` vanishes (envelope theorem; Golub & Pereyra 1973).
    Chosen over an implicit-function ``custom_vjp`` because that would cost one more linear
    solve per gradient for a term that is zero at the minimiser; the price is a gradient error
    proportional to the solve's residual, which is why the CG tolerance is tight.
    """

    objective: Objective
    log_precisions: tuple[Array, Array]
    start: Array
    num_newton_steps: int = eqx.field(static=True)
    cg_tolerance: float | None = eqx.field(static=True, default=None)
    max_cg_iterations: int = eqx.field(static=True, default=MAX_CG_ITERATIONS)
    collocation: KroneckerSum | None = None

    def values(self, kernels: tuple[StationaryKernel, ...]) -> Array:
        if self.collocation is not None:  # held fixed in the gradient: no need to trace it
            kernels = jax.lax.stop_gradient(kernels)
            ops = self.objective.operators(kernels)
            return collocation_values(self.collocation, ops, self.start)
        if self.cg_tolerance is not None:
            return profiled_values(
                self.objective, kernels, self.log_precisions, self.start,
                tolerance=self.cg_tolerance, max_iterations=self.max_cg_iterations,
                num_newton_steps=self.num_newton_steps,
            )[0]  # fmt: skip
        return self.objective.gauss_newton(
            kernels, self.log_precisions, self.start, self.num_newton_steps
        )

    def __call__(self, kernels: tuple[StationaryKernel, ...]) -> Array:
        values = jax.lax.stop_gradient(self.values(kernels))
        return self.objective(Parameters(values, kernels, *self.log_precisions))[0]


def initial_parameters(
    problem: Problem,
    kernels: Sequence[StationaryKernel],
    values: ArrayLike | None = None,
) -> Parameters:
    r"""The reference's start: :math:`\mathcal U = 0` (or ``values``), :math:`\log\tau_{1,2} = 0`.

    Example:
        >>> from bayescore.models.pde import Problem, squared_exponential
        >>> from bayescore.models.pde.solver import initial_parameters
        >>> problem = Problem(lambda u, d, x: d["xx"], (0, 1), 8)
        >>> initial_parameters(problem, [squared_exponential()]).values.shape
        (8,)
    """
    dtype = jnp.result_type(float)
    if values is None:
        grid_values = jnp.zeros(problem.shape, dtype)
    else:
        check_array("init_values", values, finite=False, allow_empty=True)
        grid_values = jnp.asarray(values, dtype)
        if grid_values.shape != problem.shape:
            raise ShapeError(
                f"init_values has shape {grid_values.shape}, but the problem's grid has shape "
                f"{problem.shape}. Pass one value per grid point."
            )
        if not bool(jnp.all(jnp.isfinite(grid_values))):
            raise DataError("init_values has non-finite entries. Replace the NaN/inf values.")
    kernels = tuple(jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), k) for k in kernels)
    zero = jnp.zeros((), dtype)
    return Parameters(grid_values, kernels, zero, zero)


class SolveInfo(NamedTuple):
    """What a fit did.

    Attributes:
        loss: the objective before every step, Adam's then L-BFGS's, shape ``(steps,)``.
        num_adam_steps: Adam steps run.
        num_lbfgs_steps: L-BFGS iterations run.
        wall_time: seconds, compilation included.
        stages: per noise level of phase 2, ``(relative_noise, validation_residual)``, the
            second ``nan`` without a validation problem (see :func:`solve`).
        selected: the index in ``stages`` of the returned solution.
        kept: per pruning between noise levels (``prune``), the number of components kept
            in each dimension's kernel.
    """

    loss: np.ndarray
    num_adam_steps: int
    num_lbfgs_steps: int
    wall_time: float
    stages: tuple[tuple[float, float], ...] = ()
    selected: int = -1
    kept: tuple[tuple[int, ...], ...] = ()


class Component(NamedTuple):
    """One component of a fitted 1-D kernel, as :meth:`GPSolution.components` reports it."""

    frequency: float
    weight: float
    share: float
    inverse_lengthscale: float


class GPSolution(eqx.Module):
    r"""A fitted GP-HM solution: the grid values, kernels and precisions at the MAP.

    Attributes:
        problem: the :class:`Problem` solved.
        values: :math:`\mathcal U` on the collocation grid.
        kernels: the fitted 1-D kernels, one per dimension.
        log_precision_boundary: :math:`\log\tau_1`.
        log_precision_residual: :math:`\log\tau_2`.
        jitter: :math:`\epsilon` on each :math:`K_j`'s diagonal.
        boundary_weight: :math:`\lambda_b`.
        info: the loss history and timing (:class:`SolveInfo`).
    """

    problem: Problem
    values: Float[Array, "*grid"]
    kernels: tuple[StationaryKernel, ...]
    log_precision_boundary: Float[Array, ""]
    log_precision_residual: Float[Array, ""]
    jitter: float = eqx.field(static=True)
    boundary_weight: float = eqx.field(static=True)
    info: SolveInfo | None = None

    def operators(self) -> GridOperators:
        """:func:`grid_operators` at the fitted kernels."""
        return grid_operators(self.problem, self.kernels, self.jitter)

    def objective(self) -> Objective:
        """The :class:`Objective` this solution was fitted under."""
        return Objective(self.problem, self.boundary_weight, self.jitter)

    def _cross(
        self, coordinates: Sequence[Array], orders: tuple[int, ...]
    ) -> list[Float[Array, "p m"]]:
        r"""Per dimension :math:`[\partial^n k_j(z_p, x_a)]_{pa}` for points' coordinates."""
        return [
            kernel.matrix(c, axis, order)
            for kernel, c, axis, order in zip(
                self.kernels, coordinates, self.problem.axes(), orders, strict=True
            )
        ]

    def predict(
        self, points: Float[ArrayLike, "num_points dim"], derivative: str = ""
    ) -> Float[Array, " num_points"]:
        r"""The conditional mean :math:`k(z, X) C^{-1}\operatorname{vec}\mathcal U` (or a
        derivative, named as in the residual, e.g. ``"xx"``) at scattered points.

        Example:
            >>> # see the module example; points have shape (num_points, D)
        """
        points = _check_points(points, self.problem.dim)
        return _predict_points(self, points, _orders(derivative, self.problem))

    def predict_grid(
        self, axes: Sequence[Float[ArrayLike, " n"]], derivative: str = ""
    ) -> Float[Array, "*test_grid"]:
        r"""The conditional mean (or a derivative) on the tensor grid of ``axes``, by mode
        products: :math:`\mathcal U^* = (C^{-1}\mathcal U)\times_1 K_1(Z_1, X_1) \dots`.

        Example:
            >>> # GP-HM's 2-D prediction: U* = K1(*,X1) K1^-1 U K2^-1 K2(X2,*)
        """
        if len(axes) != self.problem.dim:
            raise ShapeError(
                f"axes has {len(axes)} coordinate arrays, but the problem has "
                f"{self.problem.dim} dimension(s). Pass one 1-D array per dimension."
            )
        arrays = tuple(_check_axis(a, j) for j, a in enumerate(axes))
        return _predict_grid(self, arrays, _orders(derivative, self.problem))

    def residual(self) -> Float[Array, "*grid"]:
        """The PDE residual of the conditional mean at the grid points."""
        return _mismatches(self)[0]

    def boundary_mismatch(self) -> Float[Array, " boundary"]:
        r"""The boundary mismatches (:math:`u - g`, :math:`\partial_n u - h`) on the faces."""
        return _mismatches(self)[1]

    def residual_on(self, problem: Problem) -> Float[Array, "*other_grid"]:
        r"""The PDE residual of the conditional mean on the grid of another ``problem``.

        ``problem`` states the same PDE on a different grid of the same box (for instance
        one point fewer per dimension, so that its points fall between the collocation
        points): the residual there is an error check that needs no solution data. For
        :math:`\Delta u = f` with Dirichlet data it bounds the error itself,
        :math:`\|u - u^\star\|_\infty \le C\,\|\Delta u - f\|_\infty` (maximum principle).

        Example:
            >>> # solution.residual_on(case_problem(name, grid_size=n - 1))
        """
        _check_validation(self.problem, problem)
        return _residual_on(self, problem)

    def validation_residual(self, problem: Problem) -> float:
        r"""The root mean square of :meth:`residual_on` relative to that of the source (the
        residual at :math:`u = 0`): :func:`solve`'s criterion for choosing a noise level.

        Example:
            >>> # solution.validation_residual(case_problem(name, grid_size=n - 1))
        """
        _check_validation(self.problem, problem)
        return float(_relative_residual(self, problem, _source_rms(problem)))

    def laplace_factor(self, max_size: int = LAPLACE_MAX_SIZE) -> Float[Array, "M M"]:
        r"""The Cholesky factor :math:`R` of the whitened Gauss-Newton precision
        :math:`P = I + G^\top G`, :math:`G = \partial[\sqrt{\lambda_b\tau_1}\,\mathbf b;\,
        \sqrt{\tau_2}\,\mathbf h] / \partial \mathbf z` at :math:`\mathcal U = L\mathbf z`.

        Dense in :math:`M`, so grids above ``max_size`` points raise :class:`ArgumentError`.
        """
        size = self.problem.size
        if size > max_size:
            raise ArgumentError(
                f"the Laplace term needs a dense {size} x {size} precision (grid "
                f"{self.problem.shape}), above max_size={max_size}. Pass laplace=False for the "
                "GP conditional part only, or raise max_size if memory allows."
            )
        return _laplace_factor(self)

    def std(
        self,
        points: Float[ArrayLike, "num_points dim"],
        derivative: str = "",
        *,
        laplace: bool = True,
        max_size: int = LAPLACE_MAX_SIZE,
    ) -> Float[Array, " num_points"]:
        r"""Posterior standard deviation of :math:`u` (or a derivative) at scattered points.

        :math:`\sigma^2(z) = \underbrace{k_{**} - \|\mathbf w\|^2}_{\text{GP conditional}} +
        \underbrace{\|R^{-1}\mathbf w\|^2}_{\text{Laplace}}`, with
        :math:`\mathbf w = (\otimes_j L_j^{-1}) k(X, z)` and :math:`R` from
        :meth:`laplace_factor`; the kernel and the precisions are held at their MAP values.
        With ``laplace=False`` only the conditional part (the interpolation uncertainty given
        the grid values).
        """
        points = _check_points(points, self.problem.dim)
        orders = _orders(derivative, self.problem)
        factor = self.laplace_factor(max_size) if laplace else None
        chunks = [
            _std_chunk(self, points[i : i + PREDICT_CHUNK], orders, factor)
            for i in range(0, len(points), PREDICT_CHUNK)
        ]
        return jnp.concatenate(chunks)

    def components(self, threshold: float = 1e-3) -> tuple[tuple[Component, ...], ...]:
        r"""Per dimension, the kernel components whose weight share :math:`w_q/\sum_r w_r` is at
        least ``threshold``, largest first: the frequencies that survived pruning.

        Example:
            >>> # solution.components() per dimension, largest first: .frequency, .share
        """
        out = []
        for kernel in self.kernels:
            weight = np.exp(np.asarray(kernel.log_weight, dtype=float))
            share = weight / weight.sum()
            frequency = (
                np.zeros_like(weight) if kernel.frequency is None else np.asarray(kernel.frequency)
            )
            inverse = np.exp(np.asarray(kernel.log_inverse_lengthscale, dtype=float))
            keep = [q for q in np.argsort(-share) if share[q] >= threshold]
            out.append(
                tuple(
                    Component(
                        float(abs(frequency[q])),
                        float(weight[q]),
                        float(share[q]),
                        float(inverse[q]),
                    )
                    for q in keep
                )
            )
        return tuple(out)


@eqx.filter_jit
def _predict_points(solution: GPSolution, points: Array, orders: tuple[int, ...]) -> Array:
    weights = solution.operators().gram.solve(solution.values)
    cross = solution._cross([points[:, j] for j in range(points.shape[1])], orders)
    out = jnp.tensordot(cross[0], weights, axes=(1, 0))  # (P, M_2, ..., M_D)
    for matrix in cross[1:]:
        out = jnp.einsum("pa,pa...->p...", matrix, out)
    return out


@eqx.filter_jit
def _predict_grid(solution: GPSolution, axes: tuple[Array, ...], orders: tuple[int, ...]) -> Array:
    weights = solution.operators().gram.solve(solution.values)
    return kronecker_apply(solution._cross(axes, orders), weights)


@eqx.filter_jit
def _residual_on(solution: GPSolution, problem: Problem) -> Array:
    weights = solution.operators().gram.solve(solution.values)
    return problem.fields(
        lambda orders: kronecker_apply(solution._cross(problem.axes(), orders), weights)
    )[0]


def _relative_residual(solution: GPSolution, problem: Problem, scale: float) -> Array:
    """The root mean square of the residual on ``problem``'s grid over ``scale`` (traceable)."""
    return jnp.sqrt(jnp.mean(_residual_on(solution, problem) ** 2)) / scale


def _source_rms(problem: Problem) -> float:
    """The root mean square of the residual at :math:`u = 0` (the source), 1 when it is 0."""
    zeros = jnp.zeros(problem.shape)
    return _rms(problem.residual_field(zeros, lambda orders: zeros)) or 1.0


def _check_validation(problem: Problem, validation: object) -> None:
    if not isinstance(validation, Problem):
        raise ArgumentError(
            f"validation must be a Problem, got {type(validation).__name__}. Pass the same PDE "
            "on another grid of the same box, e.g. case_problem(name, grid_size=n - 1)."
        )
    if validation.dim != problem.dim or validation.derivatives != problem.derivatives:
        raise ArgumentError(
            f"validation states a different PDE: dimension {validation.dim} with derivatives "
            f"{validation.derivatives}, against {problem.dim} with {problem.derivatives}. "
            "Pass the same residual on another grid of the same box."
        )
    if not np.allclose(validation.domain, problem.domain):
        raise ArgumentError(
            f"validation's box {validation.domain} differs from the problem's "
            f"{problem.domain}; pass a grid of the same box."
        )


@eqx.filter_jit
def _mismatches(solution: GPSolution) -> tuple[Array, Array]:
    ops = solution.operators()
    return _fields(solution.problem, ops, ops.gram.solve(solution.values))


@eqx.filter_jit
def _laplace_factor(solution: GPSolution) -> Array:
    ops = solution.operators()
    whitened = ops.gram.whiten(solution.values)
    scaled = solution.objective().scaled_residuals(
        ops, (solution.log_precision_boundary, solution.log_precision_residual)
    )
    jacobian = jax.jacfwd(scaled)(whitened.ravel())
    precision = jnp.eye(whitened.size, dtype=jacobian.dtype) + jacobian.T @ jacobian
    return jnp.linalg.cholesky(precision)


@eqx.filter_jit
def _std_chunk(
    solution: GPSolution, chunk: Array, orders: tuple[int, ...], factor: Array | None
) -> Array:
    gram = solution.operators().gram
    prior = jnp.ones((), chunk.dtype)
    for kernel, n in zip(solution.kernels, orders, strict=True):
        prior = prior * (-1.0) ** n * kernel.lag_derivative(2 * n)(jnp.zeros((), chunk.dtype))
    cross = solution._cross([chunk[:, j] for j in range(chunk.shape[1])], orders)
    columns = [
        jsl.solve_triangular(factor_j, matrix.T, lower=True)
        for factor_j, matrix in zip(gram.factors, cross, strict=True)
    ]
    w = columns[0]
    for column in columns[1:]:
        w = (w[:, None, :] * column[None, :, :]).reshape(-1, chunk.shape[0])
    variance = prior - jnp.sum(w**2, axis=0)
    if factor is not None:
        variance = variance + jnp.sum(jsl.solve_triangular(factor, w, lower=True) ** 2, axis=0)
    return jnp.sqrt(jnp.maximum(variance, 0.0))


@eqx.filter_jit
def _evaluate(objective: Objective, params: Parameters) -> Array:
    return objective(params)[0]


@eqx.filter_jit
def _profiled_objective(profiled: _Profiled, kernels: tuple[StationaryKernel, ...]) -> Array:
    return profiled(kernels)


@eqx.filter_jit
def _profiled_values(profiled: _Profiled, kernels: tuple[StationaryKernel, ...]) -> Array:
    return profiled.values(kernels)


PRUNE_CANDIDATES = (1, 2, 3, 5, 10, 20)
"""The component counts :func:`prune_components` tries (and the kernel's own count)."""
PRUNED_LOG_WEIGHT_GAP = 50.0
r"""A pruned component's :math:`\log w` sits this far below the largest kept one's."""


def prune_components(
    objective: Objective,
    params: Parameters,
    num_newton_steps: int = 1,
    collocation: KroneckerSum | None = None,
) -> tuple[Parameters, tuple[int, ...]]:
    r"""Keep in each kernel only its :math:`k` largest-weight components, :math:`k` chosen
    by the profiled objective; returns the parameters and the counts kept per dimension.

    Dimension by dimension, the candidates keep the :math:`k` largest :math:`w_q` for
    :math:`k` in :data:`PRUNE_CANDIDATES` below the kernel's :math:`Q` (the components not
    pruned yet) and :math:`k = Q`;
    each is scored by :math:`\mathcal L(\hat{\mathcal U}(\theta), \theta)` at the
    precisions in ``params`` (the grid values solved densely, as ``method="profile"``, or
    by ``collocation``, as ``method="collocation"``), and the smallest wins, so nothing is
    pruned unless the objective falls. A pruned component's log-weight is set
    :data:`PRUNED_LOG_WEIGHT_GAP` below the largest: it stays in the arrays (the compiled
    loops keep their shapes) with a gradient of about zero.

    This is the Jeffreys prior's pruning done as a discrete step: L-BFGS drives unneeded
    weights down only slowly, since the gradient in :math:`\log w_q` scales with
    :math:`w_q`. Kernels without log-weights, or with one component, are left as they are.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet, Objective, Problem, spectral_mixture
        >>> from bayescore.models.pde.solver import initial_parameters, prune_components
        >>> with jax.enable_x64(True):  # u'' = -sin x on [0, pi]: u = sin x, one frequency
        ...     problem = Problem(lambda u, d, x: d["xx"] + jnp.sin(x[0]), (0.0, jnp.pi), 16,
        ...                       boundary=[Dirichlet(0.0)])
        ...     objective = Objective(problem, jitter=1e-6, bounded=True)
        ...     params = initial_parameters(problem, (spectral_mixture(4, 1.0),))
        ...     params = params._replace(kernels=objective.raw(params.kernels),
        ...                              log_precision_boundary=jnp.asarray(20.0),
        ...                              log_precision_residual=jnp.asarray(10.0))
        ...     pruned, kept = prune_components(objective, params)
        ...     kernel = pruned.kernels[0]
        ...     frequencies = [round(float(f), 2) for f in kernel.frequency[kernel.log_weight > -9]]
        >>> kept, frequencies  # of 0, 1/3, 2/3, 1 cycles: the smooth one (half a period of sin)
        ((1,), [0.0])
    """
    profiled = _Profiled(
        objective,
        (params.log_precision_boundary, params.log_precision_residual),
        params.values,
        num_newton_steps,
        collocation=collocation,
    )
    kernels = tuple(params.kernels)
    counts = []
    for axis, kernel in enumerate(kernels):
        log_weight = getattr(kernel, "log_weight", None)
        size = _active_count(kernel)
        if size < 2:
            counts.append(size)
            continue
        order = np.argsort(-np.asarray(log_weight))
        best_count, best_score = size, float(_profiled_objective(profiled, kernels))
        for count in (c for c in PRUNE_CANDIDATES if c < size):
            candidate = _with_kernel(kernels, axis, _keep_largest(kernel, order, count))
            value = float(_profiled_objective(profiled, candidate))
            if value < best_score:  # NaN never wins
                best_count, best_score = count, value
        kernels = _with_kernel(kernels, axis, _keep_largest(kernel, order, best_count))
        counts.append(best_count)
    return params._replace(kernels=kernels, values=profiled.values(kernels)), tuple(counts)


def _active_count(kernel: StationaryKernel) -> int:
    """The number of components not pruned (log-weight within half the gap of the largest)."""
    log_weight = getattr(kernel, "log_weight", None)
    if log_weight is None:
        return 0
    log_weight = np.asarray(log_weight)
    return int(np.sum(log_weight > log_weight.max() - 0.5 * PRUNED_LOG_WEIGHT_GAP))


def _keep_largest(kernel: StationaryKernel, order: np.ndarray, count: int) -> StationaryKernel:
    # in NumPy: eagerly in JAX, every count's scatter would compile a program of its own
    log_weight = np.asarray(kernel.log_weight)
    dropped = np.zeros(log_weight.shape, bool)
    dropped[order[count:]] = True
    floor = log_weight.max() - PRUNED_LOG_WEIGHT_GAP
    kept = jnp.asarray(np.where(dropped, floor, log_weight), jnp.result_type(kernel.log_weight))
    return eqx.tree_at(lambda k: k.log_weight, kernel, kept)


def _with_kernel(
    kernels: tuple[StationaryKernel, ...], axis: int, kernel: StationaryKernel
) -> tuple[StationaryKernel, ...]:
    return kernels[:axis] + (kernel,) + kernels[axis + 1 :]


def solve(
    problem: Problem,
    kernel: StationaryKernel | Sequence[StationaryKernel] | None = None,
    *,
    num_adam_steps: int = 0,
    learning_rate: float = 1e-2,
    num_lbfgs_steps: int | Sequence[int] = 500,
    method: str = "auto",
    log_precision: tuple[float, float] | None = None,
    relative_noise: float | Sequence[float] = 1e-6,
    validation: Problem | None = None,
    check_every: int = 1,
    prune: bool = True,
    num_rounds: int = 1,
    num_newton_steps: int | None = None,
    boundary_weight: float = 200.0,
    jitter: float = 1e-6,
    whiten: bool = False,
    init_values: ArrayLike | None = None,
    max_dense_size: int = LAPLACE_MAX_SIZE,
    cg_tolerance: float = CG_TOLERANCE,
    max_cg_iterations: int = MAX_CG_ITERATIONS,
    progress: bool = True,
) -> GPSolution:
    r"""Solve ``problem`` by GP-HM: the MAP of grid values, kernels and noise precisions.

    Two phases, both on the objective :math:`\mathcal L` of the module docstring:

    1. ``num_adam_steps`` of Adam on everything, :math:`\log\tau_{1,2}` included (the
       reference's whole method, which runs 1e5-1e6 steps). Optional.
    2. ``num_lbfgs_steps`` of L-BFGS with the precisions held at ``log_precision``.
       ``method="profile"`` optimises the kernels only, the grid values being the exact
       minimiser for each kernel (Gauss-Newton in whitened coordinates, :math:`O(M^3)`, one
       step for a linear PDE; variable projection, Golub & Pereyra 1973);
       ``method="profile_cg"`` profiles too, solving for the grid values by conjugate
       gradients in per-axis spectral coordinates (matrix-free, ``num_newton_steps``
       Gauss-Newton steps for a nonlinear PDE, :mod:`~bayescore.models.pde.profiled_cg`);
       ``method="collocation"`` profiles with the exact collocation solution, a direct
       Sylvester solve per kernel, for a linear PDE whose operator is a sum of one-axis
       terms with constant coefficients (Poisson, advection) with Dirichlet data on every
       face, on a 1-D or 2-D grid, or by ``num_newton_steps`` Newton steps on the same
       equations (GMRES preconditioned by the Kronecker sum) when the residual is nonlinear
       in :math:`u` alone (Allen-Cahn) (:mod:`~bayescore.models.pde.collocation`; it solves
       the advection case, where conjugate gradients stall);
       ``method="joint"`` optimises grid values and kernels together (matrix-free, any
       grid, any PDE). ``"auto"`` profiles densely when the grid has at most
       ``max_dense_size`` points, else uses ``"collocation"`` when the problem qualifies
       (on the paper's 2-D cases it was 3.5-14 000 times more accurate than
       ``"profile_cg"`` with the spectral mixtures, in a fraction of the time) and
       ``"profile_cg"`` when it does not (on 2-D Allen-Cahn at 100 x 100 it reached a 20
       times smaller PDE residual than 2000 Adam and 500 joint L-BFGS steps).

    The precisions are held fixed in phase 2 because the joint MAP is unbounded in them:
    with :math:`\mathbf b, \mathbf h \to 0`, :math:`\tfrac N2\log\tau \to \infty`. The
    reference's Adam anneals them slowly instead. The final iterate is returned (no
    checkpoint selection on test data).

    Args:
        problem: the PDE (:class:`Problem`).
        kernel: one 1-D kernel for every dimension, or one per dimension. Default: a Gaussian
            :func:`spectral_mixture` with 30 components and frequencies up to half the grid's
            Nyquist frequency. Baselines: :func:`squared_exponential`, :func:`matern`.
        num_adam_steps: Adam steps first (phase 1).
        learning_rate: Adam's step size (the reference's 0.01).
        num_lbfgs_steps: L-BFGS iterations (``optax.lbfgs``, zoom line search) of phase 2,
            per noise level; or one count per level of ``relative_noise`` (later levels start
            near their optimum and need few: a warm start at tighter precisions is stiff,
            and each iteration's line search can take many evaluations).
        method: ``"profile"``, ``"profile_cg"``, ``"collocation"``, ``"joint"`` or
            ``"auto"`` (see above). A problem that ``"collocation"`` cannot solve raises
            :class:`~bayescore.core.errors.ArgumentError` saying why.
        log_precision: :math:`(\log\tau_1, \log\tau_2)` for phase 2; default from
            ``relative_noise``.
        relative_noise: phase 2's noise standard deviations relative to the data's scale:
            :math:`\tau_2^{-1/2}` is ``relative_noise`` times the root mean square of the
            residual at :math:`u = 0` (the source), :math:`\tau_1^{-1/2}` times the solution's
            scale: the largest root mean square of the boundary data, of the grid values after
            Adam and (``"profile"``, ``"profile_cg"``) of a first grid solve at the initial
            kernel. A decreasing sequence runs phase 2 once per level, each starting from
            the previous level's kernels and grid values (continuation in the precisions, as
            the reference's Adam anneals them), and returns the level with the smallest
            :meth:`GPSolution.validation_residual` on ``validation`` (the last level without
            one) among the levels after the last pruning (``prune``) that removed
            components; :attr:`SolveInfo.stages` lists the levels and their residuals.
        validation: the same PDE on another grid of the same box (e.g. one point fewer per
            dimension). With it, each level returns its iterate with the smallest
            validation residual (scored every ``check_every`` L-BFGS iterations), and the
            level with the smallest is returned: a selection that needs no solution data,
            unlike the reference's best-of-20 test-set checkpoints.
        check_every: how often (in L-BFGS iterations) the validation residual is scored.
        prune: with ``method="profile"`` or ``"collocation"``, between noise levels, keep
            in each dimension's kernel only its ``k`` largest components, ``k`` chosen by
            the profiled objective at that level's precisions (:func:`prune_components`;
            a selection by the training objective). L-BFGS prunes through the Jeffreys
            prior only slowly: on ``poisson_1d-single_sin`` 30 iterations leave all 30
            Matérn components with 3-6 % of the weight each, and keeping the two largest
            lowers the objective by about 1300 nats and the test error from
            :math:`3\times10^{-6}` to :math:`2\times10^{-8}`. :attr:`SolveInfo.kept` lists
            the components kept.
        num_rounds: phase 2 in this many L-BFGS runs, each restarting Gauss-Newton from the
            last grid values (matters for nonlinear PDEs only).
        num_newton_steps: Gauss-Newton steps per grid solve (Newton steps with
            ``method="collocation"``); default 1 for a PDE whose residual is affine in
            :math:`u` and its derivatives, else 4.
        boundary_weight: :math:`\lambda_b` (reference: 200; 500 for advection).
        jitter: :math:`\epsilon` on each :math:`K_j` (reference: 1e-6 in float64; run under
            ``jax.enable_x64(True)``: float32 Cholesky factors of these matrices fail).
        whiten: let phase 1 optimise :math:`(\otimes_j L_j)^{-1}\mathcal U` instead of
            :math:`\mathcal U` (same objective, better conditioned).
        init_values: starting grid values (default zeros, as the reference).
        max_dense_size: the largest grid that ``"auto"`` profiles densely.
        cg_tolerance: ``"profile_cg"``'s stopping rule, the relative residual norm of the
            normal equations.
        max_cg_iterations: ``"profile_cg"``'s iteration cap per grid solve.
        progress: show a progress bar per phase.

    Returns:
        :class:`GPSolution` at the final iterate.

    Example:
        >>> # see the module docstring: Problem(...) then solve(problem, kernel, ...)
    """
    if not isinstance(problem, Problem):
        raise ArgumentError(f"problem must be a Problem, got {type(problem).__name__}.")
    kernels = _check_kernels(problem, kernel)
    num_adam_steps = check_positive_int("num_adam_steps", num_adam_steps, allow_zero=True)
    steps_per_level = tuple(
        check_positive_int("num_lbfgs_steps", n, allow_zero=True)
        for n in _per_level(num_lbfgs_steps)
    )
    num_rounds = check_positive_int("num_rounds", num_rounds)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    levels = _check_levels(relative_noise)
    if len(steps_per_level) == 1:
        steps_per_level *= len(levels)
    if len(steps_per_level) != len(levels):
        raise ArgumentError(
            f"num_lbfgs_steps has {len(steps_per_level)} counts for {len(levels)} noise "
            "levels. Pass one count, or one per level of relative_noise."
        )
    check_every = check_positive_int("check_every", check_every)
    if validation is not None:
        _check_validation(problem, validation)
    boundary_weight = check_positive_float("boundary_weight", boundary_weight, allow_zero=True)
    jitter = check_positive_float("jitter", jitter, allow_zero=True)
    max_dense_size = check_positive_int("max_dense_size", max_dense_size)
    cg_tolerance = check_positive_float(
        "cg_tolerance", cg_tolerance, hint="Pass a relative residual norm such as 1e-10."
    )
    max_cg_iterations = check_positive_int("max_cg_iterations", max_cg_iterations)
    if log_precision is not None:
        _check_log_precision(log_precision)
    affine = _is_affine(problem)
    if num_newton_steps is None:
        num_newton_steps = 1 if affine else 4
    num_newton_steps = check_positive_int("num_newton_steps", num_newton_steps)
    collocation = None
    if method == "auto":
        if problem.size <= max_dense_size:
            method = "profile"
        else:
            collocation = _kronecker_sum_or_none(problem, num_newton_steps)
            method = "profile_cg" if collocation is None else "collocation"
    if method not in ("profile", "profile_cg", "collocation", "joint"):
        raise ArgumentError(
            f"method must be 'profile', 'profile_cg', 'collocation', 'joint' or 'auto', got "
            f"{method!r}. 'profile' solves for the grid values exactly at each kernel (dense, "
            "small grids), 'profile_cg' by conjugate gradients (matrix-free), 'collocation' "
            "by a direct Sylvester solve or Newton on it (1-D and 2-D, derivative terms with "
            "constant coefficients); 'joint' does not."
        )
    if method == "profile" and problem.size > max_dense_size:
        raise ArgumentError(
            f"method='profile' factors a dense {problem.size} x {problem.size} matrix (grid "
            f"{problem.shape}), above max_dense_size={max_dense_size}. Pass method='joint', "
            "or raise max_dense_size if memory allows."
        )
    if method == "collocation" and collocation is None:
        collocation = kronecker_sum(problem, num_newton_steps)
    problem.check_finite()
    start_time = time.perf_counter()
    params = initial_parameters(problem, kernels, init_values)
    objective = Objective(problem, boundary_weight, jitter, bounded=True)
    params = params._replace(kernels=objective.raw(params.kernels))
    _check_start(objective, params, jitter)
    losses = []
    if num_adam_steps:
        adam_objective = Objective(problem, boundary_weight, jitter, whiten=whiten, bounded=True)
        start = params
        if whiten:
            start = params._replace(
                values=objective.operators(params.kernels).gram.whiten(params.values)
            )
        start, adam_losses, _ = optimise(
            adam_objective, start, adam(learning_rate), jax.random.key(0), num_adam_steps,
            progress=progress, description="GP-HM Adam",
        )  # fmt: skip
        params = start._replace(values=adam_objective.grid_values(start))
        losses.append(np.asarray(adam_losses))
    stages: list[tuple[float, float]] = []
    candidates: list[Parameters] = []
    kept: list[tuple[int, ...]] = []
    eligible = 0  # the first level that the validation residual may choose
    if any(steps_per_level):
        cg = (cg_tolerance, max_cg_iterations) if method == "profile_cg" else None
        plan = list(zip(levels, steps_per_level, strict=True))
        plan = plan if log_precision is None else plan[:1]
        # Every round of every level runs one compiled L-BFGS loop of the longest round's
        # length (the levels differ only in traced precisions), so it compiles once.
        loop_steps = max(steps // num_rounds + steps % num_rounds for _, steps in plan)
        for level, steps in plan:
            params = _phase_two(
                objective, params, log_precision, level, method, cg, steps,
                num_rounds, num_newton_steps, losses, progress, validation, check_every,
                loop_steps, collocation,
            )  # fmt: skip
            score = math.nan
            if validation is not None:
                score = _solution(objective, params, None).validation_residual(validation)
                logger.info("GP-HM relative noise %g: validation residual %.3g", level, score)
            stages.append((level, score))
            candidates.append(params)
            if prune and method in ("profile", "collocation") and (level, steps) != plan[-1]:
                sizes = tuple(_active_count(kernel) for kernel in params.kernels)
                params, counts = prune_components(objective, params, num_newton_steps, collocation)
                kept.append(counts)
                if counts != sizes:  # a smaller model, chosen by the objective: the levels
                    eligible = len(stages)  # before it are not candidates any more
                logger.info("GP-HM relative noise %g: components kept %s", level, counts)
    selected = -1
    if validation is not None and len(candidates) > 1:
        scores = [score if math.isfinite(score) else math.inf for _, score in stages]
        selected = eligible + int(np.argmin(scores[eligible:]))
        params = candidates[selected]
    values = jax.block_until_ready(params.values)
    info = SolveInfo(
        np.concatenate(losses) if losses else np.zeros(0),
        num_adam_steps,
        sum(steps for steps, _ in zip(steps_per_level, stages, strict=False)),
        time.perf_counter() - start_time,
        tuple(stages),
        selected % len(stages) if stages else -1,
        tuple(kept),
    )
    logger.info("GP-HM fit (%s): %.1f s", method, info.wall_time)
    return _solution(objective, params._replace(values=values), info)


def _solution(objective: Objective, params: Parameters, info: SolveInfo | None) -> GPSolution:
    return GPSolution(
        objective.problem,
        params.values,
        objective.natural(params.kernels),
        params.log_precision_boundary,
        params.log_precision_residual,
        objective.jitter,
        objective.boundary_weight,
        info,
    )


def _phase_two(
    objective: Objective,
    params: Parameters,
    log_precision: tuple[float, float] | None,
    relative_noise: float,
    method: str,
    cg: tuple[float, int] | None,
    num_lbfgs_steps: int,
    num_rounds: int,
    num_newton_steps: int,
    losses: list[np.ndarray],
    progress: bool,
    validation: Problem | None = None,
    check_every: int = 1,
    loop_steps: int | None = None,
    collocation: KroneckerSum | None = None,
) -> Parameters:
    """L-BFGS with the precisions held at one noise level (:func:`solve`'s phase 2); with a
    ``validation`` problem, the iterate with the smallest validation residual. ``loop_steps``:
    the compiled loop's length (:func:`~bayescore.core.optimise.minimise_lbfgs`);
    ``collocation``: the grid solve of ``method="collocation"``."""
    log_precisions = _phase_two_precisions(
        objective, params, log_precision, relative_noise, method, cg, collocation
    )
    criterion = None
    if validation is not None:
        criterion = _Validation(objective, log_precisions, validation, _source_rms(validation))
    params = params._replace(
        log_precision_boundary=log_precisions[0], log_precision_residual=log_precisions[1]
    )
    per_round = [num_lbfgs_steps // num_rounds] * num_rounds
    per_round[-1] += num_lbfgs_steps - sum(per_round)
    for number, steps in enumerate(per_round):
        description = f"GP-HM L-BFGS ({method})" + (
            f" {number + 1}/{num_rounds}" if num_rounds > 1 else ""
        )
        if method in ("profile", "profile_cg", "collocation"):
            profiled = _Profiled(
                objective, log_precisions, params.values, num_newton_steps, *(cg or ()),
                collocation=collocation,
            )  # fmt: skip
            if cg is not None:
                # Every CG solve starts from the grid values at the round's initial kernel:
                # the kernels move little per evaluation, so each solve resumes close to
                # its answer instead of from zero.
                start = _profiled_values(profiled, params.kernels)
                profiled = _Profiled(objective, log_precisions, start, 1, *cg)
            kernels_fit, values = minimise_lbfgs(
                profiled, params.kernels, steps, progress=progress, description=description,
                criterion=None if criterion is None else criterion.profiled(profiled),
                check_every=check_every, loop_steps=loop_steps, stop_on_stall=True,
            )  # fmt: skip
            params = params._replace(
                kernels=kernels_fit, values=_profiled_values(profiled, kernels_fit)
            )
        else:
            fixed = _Deterministic(objective, log_precisions)
            (grid, kernels_fit), values = minimise_lbfgs(
                fixed, (params.values, params.kernels), steps, progress=progress,
                description=description, criterion=criterion, check_every=check_every,
                loop_steps=loop_steps, stop_on_stall=True,
            )  # fmt: skip
            params = params._replace(values=grid, kernels=kernels_fit)
        losses.append(np.asarray(values))
    return params


class _Validation(eqx.Module):
    """The relative validation residual of grid values and kernels (a criterion for
    :func:`~bayescore.core.optimise.minimise_lbfgs`; traceable)."""

    objective: Objective
    log_precisions: tuple[Array, Array]
    validation: Problem
    scale: float = eqx.field(static=True)

    def __call__(self, free: tuple[Array, tuple[StationaryKernel, ...]]) -> Array:
        values, kernels = free
        params = Parameters(values, kernels, *self.log_precisions)
        return _relative_residual(_solution(self.objective, params, None), self.validation,
                                  self.scale)  # fmt: skip

    def profiled(self, profiled: _Profiled) -> _ProfiledValidation:
        """The criterion of kernels alone, the grid values profiled out."""
        return _ProfiledValidation(self, profiled)


class _ProfiledValidation(eqx.Module):
    validation: _Validation
    profiled: _Profiled

    def __call__(self, kernels: tuple[StationaryKernel, ...]) -> Array:
        return self.validation((_profiled_values(self.profiled, kernels), kernels))


def _per_level(value: object) -> tuple[Any, ...]:
    """A list, tuple or 1-D array as one entry per noise level; anything else as one entry
    (for the scalar checks to accept or reject with their own message)."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return tuple(value)
    return (value,)


def _check_levels(relative_noise: object) -> tuple[float, ...]:
    levels = tuple(check_positive_float("relative_noise", v) for v in _per_level(relative_noise))
    if not levels:
        raise ArgumentError(
            "relative_noise is an empty sequence. Pass a number such as 1e-6, or decreasing "
            "levels such as (1e-6, 1e-8)."
        )
    if any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ArgumentError(
            f"relative_noise must decrease from level to level (a continuation), got {levels}."
        )
    return levels


def _phase_two_precisions(
    objective: Objective,
    params: Parameters,
    log_precision: tuple[float, float] | None,
    relative_noise: float,
    method: str,
    cg: tuple[float, int] | None = None,
    collocation: KroneckerSum | None = None,
) -> tuple[Array, Array]:
    dtype = params.values.dtype
    if log_precision is not None:
        pair = _check_log_precision(log_precision)
        return jnp.asarray(pair[0], dtype), jnp.asarray(pair[1], dtype)
    problem = objective.problem
    zeros = jnp.zeros(problem.shape, dtype)
    scale_r = _source_rms(problem)
    # The solution's scale: the largest of the boundary data's, the current grid values' (after
    # Adam) and, when profiling, a first grid solve's at the initial kernel.
    log_tau_r = -2.0 * math.log(relative_noise * scale_r)
    scales = [_rms(problem.boundary_field(zeros, lambda orders: zeros)), _rms(params.values)]
    if method in ("profile", "profile_cg", "collocation"):
        start = (jnp.asarray(log_tau_r, dtype),) * 2
        profiled = _Profiled(
            objective, start, params.values, 1, *(cg or ()), collocation=collocation
        )
        scales.append(_rms(_profiled_values(profiled, params.kernels)))
    scale_u = max(scales)
    log_tau_b = -2.0 * math.log(relative_noise * (scale_u or scale_r))
    return jnp.asarray(log_tau_b, dtype), jnp.asarray(log_tau_r, dtype)


def _rms(values: Array) -> float:
    values = np.asarray(values)  # on the host: no eager programs to compile per shape
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


def _kronecker_sum_or_none(problem: Problem, num_newton_steps: int) -> KroneckerSum | None:
    """:func:`kronecker_sum`, or ``None`` when ``method="collocation"`` cannot solve it."""
    try:
        return kronecker_sum(problem, num_newton_steps)
    except ArgumentError:
        return None


def _is_affine(problem: Problem) -> bool:
    """Whether the residual is affine in u and its derivatives (checked at random fields)."""
    keys = jax.random.split(jax.random.key(0), 2)
    fields = [jax.random.normal(key, problem.shape) for key in keys]

    def residual(field: Array) -> Array:
        return problem.residual_field(field, lambda orders: field * (1.0 + sum(orders)))

    middle = residual(0.5 * (fields[0] + fields[1]))
    ends = 0.5 * (residual(fields[0]) + residual(fields[1]))
    scale = 1.0 + float(jnp.max(jnp.abs(ends)))
    return bool(jnp.max(jnp.abs(middle - ends)) <= 1e-4 * scale)


def _check_start(objective: Objective, params: Parameters, jitter: float) -> None:
    loss = _evaluate(objective, params)
    if not bool(jnp.isfinite(loss)):
        raise DataError(
            f"the objective at the start is {float(loss)}: a kernel matrix is not positive "
            f"definite at jitter={jitter} in {jnp.result_type(float)}. Run under "
            "jax.enable_x64(True), or raise jitter."
        )


def _check_log_precision(log_precision: object) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in log_precision)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair):
        raise ArgumentError(
            f"log_precision must be two finite numbers (log tau_boundary, log tau_residual), "
            f"got {log_precision!r}."
        )
    return pair


def _check_kernels(
    problem: Problem, kernel: StationaryKernel | Sequence[StationaryKernel] | None
) -> tuple[StationaryKernel, ...]:
    if kernel is None:
        nyquist = [
            (m - 1) / (2 * (hi - lo))
            for m, (lo, hi) in zip(problem.shape, problem.domain, strict=True)
        ]
        kernels = tuple(spectral_mixture(30, 0.5 * f) for f in nyquist)
    elif isinstance(kernel, StationaryKernel):
        kernels = (kernel,) * problem.dim
    elif isinstance(kernel, (list, tuple)):
        kernels = tuple(kernel)
    else:
        kernels = (kernel,)
    if len(kernels) != problem.dim or not all(isinstance(k, StationaryKernel) for k in kernels):
        raise ArgumentError(
            f"kernel must be one StationaryKernel or {problem.dim} of them (one per dimension), "
            f"got {kernel!r}. Pass e.g. spectral_mixture(30, 20.0)."
        )
    for axis, (name, k) in enumerate(zip(problem.names, kernels, strict=True)):
        needed = max((orders[axis] for orders in problem.required_orders()), default=0)
        if needed > k.smoothness:
            raise ArgumentError(
                f"the problem needs derivatives of order {needed} in {name!r}, but the kernel "
                f"{type(k).__name__} there has only {k.smoothness} at lag 0. Pass a smoother "
                "kernel (matern(nu=2.5) or a Gaussian spectral_mixture)."
            )
    return kernels


def _orders(derivative: str, problem: Problem) -> tuple[int, ...]:
    if derivative == "":
        return (0,) * problem.dim
    return derivative_orders(derivative, problem.names)


def _check_points(points: ArrayLike, dim: int) -> Array:
    array = jnp.asarray(points, dtype=jnp.result_type(float))
    if dim == 1 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ShapeError(
            f"points must have shape (num_points, {dim}), got {array.shape}. Pass one row per "
            "point, one column per dimension."
        )
    if not bool(jnp.all(jnp.isfinite(array))):
        raise DataError("points has non-finite entries. Replace the NaN/inf values.")
    return array


def _check_axis(axis: ArrayLike, index: int) -> Array:
    array = jnp.asarray(axis, dtype=jnp.result_type(float))
    if array.ndim != 1:
        raise ShapeError(f"axes[{index}] must be 1-D, got shape {array.shape}.")
    if not bool(jnp.all(jnp.isfinite(array))):
        raise DataError(f"axes[{index}] has non-finite entries. Replace the NaN/inf values.")
    return array


__all__ = [
    "LAPLACE_MAX_SIZE",
    "Component",
    "GPSolution",
    "Objective",
    "Parameters",
    "SolveInfo",
    "grid_operators",
    "initial_parameters",
    "solve",
]
