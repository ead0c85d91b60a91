r"""A physics-informed neural network (PINN) on the same :class:`Problem`: the baseline.

An MLP :math:`u_\phi(x)` (inputs scaled to :math:`[-1, 1]` per dimension; optionally random
Fourier features :math:`[\sin 2\pi Bx, \cos 2\pi Bx]`, :math:`B_{ij}\sim\mathcal N(0,\sigma^2)`,
the RFF-PINN of Wang, Wang & Perdikaris 2021) is fitted by minimising

.. math::

    \frac1M\sum_{a}\mathcal R(u_\phi, \partial u_\phi, x_a)^2
      + \lambda_b\,\frac1{N_b}\sum_{b}\big(\mathcal B u_\phi(x_b) - g_b\big)^2

over the collocation grid and boundary points (Raissi, Perdikaris & Karniadakis 2019), by
Adam and then L-BFGS (``optax.lbfgs``). Derivatives are nested ``jax.grad`` of the network.
The GP-HM paper's figures show PINNs and RFF-PINNs failing on its high-frequency cases
(spectral bias); this is here to measure that on the same problems.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from bayescore.models.pde import Dirichlet, Problem
    >>> from bayescore.models.pde.pinn import solve_pinn
    >>> problem = Problem(lambda u, d, x: d["xx"] + jnp.sin(x[0]), (0.0, jnp.pi), 16,
    ...                   boundary=[Dirichlet(0.0)])
    >>> solution = solve_pinn(problem, key=jax.random.key(0), width=16, depth=2,
    ...                       num_adam_steps=1000, learning_rate=1e-2, num_lbfgs_steps=0,
    ...                       progress=False)
    >>> bool(jnp.abs(solution.predict(jnp.array([[1.0]]))[0] - jnp.sin(1.0)) < 0.05)
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from bayescore.core.driver import as_key
from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int
from bayescore.core.optimise import adam, minimise_lbfgs, optimise
from bayescore.models.pde.problem import Problem
from bayescore.models.pde.solver import SolveInfo, _check_axis, _check_points, _orders


class PINN(eqx.Module):
    """The network :math:`u_\\phi`: input scaling, optional Fourier features, an MLP.

    Attributes:
        mlp: the ``eqx.nn.MLP`` (scalar output).
        lower: the box's lower corner.
        upper: its upper corner.
        fourier: the Fourier feature matrix :math:`B`, shape ``(F, D)``, or ``None`` (not
            trained).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.models.pde.pinn import PINN
        >>> net = PINN.build(jax.random.key(0), [(0.0, 1.0)], width=8, depth=2)
        >>> net(jnp.array([0.5])).shape
        ()
    """

    mlp: eqx.nn.MLP
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    fourier: Float[Array, "features dim"] | None = None

    @classmethod
    def build(
        cls,
        key: PRNGKeyArray,
        domain: Sequence[tuple[float, float]],
        *,
        width: int = 64,
        depth: int = 4,
        num_fourier_features: int = 0,
        fourier_scale: float = 1.0,
        activation: Callable[[Array], Array] = jnp.tanh,
    ) -> PINN:
        """A freshly initialised network for a box ``domain``."""
        dim = len(domain)
        mlp_key, fourier_key = jax.random.split(key)
        fourier = None
        in_size = dim
        if num_fourier_features:
            fourier = fourier_scale * jax.random.normal(fourier_key, (num_fourier_features, dim))
            in_size = 2 * num_fourier_features
        mlp = eqx.nn.MLP(in_size, "scalar", width, depth, activation=activation, key=mlp_key)
        lower = tuple(float(lo) for lo, _ in domain)
        upper = tuple(float(hi) for _, hi in domain)
        return cls(mlp, lower, upper, fourier)

    def __call__(self, point: Float[Array, " dim"]) -> Float[Array, ""]:
        lower, upper = jnp.asarray(self.lower), jnp.asarray(self.upper)
        scaled = 2.0 * (point - lower) / (upper - lower) - 1.0
        if self.fourier is not None:
            angle = 2.0 * jnp.pi * jax.lax.stop_gradient(self.fourier) @ scaled
            scaled = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)])
        return self.mlp(scaled)

    def derivative(self, orders: tuple[int, ...]) -> Callable[[Array], Array]:
        """The function :math:`x \\mapsto \\partial^{n_1}_1\\cdots\\partial^{n_D}_D u_\\phi(x)`."""
        function: Callable[[Array], Array] = self
        for axis, order in enumerate(orders):
            for _ in range(order):
                function = _partial(function, axis)
        return function


def _partial(function: Callable[[Array], Array], axis: int) -> Callable[[Array], Array]:
    return lambda point: jax.grad(function)(point)[axis]


class PINNLoss(eqx.Module):
    """The PINN loss (module docstring) on a :class:`Problem`'s grid, of the network.

    With ``batch_size``, the residual term is the mean over ``batch_size`` grid points drawn
    uniformly (with replacement) by the key of each call, the boundary term still over every
    boundary point; without a key (or ``batch_size``), over the whole grid.
    """

    problem: Problem
    boundary_weight: float = eqx.field(static=True, default=1.0)
    batch_size: int | None = eqx.field(static=True, default=None)

    def fields(self, network: PINN, index: Array | None = None) -> tuple[Array, Array]:
        """The residual on the grid and the boundary mismatches; with flat grid indices
        ``index``, the residual at those points only.

        The network is evaluated at those points alone; the residual itself is computed on
        the whole grid with the other points' fields at zero (a residual may read arrays
        given on the grid, such as a source term) and read back at ``index``.
        """
        problem = self.problem
        flat = problem.points().reshape(problem.dim, -1).T
        points = flat if index is None else flat[index]
        cache: dict[tuple[int, ...], Array] = {}

        def derivative(orders: tuple[int, ...]) -> Array:
            if orders not in cache:
                field = jax.vmap(network.derivative(orders))(points)
                if index is not None:
                    field = jnp.zeros(problem.size, field.dtype).at[index].set(field)
                cache[orders] = field.reshape(problem.shape)
            return cache[orders]

        values = derivative((0,) * problem.dim)
        residual = problem.residual_field(values, derivative)
        if index is not None:
            residual = residual.ravel()[index]

        def at(orders: tuple[int, ...], boundary: np.ndarray) -> Array:
            if index is None:
                return derivative(orders).ravel()[boundary]
            return jax.vmap(network.derivative(orders))(flat[boundary])

        return residual, problem.boundary_mismatch(at, values.dtype)

    def __call__(self, network: PINN, key: Any = None) -> tuple[Array, Array]:
        index = None
        if self.batch_size is not None and key is not None:
            index = jax.random.randint(key, (self.batch_size,), 0, self.problem.size)
        residual, mismatch = self.fields(network, index)
        loss = jnp.mean(residual**2)
        if mismatch.size:
            loss = loss + self.boundary_weight * jnp.mean(mismatch**2)
        return loss, loss


class _ParameterLoss(eqx.Module):
    """The loss of the network's arrays (the rest, activations included, held in ``static``)."""

    loss: PINNLoss
    static: Any

    def __call__(self, params: Any, key: Any = None) -> tuple[Array, Array]:
        return self.loss(eqx.combine(params, self.static), key)


