r"""The GP-HM paper's test cases: exact solutions, PDE problems, reference numbers, data files.

Eleven manufactured-solution cases of Fang et al. (2024) (their code's ``equation_dict``,
``config/*.yaml`` and ``run_*.sh``), plus two variants the shared data hold
(``poisson_1d-mix_sin_cos100``, ``advection-sin_2pi``). Each :class:`Case` states the exact
solution :math:`u`, the PDE, the box, the collocation grid, the reference's settings
(``freq_scale``, :math:`\lambda_b`, Adam steps) and the relative :math:`L^2` errors and wall time
its repository logged (notes, Part 2.3; the reference took the minimum over test-set
checkpoints, so these numbers are optimistic).

- Poisson: :math:`\Delta u = f`; Allen-Cahn: :math:`\Delta u + u(u^2 - 1) = f`;
  advection: :math:`\beta u_x + u_y = f` (:math:`\beta = 200`, :math:`f = 0`).
- The source :math:`f` is computed from the exact :math:`u` by autodiff in float64, as the
  reference's ``get_source_val``; Dirichlet data are the exact :math:`u` on every face.

:func:`case_problem` builds the :class:`~bayescore.models.pde.Problem`; :func:`load_case`
reads the shared data files (``cases.json`` and one ``.npz`` per case) from a directory the
caller names; nothing here needs that directory.

Example:
    >>> from bayescore.models.pde.cases import CASES, case_problem
    >>> problem = case_problem("poisson_1d-single_sin", grid_size=64)
    >>> problem.shape, problem.derivatives, CASES["poisson_1d-single_sin"].reference["GM"]
    ((64,), ('xx',), 3.99e-07)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from bayescore.core.errors import ArgumentError, DataError, ShapeError, check_positive_int
from bayescore.models.pde.kernels import StationaryKernel, matern, spectral_mixture
from bayescore.models.pde.kernels import squared_exponential as _squared_exponential
from bayescore.models.pde.problem import Dirichlet, Problem

TWO_PI = 2.0 * math.pi
KERNELS = ("GM", "StM", "SE", "Matern")
"""The reference's kernel names: ``SE_Cos_1d``, ``Matern52_Cos_1d``, ``SE_1d``, ``Matern52_1d``."""


