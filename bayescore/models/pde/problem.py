r"""A PDE on a box, stated once and solved by any solver: GP (:func:`solve`) or PINN.

A :class:`Problem` is the residual :math:`\mathcal R(u, \partial u, x) = 0` on the box
:math:`\Omega = \prod_j [a_j, b_j]`, collocated on the uniform tensor grid of
``shape = (M_1, ..., M_D)`` points, with boundary conditions on the faces of the box:

- :class:`Dirichlet`: :math:`u = g` on the chosen faces (all by default);
- :class:`Neumann`: :math:`\partial u / \partial n = h` (outward normal) on the chosen faces.

The residual is a function of whole grid fields, ``residual(u, d, x)``: ``u`` is the solution
on the grid (shape ``(M_1, ..., M_D)``), ``d`` maps derivative names to fields of the same
shape, and ``x`` stacks the coordinates (shape ``(D, M_1, ..., M_D)``, ``x[j]`` the
:math:`j`-th coordinate at every point). A derivative is named by listing the dimension names
once per order: with ``names="xy"``, ``d["xx"]`` is :math:`\partial^2 u/\partial x^2`,
``d["xy"]`` is :math:`\partial^2 u/\partial x\partial y`, ``d["y"]`` is
:math:`\partial u/\partial y`. Nonlinear residuals (``u * (u**2 - 1)``) are fine: the GP solver
applies the residual to the derivative fields of its conditional mean (Fang et al. 2024,
eq. 5), so anything written in ``jax.numpy`` works.

Faces are named by a dimension name and a side: ``"x-"`` is :math:`x = a_x`, ``"x+"`` is
:math:`x = b_x`.

Example:
    >>> import jax.numpy as jnp
    >>> from bayescore.models.pde import Dirichlet, Problem
    >>> problem = Problem(lambda u, d, x: d["xx"] + d["yy"] - 1.0,
    ...                   domain=[(0, 1), (0, 2)], shape=(8, 16),
    ...                   boundary=[Dirichlet(0.0)])
    >>> problem.derivatives, problem.num_boundary
    (('xx', 'yy'), 44)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.errors import ArgumentError, DataError, ShapeError, check_positive_int

DEFAULT_NAMES = "xyz"
MIN_POINTS = 3  # a second difference needs three points per dimension

Residual = Callable[[Array, Mapping[str, Array], Array], ArrayLike]
BoundaryValue = Callable[[Array], ArrayLike] | ArrayLike


class Dirichlet(NamedTuple):
    r"""The condition :math:`u = g` on ``faces`` (all faces of the box when ``None``).

    Attributes:
        value: :math:`g`, a function of the stacked coordinates ``x`` (shape
            ``(D, M_1, ..., M_D)``) returning a grid field, a grid-shaped array, or a number;
            only its values at the boundary points are used.
        faces: face names such as ``("x-", "x+", "t-")``, or ``None`` for all faces.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet
        >>> Dirichlet(lambda x: jnp.sin(x[0]), faces=("x-",)).faces
        ('x-',)
    """

    value: BoundaryValue = 0.0
    faces: tuple[str, ...] | None = None


class Neumann(NamedTuple):
    r"""The condition :math:`\partial u/\partial n = h` (outward normal) on ``faces``.

    On face ``"x-"`` the outward normal derivative is :math:`-\partial_x u`, on ``"x+"`` it is
    :math:`+\partial_x u`. ``value`` and ``faces`` as in :class:`Dirichlet`.

    Example:
        >>> from bayescore.models.pde import Neumann
        >>> Neumann(0.0, faces=("x+",)).value
        0.0
    """

    value: BoundaryValue = 0.0
    faces: tuple[str, ...] | None = None


class _Recorder(Mapping):
    """The ``d`` handed to the residual while :class:`Problem` traces it: records the keys."""

    def __init__(self, like: Array, names: str) -> None:
        self.like, self.names, self.read = like, names, {}

    def __getitem__(self, key: str) -> Array:
        self.read[key] = derivative_orders(key, self.names)
        return jnp.zeros_like(self.like)

    def __iter__(self) -> Iterator[str]:
        return iter(self.read)

    def __len__(self) -> int:
        return len(self.read)


def derivative_orders(key: object, names: str) -> tuple[int, ...]:
    """The per-dimension orders of the derivative named ``key`` (e.g. ``"xxy"`` -> ``(2, 1)``).

    Example:
        >>> from bayescore.models.pde.problem import derivative_orders
        >>> derivative_orders("yxx", "xy")
        (2, 1)
    """
    if not isinstance(key, str) or not key or any(char not in names for char in key):
        raise ArgumentError(
            f"the residual read d[{key!r}], but derivatives are named by the dimension names "
            f"{names!r}, each repeated once per order: d['{names[0] * 2}'] for the second "
            f"derivative in {names[0]}"
            + (f", d['{names[:2]}'] for the mixed one" if len(names) > 1 else "")
            + ". Use those keys (or pass names= to Problem)."
        )
    return tuple(key.count(name) for name in names)


class Problem(eqx.Module):
    r"""A PDE :math:`\mathcal R(u, \partial u, x) = 0` on a box, with boundary conditions.

    Args:
        residual: ``residual(u, d, x) -> field`` (see the module docstring); its output must
            broadcast to the grid shape. It is traced once here to find which derivatives it
            reads.
        domain: the box, one ``(lower, upper)`` pair per dimension (a single pair for 1-D).
        shape: grid points per dimension, each at least 3 (an int for 1-D).
        boundary: :class:`Dirichlet` and :class:`Neumann` conditions.
        names: one character per dimension (default ``"x"``, ``"xy"``, ``"xyz"``).

    Attributes:
        derivatives: the derivative keys the residual reads, in the order it read them.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.pde import Dirichlet, Problem
        >>> problem = Problem(lambda u, d, x: d["xx"] + jnp.sin(x[0]), (0.0, jnp.pi), 32,
        ...                   boundary=[Dirichlet(0.0)])
        >>> problem.shape, problem.names, problem.derivatives
        ((32,), 'x', ('xx',))
    """

    residual: Residual = eqx.field(static=True)
    domain: tuple[tuple[float, float], ...] = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    names: str = eqx.field(static=True)
    boundary: tuple[Dirichlet | Neumann, ...]
    derivatives: tuple[str, ...] = eqx.field(static=True)
    _orders: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(
        self,
        residual: Residual,
        domain: Sequence[Sequence[float]] | Sequence[float],
        shape: int | Sequence[int],
        boundary: Sequence[Dirichlet | Neumann] = (),
        names: str | None = None,
    ) -> None:
        self.shape = _check_shape(shape)
        self.domain = _check_domain(domain, len(self.shape))
        self.names = _check_names(names, len(self.shape))
        if not callable(residual):
            raise ArgumentError(
                f"residual must be a function residual(u, d, x) -> field, got {residual!r}."
            )
        self.residual = residual
        self.boundary = tuple(_check_condition(c, self.names, self.shape) for c in boundary)
        recorder = self._trace_residual()
        self.derivatives = tuple(recorder.read)
        self._orders = tuple(recorder.read.values())

    # -------------------------------------------------------------- geometry

    @property
    def dim(self) -> int:
        """The number of dimensions :math:`D`."""
        return len(self.shape)

    @property
    def size(self) -> int:
        r"""The number of grid points :math:`M = \prod_j M_j`."""
        return math.prod(self.shape)

    def spacing(self) -> tuple[float, ...]:
        """The grid step :math:`(b_j - a_j)/(M_j - 1)` per dimension."""
        return tuple(
            (hi - lo) / (m - 1) for (lo, hi), m in zip(self.domain, self.shape, strict=True)
        )

    def axes(self) -> tuple[Float[Array, " m"], ...]:
        """The grid coordinates per dimension (in JAX's default float type)."""
        return tuple(
            jnp.linspace(lo, hi, m) for (lo, hi), m in zip(self.domain, self.shape, strict=True)
        )

    def points(self) -> Float[Array, " dim *grid"]:
        """The stacked coordinates ``x`` the residual receives, shape ``(D, M_1, ..., M_D)``."""
        return jnp.stack(jnp.meshgrid(*self.axes(), indexing="ij"))

    def face_indices(self, face: str) -> np.ndarray:
        """Flat (row-major) indices of the grid points on ``face`` (e.g. ``"x-"``)."""
        axis, side = _parse_face(face, self.names)
        index = np.arange(self.size).reshape(self.shape)
        return np.take(index, 0 if side < 0 else self.shape[axis] - 1, axis=axis).ravel()

    def _condition_indices(self, condition: Dirichlet | Neumann) -> np.ndarray:
        faces = condition.faces if condition.faces is not None else self.all_faces()
        return np.unique(np.concatenate([self.face_indices(face) for face in faces]))

    def all_faces(self) -> tuple[str, ...]:
        """Every face of the box: ``("x-", "x+", "y-", ...)``."""
        return tuple(f"{name}{side}" for name in self.names for side in "-+")

    @property
    def num_boundary(self) -> int:
        """The number of boundary equations :math:`N_b` (Neumann: one per face point)."""
        total = 0
        for condition in self.boundary:
            if isinstance(condition, Dirichlet):
                total += len(self._condition_indices(condition))
            else:
                faces = condition.faces if condition.faces is not None else self.all_faces()
                total += sum(len(self.face_indices(face)) for face in faces)
        return total

    # -------------------------------------------------------------- evaluation

    def required_orders(self) -> tuple[tuple[int, ...], ...]:
        """Every derivative (per-dimension orders) the residual and the conditions need."""
        needed = dict.fromkeys(self._orders)
        for condition in self.boundary:
            if isinstance(condition, Neumann):
                faces = condition.faces if condition.faces is not None else self.all_faces()
                for face in faces:
                    axis, _ = _parse_face(face, self.names)
                    needed[tuple(int(j == axis) for j in range(self.dim))] = None
        return tuple(needed)

    def residual_field(
        self, values: Float[Array, "*grid"], derivative: Callable[[tuple[int, ...]], Array]
    ) -> Float[Array, "*grid"]:
        """The residual at every grid point, given ``derivative(orders) -> field``.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.models.pde import Problem
            >>> problem = Problem(lambda u, d, x: d["xx"] - u, (0, 1), 4)
            >>> problem.residual_field(jnp.ones(4), lambda orders: 3 * jnp.ones(4)).tolist()
            [2.0, 2.0, 2.0, 2.0]
        """
        fields = {
            key: derivative(orders)
            for key, orders in zip(self.derivatives, self._orders, strict=True)
        }
        out = jnp.asarray(self.residual(values, fields, self.points()))
        return jnp.broadcast_to(out, self.shape)

    def fields(
        self, field: Callable[[tuple[int, ...]], Array]
    ) -> tuple[Float[Array, "*grid"], Float[Array, " boundary"]]:
        """The residual field and the boundary mismatches of the function whose derivative
        fields on the grid ``field(orders)`` gives (``(0, ..., 0)``: its values), each order
        computed once.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.models.pde import Dirichlet, Problem
            >>> problem = Problem(lambda u, d, x: d["xx"] - u, (0, 1), 4,
            ...                   boundary=[Dirichlet(1.0)])
            >>> field = lambda orders: (1.0 + sum(orders)) * jnp.ones(4)  # u = 1, u'' = 3
            >>> residual, mismatch = problem.fields(field)
            >>> residual.tolist(), mismatch.tolist()
            ([2.0, 2.0, 2.0, 2.0], [0.0, 0.0])
        """
        cache: dict[tuple[int, ...], Array] = {}

        def derivative(orders: tuple[int, ...]) -> Array:
            if orders not in cache:
                cache[orders] = field(orders)
            return cache[orders]

        values = derivative((0,) * self.dim)
        return self.residual_field(values, derivative), self.boundary_field(values, derivative)

    def boundary_field(
        self, values: Float[Array, "*grid"], derivative: Callable[[tuple[int, ...]], Array]
    ) -> Float[Array, " boundary"]:
        r"""Boundary mismatches (:math:`u - g`, :math:`\partial_n u - h`), all conditions."""

        def at(orders: tuple[int, ...], index: np.ndarray) -> Array:
            field = values if not any(orders) else derivative(orders)
            return field.ravel()[index]

        return self.boundary_mismatch(at, values.dtype)

    def boundary_mismatch(
        self, at: Callable[[tuple[int, ...], np.ndarray], Array], dtype: Any = None
    ) -> Float[Array, " boundary"]:
        """:meth:`boundary_field` of the function whose derivative of per-dimension
        ``orders`` at the flat (row-major) grid indices ``index`` is ``at(orders, index)``:
        only the boundary points are evaluated.

        Example:
            >>> import jax.numpy as jnp
            >>> from bayescore.models.pde import Dirichlet, Problem
            >>> problem = Problem(lambda u, d, x: d["xx"], (0, 1), 4, boundary=[Dirichlet(1.0)])
            >>> problem.boundary_mismatch(lambda orders, index: 3.0 * jnp.ones(len(index))).tolist()
            [2.0, 2.0]
        """
        parts = [jnp.zeros((0,), dtype or jnp.result_type(float))]
        points = self.points() if self.boundary else None
        zero = (0,) * self.dim
        for condition in self.boundary:
            target = _boundary_values(condition.value, points, self.shape).ravel()
            if isinstance(condition, Dirichlet):
                index = self._condition_indices(condition)
                parts.append(at(zero, index) - target[index])
                continue
            faces = condition.faces if condition.faces is not None else self.all_faces()
            for face in faces:
                axis, side = _parse_face(face, self.names)
                index = self.face_indices(face)
                orders = tuple(int(j == axis) for j in range(self.dim))
                parts.append(side * at(orders, index) - target[index])
        return jnp.concatenate(parts)

    def check_finite(self) -> None:
        """Raise :class:`DataError` if boundary values or the residual at ``u = 0`` are not
        finite (a source term with a NaN, a boundary function that overflows)."""
        points = self.points()
        for number, condition in enumerate(self.boundary):
            target = _boundary_values(condition.value, points, self.shape)
            if not bool(jnp.all(jnp.isfinite(target))):
                raise DataError(
                    f"boundary[{number}] ({type(condition).__name__}) has non-finite values at "
                    f"{int(jnp.sum(~jnp.isfinite(target)))} grid points. Make its value finite "
                    "on the whole grid (it is evaluated at every point, used on the faces)."
                )
        zeros = jnp.zeros(self.shape)
        field = self.residual_field(zeros, lambda orders: zeros)
        bad = ~jnp.isfinite(field)
        if bool(jnp.any(bad)):
            where = tuple(
                float(c) for c in points.reshape(self.dim, -1)[:, int(jnp.argmax(bad.ravel()))]
            )
            raise DataError(
                f"the residual at u = 0 is not finite at {int(jnp.sum(bad))} grid points, e.g. "
                f"x = {where}. Check the source term (NaN, division by zero, log of 0) there."
            )

    def _trace_residual(self) -> _Recorder:
        like = jax.ShapeDtypeStruct(self.shape, jnp.result_type(float))
        recorder = _Recorder(jnp.zeros(()), self.names)

        def call(u: Array, x: Array) -> Array:
            recorder.like = u
            return jnp.asarray(self.residual(u, recorder, x))

        points = jax.ShapeDtypeStruct((self.dim, *self.shape), jnp.result_type(float))
        try:
            out = jax.eval_shape(call, like, points)
        except ArgumentError:
            raise
        except Exception as error:
            raise ArgumentError(
                f"residual(u, d, x) failed when traced with u of shape {self.shape}, d a mapping "
                f"of derivative fields ('{self.names[0] * 2}', ...) and x of shape "
                f"{(self.dim, *self.shape)}: {type(error).__name__}: {error}. Write it in "
                "jax.numpy on whole grid fields, e.g. lambda u, d, x: d['xx'] - jnp.sin(x[0])."
            ) from error
        try:
            broadcast = jnp.broadcast_shapes(out.shape, self.shape)
        except ValueError:
            broadcast = None
        if broadcast != self.shape:
            raise ShapeError(
                f"residual(u, d, x) returned shape {out.shape}, which does not broadcast to the "
                f"grid shape {self.shape}. Return one value per grid point (a field like u)."
            )
        return recorder


def _boundary_values(value: BoundaryValue, points: Array | None, shape: tuple[int, ...]) -> Array:
    out = value(points) if callable(value) else value
    return jnp.broadcast_to(jnp.asarray(out), shape)


def _check_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    sizes = (shape,) if not isinstance(shape, Sequence) else tuple(shape)
    if not sizes:
        raise ArgumentError(
            "shape must list the grid points per dimension, got (). Pass e.g. (64,)."
        )
    out = []
    for size in sizes:
        size = check_positive_int("shape", size)
        if size < MIN_POINTS:
            raise ArgumentError(
                f"shape must have at least {MIN_POINTS} grid points per dimension, got "
                f"{tuple(sizes)}. Pass a finer grid (the GP-HM cases use 200-900 per dimension)."
            )
        out.append(size)
    return tuple(out)


def _check_domain(domain: Any, dim: int) -> tuple[tuple[float, float], ...]:
    try:
        box = np.asarray(domain, dtype=float)
    except (TypeError, ValueError) as error:
        raise ArgumentError(
            f"domain must be (lower, upper) pairs, one per dimension, got {domain!r}."
        ) from error
    if box.shape == (2,):
        box = box[None]
    if box.shape != (dim, 2):
        raise ShapeError(
            f"domain has shape {box.shape}, but the grid shape has {dim} dimension(s). Pass "
            f"{dim} (lower, upper) pair(s), e.g. {[(0.0, 1.0)] * dim}."
        )
    if not np.all(np.isfinite(box)):
        raise DataError(f"domain must be finite, got {domain!r}.")
    if not np.all(box[:, 1] > box[:, 0]):
        raise ArgumentError(
            f"domain must have lower < upper in every dimension, got {box.tolist()}."
        )
    return tuple((float(lo), float(hi)) for lo, hi in box)


def _check_names(names: str | None, dim: int) -> str:
    if names is None:
        if dim > len(DEFAULT_NAMES):
            raise ArgumentError(
                f"a {dim}-dimensional problem needs names=: one character per dimension."
            )
        return DEFAULT_NAMES[:dim]
    if (
        not isinstance(names, str)
        or len(names) != dim
        or len(set(names)) != dim
        or any(char in "+-" or char.isspace() for char in names)
    ):
        raise ArgumentError(
            f"names must be {dim} distinct characters (one per dimension, not '+' or '-'), got "
            f"{names!r}. Pass e.g. names='xt'."
        )
    return names


def _parse_face(face: object, names: str) -> tuple[int, int]:
    if not (isinstance(face, str) and len(face) == 2 and face[0] in names and face[1] in "+-"):
        raise ArgumentError(
            f"a face is a dimension name and a side, such as '{names[0]}-' or '{names[0]}+', got "
            f"{face!r}."
        )
    return names.index(face[0]), (-1 if face[1] == "-" else 1)


def _check_condition(condition: object, names: str, shape: tuple[int, ...]) -> Dirichlet | Neumann:
    if not isinstance(condition, Dirichlet | Neumann):
        raise ArgumentError(
            f"boundary must hold Dirichlet(...) or Neumann(...) conditions, got {condition!r}."
        )
    if condition.faces is not None:
        if isinstance(condition.faces, str) or not condition.faces:
            raise ArgumentError(
                f"faces must be a non-empty tuple of face names such as ('{names[0]}-',), got "
                f"{condition.faces!r}."
            )
        for face in condition.faces:
            _parse_face(face, names)
    value = condition.value
    if not callable(value):
        array = np.asarray(value, dtype=float)
        try:
            np.broadcast_to(array, shape)
        except ValueError as error:
            raise ShapeError(
                f"{type(condition).__name__} value has shape {array.shape}, which does not "
                f"broadcast to the grid shape {shape}. Pass a number, a grid-shaped array or a "
                "function of the coordinates."
            ) from error
        if not np.all(np.isfinite(array)):
            raise DataError(
                f"{type(condition).__name__} value has {int(np.sum(~np.isfinite(array)))} "
                "non-finite entries. Replace the NaN/inf values."
            )
        condition = condition._replace(value=array)
    return condition


__all__ = ["Dirichlet", "Neumann", "Problem", "derivative_orders"]