class _LBFGSLoss(eqx.Module):
    """The deterministic loss L-BFGS needs: the full grid, or one fixed batch (``key``)."""

    loss: _ParameterLoss
    key: Any = None

    def __call__(self, params: Any) -> Array:
        return self.loss(params, self.key)[0]


class PINNSolution(eqx.Module):
    """A fitted PINN: the network, its problem and the fit's record.

    Attributes:
        problem: the :class:`Problem` solved.
        network: the fitted :class:`PINN`.
        info: the loss history and wall time (:class:`~bayescore.models.pde.SolveInfo`).
    """

    problem: Problem
    network: PINN
    info: SolveInfo | None = None

    def predict(
        self, points: Float[ArrayLike, "num_points dim"], derivative: str = ""
    ) -> Float[Array, " num_points"]:
        """:math:`u_\\phi` (or a derivative named as in the residual) at scattered points.

        Example:
            >>> # see the module docstring
        """
        points = _check_points(points, self.problem.dim)
        return jax.vmap(self.network.derivative(_orders(derivative, self.problem)))(points)

    def predict_grid(
        self, axes: Sequence[Float[ArrayLike, " n"]], derivative: str = ""
    ) -> Float[Array, "*test_grid"]:
        """:math:`u_\\phi` (or a derivative) on the tensor grid of ``axes``."""
        if len(axes) != self.problem.dim:
            raise ArgumentError(
                f"axes has {len(axes)} coordinate arrays, but the problem has "
                f"{self.problem.dim} dimension(s). Pass one 1-D array per dimension."
            )
        arrays = [_check_axis(a, j) for j, a in enumerate(axes)]
        mesh = jnp.stack(jnp.meshgrid(*arrays, indexing="ij"))
        flat = self.predict(mesh.reshape(self.problem.dim, -1).T, derivative)
        return flat.reshape(mesh.shape[1:])