class Case(NamedTuple):
    r"""One GP-HM test case.

    Attributes:
        name: the key used by the reference and the shared data files.
        equation: ``"poisson"``, ``"allen-cahn"`` or ``"advection"``.
        solution: the exact :math:`u`, a function of stacked coordinates ``x`` (``x[0]``,
            ``x[1]``) written in ``jax.numpy``.
        domain: the box, one ``(lower, upper)`` pair per dimension.
        grid_size: collocation points per dimension (``N_col``).
        max_frequency: the reference's ``freq_scale`` (largest initial frequency).
        boundary_weight: :math:`\lambda_b` (``llk_weight``).
        reference_steps: the reference's Adam steps (``run_*.sh``).
        reference: relative :math:`L^2` errors the reference logged, by kernel
            (``"GM"``, ``"StM"``, ``"SE"``, ``"Matern"``); missing when not logged.
        reference_time: the reference's wall time for GP-HM-StM, seconds (unknown hardware).
        beta: the advection speed (advection only).
    """

    name: str
    equation: str
    solution: Callable[[Array], Array]
    domain: tuple[tuple[float, float], ...]
    grid_size: int
    max_frequency: float
    boundary_weight: float
    reference_steps: int
    reference: Mapping[str, float]
    reference_time: float | None
    beta: float = 0.0

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return len(self.domain)

    @property
    def length(self) -> float:
        """The longest side of the box (every case's box is a cube: the side)."""
        return max(upper - lower for lower, upper in self.domain)

    def kernel(self, kind: str = "GM", num_components: int = 30) -> StationaryKernel:
        r"""The 1-D kernel the solver starts from: ``"GM"`` (spectral mixture), ``"StM"``
        (Matérn-5/2 mixture), ``"SE"`` or ``"Matern"`` (the baselines).

        All start as the reference does (weights :math:`1/Q`, frequencies
        ``linspace(0, 1, Q) * max_frequency``, inverse lengthscale :math:`a = 1`) except the
        spectral mixtures' envelopes, which start at lengthscale :math:`1/a = L`, the box's
        side. The reference's :math:`a = 1` is not scale-free: it is :math:`1/L` on its
        :math:`[0, 1]` cases but :math:`2\pi/L` on its :math:`[0, 2\pi]` ones. For GM it
        matters in 2-D: ``poisson_2d-sin_add_cos``'s solution :math:`g(x) + g(y)` is constant
        along one axis in each term, which a Gaussian envelope of lengthscale
        :math:`L/2\pi` spans poorly; with ``method="collocation"`` its error was
        :math:`5.5\times10^{-3}` from :math:`a = 1` and :math:`2.6\times10^{-4}` from
        :math:`1/a = L`. The Matérn-5/2 envelope minds everywhere: it has a
        :math:`|a\delta|^5` kink at lag 0, so its spectrum has algebraic tails
        :math:`\propto a^5/|s - \mu|^6` and the kernel interpolant's second derivative a
        boundary layer. On ``poisson_1d-single_sin`` with :math:`a = 1` the profiled grid solve
        of the starting kernel leaves a relative PDE residual of :math:`7\times10^{-5}`
        (GM's: :math:`10^{-6}`), and 40 L-BFGS iterations end in a fit that keeps all 30
        components, 15 to :math:`10^7` times GM's error on the :math:`[0, 2\pi]` cases.
        :math:`1/a = L` is the reference's own start on its :math:`[0, 1]` cases (where StM
        matched GM), and gives spectral peaks of width :math:`\propto 1/L`, the finest a box
        of side :math:`L` resolves.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.models.pde.cases import CASES
            >>> kernel = CASES["poisson_1d-single_sin"].kernel("StM")
            >>> lengthscale = jnp.exp(-kernel.log_inverse_lengthscale)  # the box's side, 2 pi
            >>> kernel.frequency[-1].item(), round(lengthscale[0].item(), 4)
            (20.0, 6.2832)
        """
        if kind == "GM":
            return spectral_mixture(num_components, self.max_frequency, lengthscale=self.length)
        if kind == "StM":
            return spectral_mixture(
                num_components, self.max_frequency, spectrum="matern", lengthscale=self.length
            )
        if kind == "SE":
            return _squared_exponential(num_components)
        if kind == "Matern":
            return matern(2.5, num_components)
        raise ArgumentError(f"kind must be one of {KERNELS}, got {kind!r}.")


def _sin_sin(x: Array) -> Array:
    return jnp.sin(100 * x[0]) * jnp.sin(100 * x[1])


def _mix(t: Array) -> Array:
    return jnp.sin(t) + 0.1 * jnp.sin(20 * t) + jnp.cos(100 * t)


def _case(
    name: str,
    equation: str,
    solution: Callable[[Array], Array],
    upper: float,
    dim: int,
    grid_size: int,
    max_frequency: float,
    steps: float,
    reference: dict[str, float],
    time: float | None,
    boundary_weight: float = 200.0,
    beta: float = 0.0,
) -> Case:
    domain = ((0.0, upper),) * dim
    return Case(
        name, equation, solution, domain, grid_size, max_frequency, boundary_weight,
        int(steps), reference, time, beta,
    )  # fmt: skip


