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
solved directly by Bartels-Stewart (SciPy's, on LAPACK;
``jax.scipy.linalg.solve_sylvester``'s eigenvector form off the CPU) in
:math:`O(\sum_j M_j^3)`, with no iteration. This is the limit of the GP-HM grid solve as
the boundary and residual precisions grow, whenever that system is nonsingular: the
likelihoods become constraints that determine :math:`\mathcal U`, and the prior no longer
matters. :func:`~bayescore.models.pde.solve` uses it with
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

A PDE that is nonlinear in :math:`u` alone, :math:`\sum_j \mathcal A_j u + g(u, x) = f`
(Allen-Cahn's :math:`\Delta u + u(u^2 - 1) = f`, any reaction-diffusion equation), is solved
by Newton's method on the same collocation equations. In 1-D each step is a dense solve with
the Jacobian :math:`A + \operatorname{diag}\,\partial_u g`; in 2-D it is GMRES
(``jax.scipy.sparse.linalg.gmres``) on the exact Jacobian-vector product, preconditioned by
the Kronecker sum with the grid mean of :math:`\partial_u g` as its constant shift, solved by
one eigendecomposition per axis (computed once per kernel; each application is four matrix
products). The derivative terms' coefficients must still be constant.

Written here: no JAX library solves collocation systems of GP derivative operators.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg
from jaxtyping import Array, Float

from bayescore.core.errors import ArgumentError, check_positive_int
from bayescore.models.pde.kronecker import mode_product
from bayescore.models.pde.problem import Dirichlet, Problem, _boundary_values

# Coefficients that vary over the grid by more than this (relative) are not constant.
CONSTANT_TOLERANCE = 1e-9
NEWTON_STEPS = 4
"""Newton steps per grid solve of a nonlinear PDE (from the previous solve's values)."""
KRYLOV_SIZE = 30
"""GMRES's largest Krylov subspace per Newton step in 2-D (one cycle, no restart)."""
KRYLOV_TOLERANCE = 1e-6
"""GMRES stops a Newton step's solve at this residual relative to its right side (inexact
Newton: on 2-D Allen-Cahn 1e-6 gave the 1e-10 solve's grid values to 1e-13 in two thirds of
the time; 1e-4 made the first step from zero too rough and Newton diverged)."""


class KroneckerSum(eqx.Module):
    r"""A linear PDE's operator as a Kronecker sum, its source and its Dirichlet data.

    Attributes:
        coefficients: per axis, ``((order, c), ...)``: :math:`A_j = \sum c\,D_j^{(n)}`;
            order 0 (the :math:`u` term, on the first axis) is the identity. For a nonlinear
            PDE, the derivative terms only (the :math:`u` term is the residual's).
        forcing: :math:`f` on the grid (the PDE reads :math:`\sum_j A_j u = f`).
        boundary: the Dirichlet data at the boundary points, zero inside.
        problem: the problem, when its residual is nonlinear in :math:`u` (solved by
            Newton's method); ``None`` when it is affine.
        num_newton_steps: Newton steps per solve (nonlinear only).

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
    problem: Problem | None = None
    num_newton_steps: int = eqx.field(static=True, default=NEWTON_STEPS)


def kronecker_sum(problem: Problem, num_newton_steps: int = NEWTON_STEPS) -> KroneckerSum:
    """The :class:`KroneckerSum` of ``problem``, or an error that says why it has none.

    ``problem`` must be 1-D or 2-D, every derivative along one axis (no :math:`u_{xy}`) with a
    constant coefficient, and its conditions Dirichlet data on every face. The residual may
    be nonlinear in :math:`u` itself (then ``problem`` is kept, and each grid solve takes
    ``num_newton_steps`` Newton steps), not in its derivatives.

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
    u_term = residual(ones, {}) - offset
    # affine with these coefficients: the residual of random fields is reproduced
    keys = jax.random.split(jax.random.key(0), len(orders) + 1)
    values = jax.random.normal(keys[0], problem.shape, dtype)
    fields = {
        order: jax.random.normal(k, problem.shape, dtype)
        for k, order in zip(keys[1:], orders.values(), strict=True)
    }
    expected = offset + u_term * np.asarray(values)
    for order in orders.values():
        axis = next(axis for axis, n in enumerate(order) if n)
        expected = expected + coefficients[axis][order[axis]] * np.asarray(fields[order])
    actual = residual(values, fields)
    scale = 1.0 + float(np.max(np.abs(expected)))
    affine = bool(np.max(np.abs(actual - expected)) <= max(1e-6 * scale, 10 * tolerance))
    if affine:
        coefficients[0][0] = _constant(u_term, "u", tolerance)
    else:
        _check_derivative_terms(problem, coefficients, tolerance)
    terms = tuple(
        tuple((n, c) for n, c in sorted(axis_terms.items()) if c != 0.0)
        for axis_terms in coefficients
    )
    return KroneckerSum(
        terms,
        jnp.asarray(-offset, dtype),
        _boundary_grid(problem, dtype),
        None if affine else problem,
        check_positive_int("num_newton_steps", num_newton_steps),
    )


def _check_derivative_terms(
    problem: Problem, coefficients: list[dict[int, float]], tolerance: float
) -> None:
    """That a residual that is not affine is nonlinear in ``u`` alone: its derivative with
    respect to each derivative field is the constant read at zero, at random states."""
    dtype = jnp.result_type(float)
    orders = problem._orders
    for seed in (1, 2):
        keys = jax.random.split(jax.random.key(seed), len(orders) + 1)
        values = jax.random.normal(keys[0], problem.shape, dtype)
        fields = [jax.random.normal(k, problem.shape, dtype) for k in keys[1:]]
        for index, (key, order) in enumerate(zip(problem.derivatives, orders, strict=True)):

            def residual(
                field: Array, index: int = index, values: Array = values, fields: list = fields
            ) -> Array:
                changed = fields[:index] + [field] + fields[index + 1 :]
                state = dict(zip(orders, changed, strict=True))
                return problem.residual_field(values, lambda o: state[o])

            slope = jax.jvp(residual, (fields[index],), (jnp.ones_like(values),))[1]
            axis = next(axis for axis, n in enumerate(order) if n)
            expected = coefficients[axis][order[axis]]
            error = float(jnp.max(jnp.abs(slope - expected)))
            if not error <= max(1e-6 * (1.0 + abs(expected)), 10 * tolerance):
                raise ArgumentError(
                    f"method='collocation' solves PDEs that are linear in the derivatives with "
                    f"constant coefficients (nonlinear in u alone, as Allen-Cahn's u**3); the "
                    f"residual's slope in {key!r} is not the constant {expected:.6g} everywhere "
                    f"(off by up to {error:.3g} at a random state). Pass method='profile_cg'."
                )


def collocation_values(
    structure: KroneckerSum, operators: object, start: Float[Array, "*grid"] | None = None
) -> Float[Array, "*grid"]:
    r"""The grid values that satisfy the PDE at every interior point and the Dirichlet data.

    ``operators`` is the problem's :class:`~bayescore.models.pde.GridOperators` at the
    kernels (its :meth:`~bayescore.models.pde.GridOperators.operator` gives
    :math:`D_j^{(n)}`). Traceable and, for a linear PDE, differentiable (:func:`sylvester`),
    so the kernels' gradient of the profiled objective counts how the grid values move with
    them. A nonlinear PDE (``structure.problem`` set) is solved by Newton's method from
    ``start`` (its interior values; the boundary data when ``None``): the module docstring
    says how.

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
    matrices = _axis_matrices(structure, operators)
    if structure.problem is not None:
        return _newton(structure, operators, matrices, start)
    inner = slice(1, -1)
    if grid.ndim == 1:
        (a,) = matrices
        right = (structure.forcing - a @ grid)[inner]
        return grid.at[inner].set(jnp.linalg.solve(a[inner, inner], right))
    a, b = matrices
    right = (structure.forcing - a @ grid - grid @ b.T)[inner, inner]
    return grid.at[inner, inner].set(sylvester(a[inner, inner], b[inner, inner].T, right))


def _axis_matrices(structure: KroneckerSum, operators: object) -> list[Array]:
    r""":math:`A_j = \sum_n c_{j,n} D_j^{(n)}`, one dense matrix per axis."""
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
    return matrices


def _newton(
    structure: KroneckerSum, operators: object, matrices: list[Array], start: Array | None
) -> Array:
    """Newton's method on the collocation equations of a PDE nonlinear in ``u`` (module
    docstring): ``structure.num_newton_steps`` steps from ``start``'s interior values."""
    problem = structure.problem
    grid = structure.boundary
    inner = (slice(1, -1),) * grid.ndim
    derivative_matrices = {  # order -> (its axis, D of that order along it)
        order: (axis, operators.operator(axis, order[axis]).astype(grid.dtype))
        for order in problem._orders
        for axis in range(grid.ndim)
        if order[axis]
    }

    def fields(values: Array) -> dict[tuple[int, ...], Array]:
        return {
            order: mode_product(matrix, values, axis)
            for order, (axis, matrix) in derivative_matrices.items()
        }

    def residual(interior: Array) -> Array:
        values = grid.at[inner].set(interior)
        state = fields(values)
        return problem.residual_field(values, lambda order: state[order])[inner]

    def u_slope(interior: Array) -> Array:
        """The residual's derivative in ``u`` at every interior point, fields held fixed."""
        values = grid.at[inner].set(interior)
        state = fields(values)
        tangent = jnp.ones_like(values)
        slope = jax.jvp(
            lambda v: problem.residual_field(v, lambda order: state[order]), (values,), (tangent,)
        )[1]
        return slope[inner]

    interior = (grid if start is None else start.astype(grid.dtype))[inner]
    if grid.ndim == 1:
        for _ in range(structure.num_newton_steps):
            value, jacobian = residual(interior), jax.jacfwd(residual)(interior)
            interior = interior - jnp.linalg.solve(jacobian, value)
        return grid.at[inner].set(interior)
    a, b = (matrix[inner] for matrix in matrices)
    precondition = _kronecker_sum_inverse(a, b)
    for _ in range(structure.num_newton_steps):
        value, jacobian = jax.linearize(residual, interior)
        shift = jnp.mean(u_slope(interior))
        step, _ = jax.scipy.sparse.linalg.gmres(
            jacobian, -value, tol=KRYLOV_TOLERANCE, atol=0.0, restart=KRYLOV_SIZE, maxiter=1,
            M=lambda c, shift=shift: precondition(c, shift), solve_method="incremental",
        )  # fmt: skip
        interior = interior + step
    return grid.at[inner].set(interior)


def _kronecker_sum_inverse(a: Array, b: Array) -> Callable[[Array, Array], Array]:
    r"""``solve(c, s)``: :math:`X` with :math:`(A + sI)X + XB^\top = C`, from one
    eigendecomposition per matrix (:math:`A = V\Lambda V^{-1}`): four matrix products per
    solve, exact up to the eigenvectors' conditioning, which a Krylov method that uses it as
    a preconditioner corrects."""
    eig_a, vec_a = jnp.linalg.eig(a)
    eig_b, vec_b = jnp.linalg.eig(b)
    inv_a, inv_b = jnp.linalg.inv(vec_a), jnp.linalg.inv(vec_b)

    def solve(c: Array, shift: Array) -> Array:
        y = inv_a @ c.astype(inv_a.dtype) @ inv_b.T
        y = y / (eig_a[:, None] + eig_b[None, :] + shift)
        return jnp.real(vec_a @ y @ vec_b.T).astype(c.dtype)

    return solve


@jax.custom_vjp
def sylvester(a: Array, b: Array, c: Array) -> Array:
    r"""The solution :math:`X` of :math:`AX + XB = C`, differentiable.

    Bartels-Stewart on the CPU (SciPy's, LAPACK ``trsyl``, through ``jax.pure_callback``),
    ``jax.scipy.linalg.solve_sylvester``'s eigenvector form elsewhere; neither is
    differentiable by JAX; the gradient is the adjoint equation's instead:
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
    if jax.default_backend() != "cpu":
        return jnp.real(jsl.solve_sylvester(a, b, c, method="eigen")).astype(c.dtype)
    dtype = c.dtype
    if dtype != jnp.float64:
        shape = jax.ShapeDtypeStruct(c.shape, dtype)
        return jax.pure_callback(_lapack_sylvester, shape, a, b, c, vmap_method="sequential")
    # float64 operands travel as pairs of 32-bit words: a compiled loop may run the callback
    # on an XLA worker thread, where a caller's ``jax.enable_x64(True)`` is not in force and
    # the arrays would be rounded to float32 on the way
    words = [jax.lax.bitcast_convert_type(x.astype(dtype), jnp.uint32) for x in (a, b, c)]
    shape = jax.ShapeDtypeStruct((*c.shape, 2), jnp.uint32)
    solved = jax.pure_callback(_lapack_sylvester_words, shape, *words, vmap_method="sequential")
    return jax.lax.bitcast_convert_type(solved, dtype)


def _lapack_sylvester(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """SciPy's Bartels-Stewart (LAPACK's real Schur form and ``trsyl``): on a 198 x 198
    advection system 30 ms, where ``jax.scipy.linalg.solve_sylvester(method="schur")`` takes
    260 ms (two complex Schur forms, then a scan over the solution's entries one at a time,
    and two eigenvalue problems for its singularity check). NaN where LAPACK fails, as JAX's
    NaN for a singular system, for the optimiser to reject."""
    try:
        x = scipy.linalg.solve_sylvester(a, b, c)
    except (np.linalg.LinAlgError, ValueError):
        x = np.full(c.shape, np.nan)
    return np.asarray(x, c.dtype)


def _lapack_sylvester_words(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """:func:`_lapack_sylvester` on float64 operands given as their 32-bit words."""
    a, b, c = (np.ascontiguousarray(x).view(np.float64)[..., 0] for x in (a, b, c))
    return _lapack_sylvester(a, b, c)[..., None].view(np.uint32)


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
