r"""Exact collocation for linear PDEs whose operator is a sum of one-axis terms.

A PDE :math:`\sum_j \mathcal A_j u = f` in which each :math:`\mathcal A_j` is a combination,
with constant coefficients, of derivatives along axis :math:`j` alone (and of :math:`u`
itself), such as Poisson's :math:`u_{xx} + u_{yy} = f` or the advection equation
:math:`\beta u_x + u_y = f`, becomes on a tensor grid a Kronecker sum: with the GP's
derivative matrices :math:`D_j^{(n)} = K_j^{(n)}(K_j + \epsilon I)^{-1}` and
:math:`A_j = \sum_n c_{j,n} D_j^{(n)}`, the residual on a 2-D grid is
:math:`A_1\mathcal U + \mathcal U A_2^\top - F`. With Dirichlet data on every face, the
PDE imposed at every interior grid point and the data at the boundary points give a square
system whose interior block is a Sylvester equation,

.. math:: A_1^{ii}\,\mathcal U^{ii} + \mathcal U^{ii}\,(A_2^{ii})^\top
   = \bigl(F - A_1\mathcal G - \mathcal G A_2^\top\bigr)^{ii},

(:math:`\mathcal G` the boundary data, zero inside; :math:`ii` the interior rows and columns),
solved directly by Bartels-Stewart (``jax.scipy.linalg.solve_sylvester``; its eigenvector
form off the CPU) in :math:`O(\sum_j M_j^3)`, with no iteration. This is the limit of the
GP-HM grid solve as the boundary and residual precisions grow, whenever that system is
nonsingular: the likelihoods become constraints that determine :math:`\mathcal U`, and the
prior no longer matters. :func:`~bayescore.models.pde.solve` uses it with
``method="collocation"`` as its grid solve, the kernels still learned by L-BFGS.

It is what the matrix-free solve cannot do on first-order operators. On the advection case
(:math:`\beta = 200`) conjugate gradients on the normal equations of the penalised system
make no progress in 1000 iterations, because :math:`\beta\partial_x + \partial_y` nearly
vanishes along the characteristics. The direct solve at the initial spectral-mixture
kernel is within :math:`2\times10^{-5}` (relative :math:`L^2`) of the exact solution on the
grid.

The PDE is imposed on :math:`\mathcal U` through :math:`D_j^{(n)}` along one axis at a time,
as the reference code does; the objective imposes it on the GP conditional mean, which
differs from :math:`\mathcal U` at the grid points by the jitter's effect only.

Written here: no JAX library solves collocation systems of GP derivative operators.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from bayescore.core.errors import ArgumentError
from bayescore.models.pde.problem import Dirichlet, Problem, _boundary_values

# Coefficients that vary over the grid by more than this (relative) are not constant.
CONSTANT_TOLERANCE = 1e-9


class KroneckerSum(eqx.Module):
    r"""A linear PDE's operator as a Kronecker sum, its source and its Dirichlet data.

    Attributes:
        coefficients: per axis, ``((order, c), ...)``: :math:`A_j = \sum c\,D_j^{(n)}`;
            order 0 (the :math:`u` term, on the first axis) is the identity.
        forcing: :math:`f` on the grid (the PDE reads :math:`\sum_j A_j u = f`).
        boundary: the Dirichlet data at the boundary points, zero inside.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet, Problem
        >>> from bayescore.models.pde.collocation import kronecker_sum
        >>> problem = Problem(lambda u, d, x: 200 * d["x"] + d["y"], [(0, 1), (0, 1)], (8, 8),
        ...                   boundary=[Dirichlet(0.0)])
        >>> kronecker_sum(problem).coefficients
        (((1, 200.0),), ((1, 1.0),))
    """

    coefficients: tuple[tuple[tuple[int, float], ...], ...] = eqx.field(static=True)
    forcing: Float[Array, "*grid"]
    boundary: Float[Array, "*grid"]


def kronecker_sum(problem: Problem) -> KroneckerSum:
    """The :class:`KroneckerSum` of ``problem``, or an error that says why it has none.

    ``problem`` must be 1-D or 2-D, its residual affine in :math:`u` and its derivatives with
    constant coefficients, every derivative along one axis (no :math:`u_{xy}`), and its
    conditions Dirichlet data on every face.

    Example:
        >>> from bayescore.models.pde import Dirichlet, Problem, kronecker_sum
        >>> problem = Problem(lambda u, d, x: d["xx"] - 2 * u - 1.0, (0, 1), 5,
        ...                   boundary=[Dirichlet(1.0)])
        >>> structure = kronecker_sum(problem)  # u'' - 2u = 1, u = 1 at both ends
        >>> structure.coefficients, structure.boundary.tolist()
        ((((0, -2.0), (2, 1.0)),), [1.0, 0.0, 0.0, 0.0, 1.0])
    """
    if problem.dim > 2:
        raise ArgumentError(
            f"method='collocation' solves 1-D and 2-D grids (a Sylvester equation), got a "
            f"{problem.dim}-D grid {problem.shape}. Pass method='profile_cg'."
        )
    _check_boundary(problem)
    dtype = jnp.result_type(float)
    zeros = jnp.zeros(problem.shape, dtype)
    ones = jnp.ones(problem.shape, dtype)
    orders = dict(zip(problem.derivatives, problem._orders, strict=True))

    def residual(values: Array, fields: dict[tuple[int, ...], Array]) -> np.ndarray:
        field = lambda key: fields.get(key, zeros)  # noqa: E731
        return np.asarray(problem.residual_field(values, field), np.float64)

    offset = residual(zeros, {})
    # rounding of the residual's own arithmetic, relative to its size
    tolerance = 1e3 * float(jnp.finfo(dtype).eps) * (1.0 + float(np.max(np.abs(offset))))
    coefficients: list[dict[int, float]] = [{} for _ in problem.shape]
    coefficients[0][0] = _constant(residual(ones, {}) - offset, "u", tolerance)
    for key, order in orders.items():
        axes = [axis for axis, n in enumerate(order) if n]
        if len(axes) != 1:
            raise ArgumentError(
                f"method='collocation' needs every derivative along one axis; the residual "
                f"reads {key!r}, a mixed derivative. Pass method='profile_cg'."
            )
        coefficients[axes[0]][order[axes[0]]] = _constant(
            residual(zeros, {order: ones}) - offset, key, tolerance
        )
    # affine with these coefficients: the residual of random fields is reproduced
    keys = jax.random.split(jax.random.key(0), len(orders) + 1)
    values = jax.random.normal(keys[0], problem.shape, dtype)
    fields = {
        order: jax.random.normal(k, problem.shape, dtype)
        for k, order in zip(keys[1:], orders.values(), strict=True)
    }
    expected = offset + coefficients[0][0] * np.asarray(values)
    for order in orders.values():
        axis = next(axis for axis, n in enumerate(order) if n)
        expected = expected + coefficients[axis][order[axis]] * np.asarray(fields[order])
    actual = residual(values, fields)
    scale = 1.0 + float(np.max(np.abs(expected)))
    if not np.max(np.abs(actual - expected)) <= max(1e-6 * scale, 10 * tolerance):
        raise ArgumentError(
            "method='collocation' solves linear PDEs: the residual is not affine in u and its "
            "derivatives (e.g. Allen-Cahn's u**3). Pass method='profile_cg', which takes "
            "Gauss-Newton steps."
        )
    terms = tuple(
        tuple((n, c) for n, c in sorted(axis_terms.items()) if c != 0.0)
        for axis_terms in coefficients
    )
    return KroneckerSum(terms, jnp.asarray(-offset, dtype), _boundary_grid(problem, dtype))


def collocation_values(structure: KroneckerSum, operators: object) -> Float[Array, "*grid"]:
    r"""The grid values that satisfy the PDE at every interior point and the Dirichlet data.

    ``operators`` is the problem's :class:`~bayescore.models.pde.GridOperators` at the
    kernels (its :meth:`~bayescore.models.pde.GridOperators.operator` gives
    :math:`D_j^{(n)}`). Traceable and differentiable (:func:`sylvester`), so the kernels'
    gradient of the profiled objective counts how the grid values move with them.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet, Problem, grid_operators, spectral_mixture
        >>> from bayescore.models.pde.collocation import collocation_values, kronecker_sum
        >>> with jax.enable_x64(True):
        ...     problem = Problem(lambda u, d, x: d["xx"] + d["yy"] + 2 * jnp.sin(x[0] + x[1]),
        ...                       [(0, 1), (0, 1)], (20, 20),
        ...                       boundary=[Dirichlet(lambda x: jnp.sin(x[0] + x[1]))])
        ...     kernel = spectral_mixture(4, 2.0)
        ...     values = collocation_values(kronecker_sum(problem),
        ...                                 grid_operators(problem, [kernel] * 2, 1e-10))
        ...     exact = jnp.sin(problem.points()[0] + problem.points()[1])
        ...     bool(jnp.max(jnp.abs(values - exact)) < 1e-4)
        True
    """
    grid = structure.boundary
    dtype = grid.dtype
    matrices = []
    for axis, terms in enumerate(structure.coefficients):
        size = grid.shape[axis]
        matrix = jnp.zeros((size, size), dtype)
        for order, coefficient in terms:
            term = jnp.eye(size, dtype=dtype) if order == 0 else operators.operator(axis, order)
            matrix = matrix + coefficient * term.astype(dtype)
        matrices.append(matrix)
    inner = slice(1, -1)
    if grid.ndim == 1:
        (a,) = matrices
        right = (structure.forcing - a @ grid)[inner]
        return grid.at[inner].set(jnp.linalg.solve(a[inner, inner], right))
    a, b = matrices
    right = (structure.forcing - a @ grid - grid @ b.T)[inner, inner]
    return grid.at[inner, inner].set(sylvester(a[inner, inner], b[inner, inner].T, right))


@jax.custom_vjp
def sylvester(a: Array, b: Array, c: Array) -> Array:
    r"""The solution :math:`X` of :math:`AX + XB = C`, differentiable.

    ``jax.scipy.linalg.solve_sylvester`` (Bartels-Stewart on the CPU, where JAX's Schur
    decomposition runs; its eigenvector form elsewhere), which JAX cannot differentiate
    through the Schur decomposition; the gradient is the adjoint equation's instead:
    :math:`A^\top\Lambda + \Lambda B^\top = \bar X`, then :math:`\bar C = \Lambda`,
    :math:`\bar A = -\Lambda X^\top`, :math:`\bar B = -X^\top\Lambda`: one more solve.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.pde.collocation import sylvester
        >>> a, b = jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([[1.0, 0.0], [1.0, 1.0]])
        >>> x = sylvester(a, b, jnp.eye(2))
        >>> bool(jnp.allclose(a @ x + x @ b, jnp.eye(2), atol=1e-6))
        True
    """
    return _solve_sylvester(a, b, c)


def _solve_sylvester(a: Array, b: Array, c: Array) -> Array:
    method = "schur" if jax.default_backend() == "cpu" else "eigen"  # schur: CPU only
    return jnp.real(jsl.solve_sylvester(a, b, c, method=method)).astype(c.dtype)


def _sylvester_forward(a: Array, b: Array, c: Array) -> tuple[Array, tuple[Array, ...]]:
    x = _solve_sylvester(a, b, c)
    return x, (a, b, x)


def _sylvester_backward(saved: tuple[Array, ...], cotangent: Array) -> tuple[Array, ...]:
    a, b, x = saved
    adjoint = _solve_sylvester(a.T, b.T, cotangent)
    return -adjoint @ x.T, -x.T @ adjoint, adjoint


sylvester.defvjp(_sylvester_forward, _sylvester_backward)


def _constant(field: np.ndarray, name: str, tolerance: float) -> float:
    value = float(np.mean(field))
    if np.ptp(field) > max(CONSTANT_TOLERANCE * (1.0 + abs(value)), tolerance):
        raise ArgumentError(
            f"method='collocation' needs constant coefficients; the coefficient of {name!r} in "
            f"the residual varies over the grid ({np.min(field):.3g} to {np.max(field):.3g}). "
            "Pass method='profile_cg'."
        )
    return value


def _check_boundary(problem: Problem) -> None:
    covered: set[int] = set()
    for condition in problem.boundary:
        if not isinstance(condition, Dirichlet):
            raise ArgumentError(
                "method='collocation' takes Dirichlet data on every face; the problem has a "
                f"{type(condition).__name__} condition. Pass method='profile_cg'."
            )
        covered.update(problem._condition_indices(condition).tolist())
    faces = set(np.concatenate([problem.face_indices(f) for f in problem.all_faces()]).tolist())
    if not faces <= covered:
        raise ArgumentError(
            f"method='collocation' takes Dirichlet data on every face; {len(faces - covered)} "
            f"of the {len(faces)} boundary points have none. Add Dirichlet(...) for every "
            "face, or pass method='profile_cg'."
        )


def _boundary_grid(problem: Problem, dtype: object) -> Array:
    grid = np.zeros(problem.size, np.float64)
    points = problem.points()
    for condition in problem.boundary:
        index = problem._condition_indices(condition)
        values = np.asarray(_boundary_values(condition.value, points, problem.shape), np.float64)
        grid[index] = values.ravel()[index]
    return jnp.asarray(grid.reshape(problem.shape), dtype)


__all__ = ["KroneckerSum", "collocation_values", "kronecker_sum", "sylvester"]