def _errors(stm: float, gm: float, matern_error: float, se: float) -> dict[str, float]:
    return {"StM": stm, "GM": gm, "Matern": matern_error, "SE": se}


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        _case("poisson_1d-single_sin", "poisson", lambda x: jnp.sin(100 * x[0]), TWO_PI, 1,
              400, 20, 1e5, _errors(6.53e-7, 3.99e-7, 3.32e-2, 2.70e-2), 1665),
        _case("poisson_1d-sin_cos", "poisson",
              lambda x: jnp.sin(6 * x[0]) * jnp.cos(100 * x[0]), TWO_PI, 1,
              400, 20, 1e5, _errors(5.47e-6, 1.52e-6, 5.16e-2, 1.00), 1663),
        _case("poisson_1d-x_time_sinx", "poisson", lambda x: x[0] * jnp.sin(200 * x[0]), TWO_PI,
              1, 900, 50, 1e5, _errors(8.98e-7, 1.55e-6, 1.83e-2, 3.20e-1), 7451),
        _case("poisson_1d-mix_sin", "poisson",
              lambda x: jnp.sin(x[0]) + 0.1 * jnp.sin(20 * x[0]) + 0.05 * jnp.sin(100 * x[0]),
              1.0, 1, 900, 30, 1e6, _errors(9.81e-3, 1.04e-2, 4.03e-1, 1.69e-1), 7885),
        _case("poisson_1d-mix_sin_cos100", "poisson",
              lambda x: jnp.sin(x[0]) + 0.1 * jnp.sin(20 * x[0]) + 0.05 * jnp.cos(100 * x[0]),
              1.0, 1, 900, 30, 1e6, {}, None),
        _case("poisson_1d-x2_add_sinx", "poisson",
              lambda x: jnp.sin(500 * x[0]) - 2 * (x[0] - 0.5) ** 2, 1.0, 1,
              400, 100, 1e6, _errors(1.21e-2, 4.84e-2, 6.29e-1, 9.75e-1), 4794),
        _case("allencahn_1d-single_sin", "allen-cahn", lambda x: jnp.sin(100 * x[0]), TWO_PI, 1,
              400, 20, 1e5, _errors(4.90e-6, 7.71e-7, 3.33e-2, 2.75e-2), 2333),
        _case("allencahn_1d-sin_cos", "allen-cahn",
              lambda x: jnp.sin(6 * x[0]) * jnp.cos(100 * x[0]), TWO_PI, 1,
              400, 20, 1e5, _errors(4.76e-6, 4.24e-6, 5.16e-2, 1.06e-2), 2319),
        _case("poisson_2d-sin_sin", "poisson", _sin_sin, TWO_PI, 2,
              400, 20, 1e5, _errors(6.87e-5, 6.46e-5, 6.29e-1, 1.00), 8209),
        _case("poisson_2d-sin_add_cos", "poisson",
              lambda x: jnp.sin(6 * x[0]) * jnp.cos(20 * x[0])
              + jnp.sin(6 * x[1]) * jnp.cos(20 * x[1]), TWO_PI, 2,
              200, 20, 1e6, _errors(1.02e-3, 1.06e-3, 3.55e-2, 9.53e-1), 6627),
        _case("allencahn_2d-mix-sincos", "allen-cahn", lambda x: _mix(x[0]) * _mix(x[1]), 1.0, 2,
              400, 30, 3e6, _errors(5.68e-3, 2.58e-3, 2.95e-1, 3.43e-1), 18244),
        _case("advection-sin", "advection", lambda x: jnp.sin(x[0] - 200 * x[1]), 1.0, 2,
              200, 40, 1e6, _errors(1.43e-4, 1.35e-3, 2.29e-2, 1.15e-2), 2234, 500.0, 200.0),
        _case("advection-sin_2pi", "advection", lambda x: jnp.sin(x[0] - 200 * x[1]), TWO_PI, 2,
              200, 40, 1e6, {}, None, 500.0, 200.0),
    )
}  # fmt: skip
"""The cases by name; the first eleven are the notes' table (Part 2.2), the last two variants."""

PAPER_CASES = tuple(
    name for name in CASES if name not in ("poisson_1d-mix_sin_cos100", "advection-sin_2pi")
)
"""The eleven cases of the paper's table."""


