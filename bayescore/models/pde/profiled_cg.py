r"""The grid values of a PDE at fixed kernel, by (Gauss-Newton and) conjugate gradients.

For a residual affine in :math:`u` and its derivatives, with the kernels and the precisions
held fixed, the GP-HM objective (:mod:`~bayescore.models.pde.solver`) is a regularised linear
least-squares problem in the grid values. Its dense solve (:meth:`Objective.gauss_newton`)
costs :math:`O(M^3)` time and :math:`O(M^2)` memory; this one is matrix-free, in
:math:`O(M\sum_j M_j)` per iteration plus :math:`O(\sum_j M_j^3 + N_b^3)` set-up. For a
nonlinear residual (Allen-Cahn's :math:`u^3`) each Gauss-Newton step is such a problem, for
the residual linearised at the step's start.

**Coordinates.** Per dimension, the generalised eigenvectors :math:`V_j` of
:math:`(-K_j^{(2)},\ K_j + \epsilon I)`: :math:`V_j^\top (K_j + \epsilon I) V_j = I` and
:math:`-V_j^\top K_j^{(2)} V_j = \operatorname{diag}(\sigma_j)` (plain eigenvectors of
:math:`K_j + \epsilon I` for a dimension without a second derivative). With
:math:`\alpha = (\otimes_j V_j)\mathbf z`, the prior term is :math:`\tfrac12\|\mathbf z\|^2`,
the grid values are :math:`\mathcal U = \mathbf z \times_1 (K_1 + \epsilon I)V_1 \cdots`, and a
derivative field is :math:`\mathbf z \times_1 K_1^{(n_1)} V_1 \cdots \times_D K_D^{(n_D)}V_D`.
Because :math:`K_j^{(2)} V_j = -(K_j + \epsilon I) V_j \operatorname{diag}(\sigma_j)`, the
Laplacian of the conditional mean is (up to the jitter) :math:`W(\oplus_j \sigma_j)\mathbf z`
with :math:`W = \otimes_j K_j V_j`: the Kronecker sum of per-axis second derivatives is
diagonal in these coordinates apart from the factor :math:`W`, whose Gram matrix
:math:`\otimes_j V_j^\top K_j^2 V_j` would be diagonal for kernels that commute with their
second derivatives (as on a periodic grid) and is close to it on coarse grids (see
**Measured**).

**System.** With :math:`\boldsymbol\rho(\mathbf z) = J\mathbf z + \boldsymbol\rho_0` the scaled
boundary mismatches and residuals (:meth:`Objective.scaled_residuals`, here in the coordinates
above), the minimiser solves :math:`(I + J^\top J)\mathbf z = -J^\top\boldsymbol\rho_0`, by
conjugate gradients with :math:`J\mathbf v` and :math:`J^\top\mathbf w` from ``jax.linearize``
and ``jax.linear_transpose`` of the mode-product map (never an :math:`M \times M` matrix).
For a nonlinear residual, :math:`J` is its Jacobian at the step's start :math:`\mathbf z_k`
and the step solves :math:`(I + J^\top J)\mathbf z = J^\top(J\mathbf z_k -
\boldsymbol\rho(\mathbf z_k))` from :math:`\mathbf z_k`.

**Preconditioner.** :math:`P = D + Y^\top Y`, with :math:`D` the diagonal of
:math:`I + J_r^\top J_r` (the residual rows; exact for constant coefficients, computed as
outer products of per-axis column norms) and :math:`Y` the boundary rows of :math:`J`,
applied exactly by Woodbury, :math:`P^{-1} = D^{-1} - D^{-1}Y^\top(I + YD^{-1}Y^\top)^{-1}
YD^{-1}`. The boundary rows must be kept out of the diagonal: their weight
:math:`\lambda_b\tau_1` is many orders above the rest, and they form a rank-:math:`N_b`
block far from diagonal (with them in the diagonal, CG on 100 x 100 Poisson at
:math:`\log\tau_1 = 28.6` had not converged after 5000 iterations). The boundary
points split into disjoint blocks that are tensor products of per-axis index sets (a face
minus the faces already counted), so each block of :math:`Y` is a Kronecker product of
per-axis rows and the :math:`N_b \times N_b` capacitance matrix costs :math:`O(N_b^2 M_j)`
by ``einsum``, not :math:`O(N_b^2 M)`.

**Measured** (iterations to the tolerance, CG from zero; ``precondition=True`` vs ``False``,
both in the coordinates above): the 9 x 11 test problem at ``solve``'s precisions, 172 vs
293 to 1e-12; 2-D Poisson ``sin 100x sin 100y`` on a 100 x 100 grid at the initial kernel,
17 vs no convergence in 3000 (:math:`\log\tau_{1,2} = 10.8, 9.2`). On the reference's
400 x 400 grid the diagonal misses ~20 modes per axis whose generalised eigenvalues sit at
the jitter level (1-D: Jacobi-scaled condition number 1.8 on 100 points, 2.8e6 on 400), and
the preconditioner is worse than none: after 3000 iterations relative residuals 2.7e-6 vs
1.9e-5 but grid errors 0.15 vs 2.3e-4, and without boundary rows 5.0e-6 vs 5.8e-7 after
1000. On 2-D Poisson ``sin 6x cos 20x + ...`` (200 x 200, initial kernel, solve's precisions)
it is the other way round: 14 iterations to 1e-10 preconditioned, plain CG at relative
residual 0.1 after 500. :func:`solve` therefore gives the preconditioner
``PRECONDITIONED_ITERATIONS`` and falls back to plain CG (``precondition="auto"``). A
"line" preconditioner (per axis, the normal matrix's exact blocks along that axis, the
other axes' diagonal, averaged over axes) reached 1e-10 in 694 iterations on the 400 x 400
grid without boundary rows, but took 110 s for it (batched triangular solves; plain CG's
1000 iterations took 9 s) and was not kept; a preconditioner that is also right for the
jitter-level modes is open.

Hand-written, not ``jax.scipy.sparse.linalg.cg``: the loop reports its iteration count and
residual norm (:class:`CGInfo`), which the tests and the measurements above use.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from bayescore.models.pde import Dirichlet, Objective, Problem, squared_exponential
    >>> from bayescore.models.pde.profiled_cg import profiled_values
    >>> with jax.enable_x64(True):
    ...     problem = Problem(lambda u, d, x: d["xx"] + d["yy"] + 1.0, [(0, 1), (0, 1)],
    ...                       (8, 9), boundary=[Dirichlet(0.0)])
    ...     objective = Objective(problem, jitter=1e-6)
    ...     kernels = (squared_exponential(lengthscale=0.3),) * 2
    ...     precisions = (jnp.asarray(10.0), jnp.asarray(5.0))
    ...     values, info = profiled_values(objective, kernels, precisions)
    ...     dense = objective.gauss_newton(kernels, precisions, jnp.zeros((8, 9)), 1)
    ...     bool(jnp.allclose(values, dense, atol=1e-8)), bool(info.converged)
    (True, True)
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float

from bayescore.models.pde.kernels import StationaryKernel
from bayescore.models.pde.kronecker import kronecker_apply
from bayescore.models.pde.problem import Dirichlet, Problem, derivative_orders

if TYPE_CHECKING:
    from bayescore.models.pde.solver import Objective

CG_TOLERANCE = 1e-10
"""Default stopping rule of :func:`profiled_values`: the relative residual norm."""
MAX_CG_ITERATIONS = 2000
"""Default iteration cap of :func:`profiled_values`."""
PRECONDITIONED_ITERATIONS = 100
"""Iterations :func:`profiled_values` gives the preconditioner before plain CG
(``precondition="auto"``)."""


class CGInfo(NamedTuple):
    """What one conjugate-gradient solve did.

    Attributes:
        iterations: iterations run.
        relative_residual: :math:`\\|\\mathbf b - A\\mathbf x\\| / \\|\\mathbf b\\|` at the end.
        converged: whether ``relative_residual`` reached the tolerance.
    """

    iterations: Array
    relative_residual: Array
    converged: Array


class _Block(NamedTuple):
    """Boundary rows forming a tensor product: per axis a derivative order and index set."""

    orders: tuple[int, ...]
    indices: tuple[np.ndarray, ...]


class SpectralBasis(eqx.Module):
    r"""The per-dimension coordinates of the module docstring for one kernel.

    Attributes:
        color: :math:`(K_j + \epsilon I)V_j`, coordinates to grid values along axis ``j``.
        fields: per dimension ``{n: K_j^(n) V_j}``, coordinates to derivative fields.
        inverse: :math:`V_j^\top`, grid values to coordinates along axis ``j``
            (:math:`V_j^\top (K_j + \epsilon I)V_j = I`).
    """

    color: tuple[Float[Array, "m m"], ...]
    fields: tuple[dict[int, Float[Array, "m m"]], ...]
    inverse: tuple[Float[Array, "m m"], ...]

    def field(self, z: Float[Array, "*grid"], orders: tuple[int, ...]) -> Array:
        """The derivative field of ``orders`` at coordinates ``z``."""
        return kronecker_apply([f[n] for f, n in zip(self.fields, orders, strict=True)], z)


@eqx.filter_jit
def spectral_basis(
    matrices: Sequence[dict[int, Float[Array, "m m"]]], jitter: float
) -> SpectralBasis:
    r""":class:`SpectralBasis` from per-dimension kernel matrices ``{n: K_j^(n)}``.

    :math:`V_j = L_j^{-\top}Q_j` with :math:`K_j + \epsilon I = L_jL_j^\top` and
    :math:`L_j^{-1}(-K_j^{(2)})L_j^{-\top} = Q_j\operatorname{diag}(\sigma_j)Q_j^\top`.
    """
    color, fields, inverse = [], [], []
    for axis_matrices in matrices:
        gram = axis_matrices[0]
        size = gram.shape[0]
        eye = jnp.eye(size, dtype=gram.dtype)
        factor = jnp.linalg.cholesky(0.5 * (gram + gram.T) + jitter * eye)
        operator = -axis_matrices[2] if 2 in axis_matrices else gram
        half = jsl.solve_triangular(factor, operator, lower=True)
        symmetric = jsl.solve_triangular(factor, half.T, lower=True)
        _, rotation = jnp.linalg.eigh(0.5 * (symmetric + symmetric.T))
        basis = jsl.solve_triangular(factor, rotation, lower=True, trans=1)
        color.append(factor @ (factor.T @ basis))
        fields.append({n: matrix @ basis for n, matrix in axis_matrices.items()})
        inverse.append(basis.T)
    return SpectralBasis(tuple(color), tuple(fields), tuple(inverse))


def _boundary_blocks(problem: Problem) -> list[_Block]:
    """The boundary rows of ``problem`` as disjoint tensor-product blocks (their order and
    signs differ from :meth:`Problem.boundary_field`'s, which :math:`Y^\\top Y` ignores)."""
    blocks = []
    for condition in problem.boundary:
        faces = condition.faces if condition.faces is not None else problem.all_faces()
        taken: list[set[int]] = [set() for _ in problem.shape]
        for face in faces:
            axis = problem.names.index(face[0])
            index = 0 if face[1] == "-" else problem.shape[axis] - 1
            if isinstance(condition, Dirichlet):
                if index in taken[axis]:
                    continue
                indices = tuple(
                    np.array([index])
                    if k == axis
                    else np.array([i for i in range(size) if i not in taken[k]])
                    for k, size in enumerate(problem.shape)
                )
                taken[axis].add(index)
                orders = (0,) * problem.dim
            else:
                indices = tuple(
                    np.array([index]) if k == axis else np.arange(size)
                    for k, size in enumerate(problem.shape)
                )
                orders = tuple(int(k == axis) for k in range(problem.dim))
            blocks.append(_Block(orders, indices))
    return blocks


def _residual_coefficients(
    problem: Problem, field: Callable[[tuple[int, ...]], Array], dtype: jnp.dtype
) -> dict[tuple[int, ...], Array]:
    """The coefficient of each derivative field (order 0: ``u``) in the residual linearised at
    the function whose derivative fields ``field(orders)`` gives (constants for an affine
    residual with constant coefficients; for Allen-Cahn's :math:`u^3`, :math:`3u^2 - 1`)."""
    keys = [derivative_orders(key, problem.names) for key in problem.derivatives]
    zero = (0,) * problem.dim
    base = {orders: field(orders) for orders in {*keys, zero}}
    out = {}
    for orders in keys:

        def residual(scale: Array, orders: tuple[int, ...] = orders) -> Array:
            return problem.residual_field(
                base[zero], lambda o: base[o] + scale if o == orders else base[o]
            )

        out[orders] = jax.jvp(residual, (jnp.zeros((), dtype),), (jnp.ones((), dtype),))[1]
    values = jax.jvp(
        lambda v: problem.residual_field(v, lambda o: base[o]),
        (base[zero],),
        (jnp.ones_like(base[zero]),),
    )[1]
    out[zero] = out.get(zero, 0.0) + values
    return out


class _Preconditioner(eqx.Module):
    r""":math:`P^{-1}` for :math:`P = D + Y^\top Y` (module docstring), by Woodbury."""

    diagonal: Float[Array, "*grid"]
    rows: tuple[tuple[Float[Array, "p m"], ...], ...]
    capacitance: Float[Array, "nb nb"]

    def _apply_rows(self, z: Array) -> Array:
        return jnp.concatenate([kronecker_apply(rows, z).ravel() for rows in self.rows])

    def _apply_transpose(self, w: Array) -> Array:
        out, start = jnp.zeros_like(self.diagonal), 0
        for rows in self.rows:
            shape = tuple(r.shape[0] for r in rows)
            size = int(np.prod(shape))
            piece = w[start : start + size].reshape(shape)
            out = out + kronecker_apply([r.T for r in rows], piece)
            start += size
        return out

    def __call__(self, r: Array) -> Array:
        scaled = r / self.diagonal
        if not self.rows:
            return scaled
        correction = jsl.cho_solve((self.capacitance, True), self._apply_rows(scaled))
        return scaled - self._apply_transpose(correction) / self.diagonal


@eqx.filter_jit
def _preconditioner(
    problem: Problem, basis: SpectralBasis, scale_b: Array, scale_r: Array, z: Array
) -> _Preconditioner:
    dtype = basis.color[0].dtype
    coefficients = _residual_coefficients(problem, lambda orders: basis.field(z, orders), dtype)
    diagonal = jnp.ones(problem.shape, dtype)
    for first, c_first in coefficients.items():
        for second, c_second in coefficients.items():
            weight = scale_r**2 * jnp.mean(c_first * c_second)
            columns = [
                jnp.sum(f[a] * f[b], axis=0)
                for f, a, b in zip(basis.fields, first, second, strict=True)
            ]
            outer = columns[0]
            for column in columns[1:]:
                outer = jnp.multiply.outer(outer, column)
            diagonal = diagonal + weight * outer
    blocks = _boundary_blocks(problem)
    rows = tuple(
        tuple(
            (scale_b if axis == 0 else 1.0) * f[n][idx]
            for axis, (f, n, idx) in enumerate(
                zip(basis.fields, block.orders, block.indices, strict=True)
            )
        )
        for block in blocks
    )
    if not rows:
        return _Preconditioner(diagonal, (), jnp.zeros((0, 0), dtype))
    letters = string.ascii_letters
    grid = letters[: problem.dim]
    left, right = letters[problem.dim : 2 * problem.dim], letters[2 * problem.dim : 3 * problem.dim]
    spec = ",".join(
        [f"{left[k]}{grid[k]}" for k in range(problem.dim)]
        + [grid]
        + [f"{right[k]}{grid[k]}" for k in range(problem.dim)]
    )
    inverse = 1.0 / diagonal
    parts = []
    for rows_first in rows:
        line = []
        for rows_second in rows:
            block = jnp.einsum(
                f"{spec}->{left}{right}", *rows_first, inverse, *rows_second, optimize="greedy"
            )
            size_first = int(np.prod([r.shape[0] for r in rows_first]))
            line.append(block.reshape(size_first, -1))
        parts.append(jnp.concatenate(line, axis=1))
    matrix = jnp.concatenate(parts, axis=0)
    matrix = 0.5 * (matrix + matrix.T) + jnp.eye(matrix.shape[0], dtype=dtype)
    return _Preconditioner(diagonal, rows, jnp.linalg.cholesky(matrix))


def conjugate_gradient(
    operator: Callable[[Array], Array],
    rhs: Array,
    preconditioner: Callable[[Array], Array],
    start: Array,
    tolerance: float,
    max_iterations: int,
) -> tuple[Array, CGInfo]:
    r"""Preconditioned conjugate gradients for :math:`A\mathbf x = \mathbf b`, :math:`A` and
    :math:`P^{-1}` symmetric positive definite (Hestenes & Stiefel 1952; Saad 2003, Alg.
    9.1), until :math:`\|\mathbf b - A\mathbf x\| \le` ``tolerance`` :math:`\|\mathbf b\|`.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde.profiled_cg import conjugate_gradient
        >>> a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x, info = conjugate_gradient(lambda v: a @ v, jnp.ones(2), lambda r: r,
        ...                              jnp.zeros(2), 1e-6, 10)
        >>> [round(float(v), 4) for v in x], int(info.iterations)
        ([0.1818, 0.2727], 2)
    """
    norm_b = jnp.linalg.norm(rhs)
    residual = rhs - operator(start)
    direction = preconditioner(residual)
    inner = jnp.vdot(residual, direction)

    def keep_going(state: tuple) -> Array:
        *_, iteration, norm = state
        return (norm > tolerance * norm_b) & (iteration < max_iterations)

    def step(state: tuple) -> tuple:
        x, residual, direction, inner, iteration, _ = state
        image = operator(direction)
        length = inner / jnp.vdot(direction, image)
        x = x + length * direction
        residual = residual - length * image
        preconditioned = preconditioner(residual)
        new_inner = jnp.vdot(residual, preconditioned)
        direction = preconditioned + (new_inner / inner) * direction
        return x, residual, direction, new_inner, iteration + 1, jnp.linalg.norm(residual)

    state = (start, residual, direction, inner, jnp.zeros((), jnp.int32), jnp.linalg.norm(residual))
    x, _, _, _, iterations, norm = jax.lax.while_loop(keep_going, step, state)
    relative = norm / jnp.where(norm_b > 0, norm_b, 1.0)
    return x, CGInfo(iterations, relative, relative <= tolerance)


@eqx.filter_jit
def profiled_values(
    objective: Objective,
    kernels: Sequence[StationaryKernel],
    log_precisions: tuple[Array, Array],
    start: Float[Array, "*grid"] | None = None,
    *,
    tolerance: float = CG_TOLERANCE,
    max_iterations: int = MAX_CG_ITERATIONS,
    precondition: bool | str = "auto",
    num_newton_steps: int = 1,
) -> tuple[Float[Array, "*grid"], CGInfo]:
    r"""The grid values minimising ``objective`` at fixed kernels and precisions, by
    ``num_newton_steps`` Gauss-Newton steps, each solved by conjugate gradients.

    Equal (to ``tolerance``) to as many steps of :meth:`Objective.gauss_newton`, without
    forming an :math:`M \times M` matrix (module docstring); one step is exact for a residual
    affine in :math:`u` and its derivatives. Each step starts CG from the last step's values,
    and its preconditioner takes the residual's coefficients linearised there.
    ``info`` is the last step's. ``start``: grid values to start from
    (default zeros). ``precondition``: ``True`` for the Jacobi-Woodbury preconditioner,
    ``False`` for plain CG in the same coordinates, ``"auto"`` (what :func:`solve` uses) for
    the preconditioner for up to ``PRECONDITIONED_ITERATIONS`` iterations, then, if it has
    not converged, plain CG from ``start`` with the rest of ``max_iterations`` (see the
    measurements in the module docstring for why neither alone). ``info.iterations`` counts
    both.

    Compiled whole (``equinox.filter_jit``): called outside ``jit``, the loop and its
    linearisation are one program, not hundreds of small ones.

    Example:
        >>> # see the module docstring
    """
    problem = objective.problem
    ops = objective.operators(kernels)
    basis = spectral_basis(ops.matrices, objective.jitter)
    scale_b = jnp.sqrt(objective.boundary_weight * jnp.exp(log_precisions[0]))
    scale_r = jnp.exp(0.5 * log_precisions[1])

    def scaled(z: Array) -> Array:
        residual, mismatch = problem.fields(lambda orders: basis.field(z, orders))
        return jnp.concatenate([scale_b * mismatch, scale_r * residual.ravel()])

    zeros = jnp.zeros(problem.shape, basis.color[0].dtype)
    z = zeros if start is None else kronecker_apply(basis.inverse, start)
    for _ in range(num_newton_steps):
        # One Gauss-Newton step: with rho(v) ~ rho(z) + J (v - z), J the Jacobian at z, the
        # new z solves (I + J'J) v = J'(J z - rho(z)), by CG from z. For an affine residual
        # J z - rho(z) = -rho(0) for every z: one step is the minimiser.
        offset, forward = jax.linearize(scaled, z)
        backward = jax.linear_transpose(forward, z)

        def normal(v: Array, forward: Callable = forward, backward: Callable = backward) -> Array:
            return v + backward(forward(v))[0]

        rhs = backward(forward(z) - offset)[0]
        z, info = _cg_step(
            normal, rhs, lambda z=z: _preconditioner(problem, basis, scale_b, scale_r, z),
            z, tolerance, max_iterations, precondition,
        )  # fmt: skip
    return kronecker_apply(basis.color, z), info


def _cg_step(
    normal: Callable[[Array], Array],
    rhs: Array,
    preconditioner: Callable[[], _Preconditioner],
    start: Array,
    tolerance: float,
    max_iterations: int,
    precondition: bool | str,
) -> tuple[Array, CGInfo]:
    """:func:`conjugate_gradient` as :func:`profiled_values`'s ``precondition`` says."""
    identity = lambda r: r  # noqa: E731
    if precondition is False:
        return conjugate_gradient(normal, rhs, identity, start, tolerance, max_iterations)
    if precondition is True:
        return conjugate_gradient(normal, rhs, preconditioner(), start, tolerance, max_iterations)
    budget = min(PRECONDITIONED_ITERATIONS, max_iterations)
    z, info = conjugate_gradient(normal, rhs, preconditioner(), start, tolerance, budget)
    done = info.converged
    rest = jnp.where(done, 0, max_iterations - budget)
    z_plain, info_plain = conjugate_gradient(normal, rhs, identity, start, tolerance, rest)
    z = jnp.where(done, z, z_plain)
    info = jax.tree.map(lambda a, b: jnp.where(done, a, b), info, info_plain)
    info = info._replace(iterations=info.iterations + jnp.where(done, 0, budget))
    return z, info


__all__ = ["CGInfo", "SpectralBasis", "conjugate_gradient", "profiled_values", "spectral_basis"]