def solve_pinn(
    problem: Problem,
    *,
    key: PRNGKeyArray,
    width: int = 64,
    depth: int = 4,
    num_fourier_features: int = 0,
    fourier_scale: float = 1.0,
    num_adam_steps: int = 5000,
    learning_rate: float = 1e-3,
    num_lbfgs_steps: int = 500,
    boundary_weight: float = 1.0,
    batch_size: int | None = None,
    progress: bool = True,
) -> PINNSolution:
    """Fit a PINN to ``problem`` on its collocation grid: Adam, then L-BFGS.

    Args:
        problem: the PDE (:class:`Problem`), the same object :func:`solve` takes.
        key: initialises the network (and the Fourier features).
        width: hidden units per layer.
        depth: hidden layers.
        num_fourier_features: random Fourier features :math:`F` (0: a plain PINN; RFF-PINN
            otherwise).
        fourier_scale: :math:`\\sigma`, in cycles per half-width of the box.
        num_adam_steps: Adam steps (full batch).
        learning_rate: Adam's step size.
        num_lbfgs_steps: then L-BFGS iterations.
        boundary_weight: :math:`\\lambda_b`.
        batch_size: if given, each Adam step's residual term is the mean over this many
            grid points drawn at random (a grid of :math:`10^5` points is too many for a
            full-batch second derivative of the network per step on a CPU), and L-BFGS
            minimises the loss on one fixed draw of that many points; the boundary term
            covers every boundary point. ``None``: the whole grid in both phases.
        progress: show a progress bar per phase.

    Example:
        >>> # see the module docstring
    """
    if not isinstance(problem, Problem):
        raise ArgumentError(f"problem must be a Problem, got {type(problem).__name__}.")
    width = check_positive_int("width", width)
    depth = check_positive_int("depth", depth)
    num_fourier_features = check_positive_int(
        "num_fourier_features", num_fourier_features, allow_zero=True
    )
    fourier_scale = check_positive_float("fourier_scale", fourier_scale)
    num_adam_steps = check_positive_int("num_adam_steps", num_adam_steps, allow_zero=True)
    num_lbfgs_steps = check_positive_int("num_lbfgs_steps", num_lbfgs_steps, allow_zero=True)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    boundary_weight = check_positive_float("boundary_weight", boundary_weight, allow_zero=True)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    key = as_key(key)
    problem.check_finite()
    start = time.perf_counter()
    network = PINN.build(
        key, problem.domain, width=width, depth=depth,
        num_fourier_features=num_fourier_features, fourier_scale=fourier_scale,
    )  # fmt: skip
    params, static = eqx.partition(network, eqx.is_inexact_array)
    loss = _ParameterLoss(PINNLoss(problem, boundary_weight, batch_size), static)
    losses = []
    if num_adam_steps:
        params, adam_losses, _ = optimise(
            loss, params, adam(learning_rate), jax.random.fold_in(key, 1), num_adam_steps,
            progress=progress, description="PINN Adam",
        )  # fmt: skip
        losses.append(np.asarray(adam_losses))
    if num_lbfgs_steps:
        params, lbfgs_losses = minimise_lbfgs(
            _LBFGSLoss(loss, None if batch_size is None else jax.random.fold_in(key, 2)),
            params, num_lbfgs_steps, progress=progress,
            description="PINN L-BFGS",
        )  # fmt: skip
        losses.append(np.asarray(lbfgs_losses))
    network = eqx.combine(params, static)
    info = SolveInfo(
        np.concatenate(losses) if losses else np.zeros(0),
        num_adam_steps,
        num_lbfgs_steps,
        time.perf_counter() - start,
    )
    return PINNSolution(problem, network, info)


__all__ = ["PINN", "PINNLoss", "PINNSolution", "solve_pinn"]