def _get(name: str) -> Case:
    if name not in CASES:
        raise ArgumentError(f"no GP-HM case {name!r}. Pass one of {sorted(CASES)}.")
    return CASES[name]


def _scalar_function(case: Case) -> Callable[[Array], Array]:
    """``u`` at one point ``(D,)``, for autodiff."""
    return lambda point: case.solution(point)


def exact_fields(name: str, axes: tuple[ArrayLike, ...]) -> dict[str, np.ndarray]:
    """The exact solution and the derivatives its PDE needs, in float64, on a tensor grid.

    Returns ``{"u": ..., "xx": ..., "yy": ...}`` (``"x"``, ``"y"`` for advection), each of the
    grid's shape, computed by ``jax.grad`` of the exact solution under float64.

    Example:
        >>> import numpy as np
        >>> from bayescore.models.pde.cases import exact_fields
        >>> fields = exact_fields("poisson_1d-single_sin", (np.array([0.1]),))
        >>> second = fields["xx"]
        >>> bool(np.isclose(second[0], -1e4 * np.sin(10.0)))
        True
    """
    case = _get(name)
    if len(axes) != case.dim:
        raise ShapeError(f"{name} has {case.dim} dimension(s); got {len(axes)} axes.")
    names = "xy"[: case.dim]
    with jax.enable_x64(True):
        mesh = jnp.stack(jnp.meshgrid(*[jnp.asarray(a, jnp.float64) for a in axes], indexing="ij"))
        points = mesh.reshape(case.dim, -1).T
        function = _scalar_function(case)
        out = {"u": jax.vmap(function)(points)}
        gradient = jax.grad(function)
        for axis, label in enumerate(names):
            if case.equation == "advection":
                out[label] = jax.vmap(lambda p, a=axis: gradient(p)[a])(points)
            else:
                second = jax.grad(lambda p, a=axis: gradient(p)[a])
                out[label * 2] = jax.vmap(lambda p, a=axis, s=second: s(p)[a])(points)
        shape = mesh.shape[1:]
        return {
            key: np.asarray(value, dtype=np.float64).reshape(shape) for key, value in out.items()
        }


def source(name: str, axes: tuple[ArrayLike, ...]) -> np.ndarray:
    """The source :math:`f` of case ``name`` on the tensor grid of ``axes`` (float64).

    Example:
        >>> import numpy as np
        >>> from bayescore.models.pde.cases import source
        >>> bool(np.isclose(source("allencahn_1d-single_sin", (np.array([0.3]),))[0],
        ...      -1e4 * np.sin(30.0) + np.sin(30.0) * (np.sin(30.0) ** 2 - 1)))
        True
    """
    case = _get(name)
    fields = exact_fields(name, axes)
    u = fields["u"]
    if case.equation == "advection":
        return case.beta * fields["x"] + fields["y"]
    laplacian = sum(fields[label * 2] for label in "xy"[: case.dim])
    if case.equation == "allen-cahn":
        return laplacian + u * (u**2 - 1.0)
    return laplacian


def case_problem(name: str, grid_size: int | None = None) -> Problem:
    """The :class:`~bayescore.models.pde.Problem` of case ``name`` on its collocation grid.

    Args:
        name: a key of :data:`CASES`.
        grid_size: points per dimension (default: the reference's ``N_col``).

    The source is precomputed in float64 on the grid (:func:`source`) and the Dirichlet data
    are the exact solution on every face, as in the reference.

    Example:
        >>> from bayescore.models.pde.cases import case_problem
        >>> problem = case_problem("advection-sin", grid_size=16)
        >>> problem.shape, problem.derivatives, problem.num_boundary
        ((16, 16), ('x', 'y'), 60)
    """
    case = _get(name)
    size = case.grid_size if grid_size is None else check_positive_int("grid_size", grid_size)
    axes = tuple(np.linspace(lo, hi, size) for lo, hi in case.domain)
    forcing = source(name, axes)
    boundary = [Dirichlet(exact_fields(name, axes)["u"])]
    names = "xy"[: case.dim]
    if case.equation == "advection":
        beta = case.beta

        def residual(u: Array, d: Mapping[str, Array], x: Array) -> Array:
            return beta * d["x"] + d["y"] - forcing

    elif case.equation == "allen-cahn":

        def residual(u: Array, d: Mapping[str, Array], x: Array) -> Array:
            return sum(d[label * 2] for label in names) + u * (u**2 - 1.0) - forcing

    else:

        def residual(u: Array, d: Mapping[str, Array], x: Array) -> Array:
            return sum(d[label * 2] for label in names) - forcing

    return Problem(residual, case.domain, (size,) * case.dim, boundary=boundary, names=names)


class CaseData(NamedTuple):
    """One case's shared data: its ``cases.json`` entry and its ``.npz`` arrays.

    Attributes:
        meta: the ``cases.json`` entry (``eq``, ``domain``, ``N_col`` or ``N_col_per_dim``...).
        arrays: the ``.npz`` arrays: ``x_col``, ``f_col``, ``u_col``, ``bc_x``, ``bc_u``,
            ``x_test``, ``u_test`` in 1-D; ``x_col``, ``y_col``, ``f_col``, ``bvals``,
            ``x_test``, ``y_test``, ``u_test`` in 2-D.
    """

    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def test_axes(self) -> tuple[np.ndarray, ...]:
        """The test grid's coordinates per dimension (300 points each)."""
        if "y_test" in self.arrays:
            return self.arrays["x_test"], self.arrays["y_test"]
        return (self.arrays["x_test"],)


def load_case(name: str, data_dir: str | Path) -> CaseData:
    """Read case ``name`` from ``data_dir`` (the shared ``gphm`` folder).

    Raises :class:`DataError` when the folder or the case's files are missing or hold
    non-finite values.

    Example:
        >>> from bayescore.models.pde.cases import load_case
        >>> load_case("poisson_1d-single_sin", "/nonexistent")
        Traceback (most recent call last):
        ...
        bayescore.core.errors.DataError: data_dir /nonexistent has no cases.json. ...
    """
    folder = Path(data_dir)
    index = folder / "cases.json"
    if not index.is_file():
        raise DataError(
            f"data_dir {folder} has no cases.json. Pass the folder that holds the GP-HM data "
            "(cases.json and one .npz per case)."
        )
    meta = json.loads(index.read_text())
    if name not in meta:
        raise ArgumentError(f"cases.json in {folder} has no case {name!r}; it has {sorted(meta)}.")
    path = folder / f"{name}.npz"
    if not path.is_file():
        raise DataError(f"{path} is missing. Regenerate the shared data or pass another data_dir.")
    with np.load(path) as npz:
        arrays = {key: np.asarray(npz[key]) for key in npz.files}
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise DataError(f"{path}: array {key!r} has non-finite values.")
    return CaseData(meta[name], arrays)


def relative_l2(prediction: ArrayLike, exact: ArrayLike) -> float:
    r""":math:`\|\hat u - u\|_2 / \|u\|_2` over all test points (the reference's metric).

    Example:
        >>> from bayescore.models.pde.cases import relative_l2
        >>> relative_l2([1.0, 2.0], [1.0, 2.5])
        0.18569533817705186
    """
    prediction, exact = np.asarray(prediction, float), np.asarray(exact, float)
    if prediction.shape != exact.shape:
        raise ShapeError(f"prediction has shape {prediction.shape}, exact {exact.shape}.")
    return float(np.linalg.norm(prediction - exact) / np.linalg.norm(exact))


__all__ = [
    "CASES",
    "KERNELS",
    "PAPER_CASES",
    "Case",
    "CaseData",
    "case_problem",
    "exact_fields",
    "load_case",
    "relative_l2",
    "source",
]
